"""OFA-KD: the target-enhanced loss and the branches against the authors' code (Hao840/OFAKD
f7bb896 with timm 0.6.5; tests/fixtures/ofa_reference.json says how its values were made), the
authors' branch sizes for the spec's pairs, and a heterogeneous pair in both directions."""
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from builders import make
from conftest import FIXTURES
from distiller_zoo import ofa_loss
from distiller_zoo.OFA import init_weights, map_branch, token_branch
from models import get_model

REFERENCE = json.load(open(os.path.join(FIXTURES, 'ofa_reference.json')))


def test_the_loss_equals_the_authors():
    case = REFERENCE['loss']
    s, t = torch.tensor(case['student']), torch.tensor(case['teacher'])
    mask = F.one_hot(torch.tensor(case['target']), s.shape[1])
    for eps in (1.0, 1.5):
        assert ofa_loss(s, t, mask, eps).item() == pytest.approx(case['values'][str(eps)],
                                                                  rel=1e-5)
    assert ofa_loss(s, t, mask, 1.5, 4.0).item() == pytest.approx(
        case['values']['eps 1.5, T 4'], rel=1e-5)


def test_at_eps_one_the_loss_is_the_soft_cross_entropy():
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    mask = F.one_hot(torch.tensor([0, 1, 2, 3]), 7)
    soft_ce = -(F.softmax(t, 1) * F.log_softmax(s, 1)).sum(1).mean()
    assert torch.allclose(ofa_loss(s, t, mask, 1.0), soft_ce, atol=1e-6)


@pytest.mark.parametrize('name', ['cnn', 'cnn4', 'vit', 'mixer'])
def test_the_branches_equal_the_authors(name):
    """Built in the authors' order after the same seed, the branches have their weights and
    give their losses on the same inputs."""
    case = REFERENCE[name]
    stages, classes, tokens = case['stages'], case['classes'], case['tokens']
    eps = case['eps'] * (len(stages) + 1) if len(case['eps']) == 1 else case['eps']
    torch.manual_seed(0)
    branches = nn.ModuleDict()
    for k in stages:
        shape = case['student_shapes'][str(k)]
        if len(shape) == 3:
            branches[str(k)] = map_branch(k, shape[0], max(case['student_dim'],
                                                           case['teacher_dim']), classes)
        else:
            grid = int((shape[0] - tokens) ** 0.5)
            branches[str(k)] = token_branch(k, grid, shape[1], case['student_dim'], tokens,
                                            classes)
    branches.apply(init_weights)
    assert sum(p.numel() for p in branches.parameters()) == case['projector_parameters']
    torch.manual_seed(1)
    feats = {k: torch.randn(case['batch'], *case['student_shapes'][str(k)]) for k in stages}
    logits_s = torch.randn(case['batch'], classes)
    logits_t = torch.randn(case['batch'], classes) * 3
    mask = F.one_hot(torch.randint(0, classes, (case['batch'],)), classes)
    branches.train()
    got = [ofa_loss(branches[str(k)](feats[k]), logits_t, mask, e, case['T']).item()
           for k, e in zip(stages, eps)]
    assert got == pytest.approx(case['per_stage'], rel=1e-4)
    assert ofa_loss(logits_s, logits_t, mask, eps[-1], case['T']).item() == pytest.approx(
        case['logit'], rel=1e-5)


@pytest.mark.parametrize('teacher, student', [('resnet32x4', 'resnet8'),
                                              ('resnet32x4', 'resnet8x4'),
                                              ('vgg13', 'ResNet18')])
def test_the_branches_have_the_authors_sizes(teacher, student):
    method = make('ofa', get_model(student, 100), get_model(teacher, 100),
                  model_s=student, model_t=teacher)
    expected = REFERENCE['parameters'][f'{teacher}->{student}']
    assert sum(p.numel() for p in method.projector.parameters()) == expected


def test_a_cnn_teacher_teaches_a_vit_through_token_branches_and_the_teacher_stays_fixed():
    teacher = get_model('resnet8', 10)
    student = get_model('timm:deit_tiny_patch16_224,depth=4', 10, image_size=32)
    method = make('ofa', student, teacher, model_s='timm:deit_tiny_patch16_224',
                  model_t='resnet8', num_classes=10)
    assert list(method.projector) == ['2', '3', '4']  # a 4-block ViT has three stages
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    from dataset.batch import Batch
    logits, losses = method.forward_train(Batch(x, y, torch.arange(4)))
    sum(losses.values()).backward()
    assert set(losses) == {'cls', 'div', 'kd_ofa', 'kd_logit'}
    assert student.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in method.projector.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
