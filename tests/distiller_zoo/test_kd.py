import math

import pytest
import torch

from dataset.batch import Batch
from distiller_zoo import METHODS, DistillKL, FrozenTeacher, get_method
from models import get_model
from builders import plain_config


def test_distill_kl_uniform_teacher_matches_hand_formula():
    # spec: uniform teacher -> T^2 * mean_i [ -log C - mean_c log p_s[i, c] ]
    T, C = 4.0, 7
    y_s = torch.randn(5, C)
    log_p_s = torch.log_softmax(y_s / T, dim=1)
    expected = T ** 2 * (-math.log(C) - log_p_s.mean(dim=1)).mean()
    assert torch.allclose(DistillKL(T)(y_s, torch.zeros(5, C)), expected, atol=1e-6)


def test_distill_kl_matches_definition_and_is_zero_on_equal_logits():
    T = 2.0
    y_s, y_t = torch.randn(3, 10), torch.randn(3, 10)
    p_t = torch.softmax(y_t / T, 1)
    expected = T ** 2 * (p_t * (p_t.log() - torch.log_softmax(y_s / T, 1))).sum() / 3
    assert torch.allclose(DistillKL(T)(y_s, y_t), expected, atol=1e-6)
    assert DistillKL(T)(y_t, y_t).abs() < 1e-6


def test_distill_kl_gradient_reaches_student_only():
    y_s = torch.randn(4, 10, requires_grad=True)
    y_t = torch.randn(4, 10, requires_grad=True)
    DistillKL(4)(y_s, y_t.detach()).backward()
    assert y_s.grad.abs().sum() > 0 and y_t.grad is None


def test_kd_registered_with_repdistiller_weights():
    assert get_method('kd') is METHODS['kd']
    assert METHODS['kd'].needs.weights == (0.1, 0.9, 0.0)
    with pytest.raises(KeyError, match='choose one of'):
        get_method('kdd')


def test_kd_step_trains_student_and_leaves_teacher_untouched():
    torch.manual_seed(0)
    teacher, student = get_model('resnet14', 10), get_model('resnet8', 10)
    method = get_method('kd')
    distiller = method(student, FrozenTeacher(teacher), plain_config(method))
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    params = distiller.trainable_parameters()
    assert {id(p) for p in params} == {id(p) for p in student.parameters()}
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    distiller.train()
    assert not teacher.training and student.training
    losses_seen = []
    for _ in range(5):
        logits, losses = distiller.forward_train(Batch(x, y, torch.arange(8)))
        assert set(losses) == {'cls', 'div'}
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses_seen.append(loss.item())
    assert losses_seen[-1] < losses_seen[0]
    for k, v in teacher.state_dict().items():  # weights and BN running statistics
        assert torch.equal(v, teacher_before[k]), k
    assert all(p.grad is None for p in teacher.parameters())
    assert any(not torch.equal(v, student_before[k]) for k, v in student.state_dict().items())


def test_weighted_terms_follow_gamma_alpha():
    teacher, student = get_model('resnet8', 10), get_model('resnet8', 10)
    method = get_method('kd')
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    torch.manual_seed(0)
    _, base = method(student, FrozenTeacher(teacher), plain_config(method)).forward_train(
        Batch(x, y))
    doubled_weights = plain_config(method, weights=(0.2, 1.8, 0.0))
    _, doubled = method(student, FrozenTeacher(teacher), doubled_weights).forward_train(
        Batch(x, y))
    assert torch.allclose(doubled['cls'], 2 * base['cls'])
    assert torch.allclose(doubled['div'], 2 * base['div'])
