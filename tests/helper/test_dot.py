"""DOT, the distillation-oriented optimizer strategy (helper/dot.py): its updates against the
authors' trainer (tests/fixtures/reference/dot.json), its step with SGD's (clipping, a
non-finite gradient under fp16) and two processes in step."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from helper.dot import DistillationOrientedTrainer
from reference import assert_close, det, flat, reference

REFERENCE = reference('dot')


# -- DOT ---------------------------------------------------------------------------------------
def dot_problem(optimizer_class, **kwargs):
    shared = nn.Parameter(det(4, 3))
    task_only = nn.Parameter(det(3, phase=1))
    kd_only = nn.Parameter(det(3, phase=2))
    optimizer = optimizer_class([shared, task_only, kd_only], **kwargs)
    return (shared, task_only, kd_only), optimizer


def dot_losses(step, shared, task_only, kd_only):
    x = det(5, 4, phase=step) * 0.3
    loss_task = ((x @ shared).sum(1) * task_only.sum()).pow(2).mean()
    loss_kd = ((x @ shared) - kd_only).pow(2).mean()
    return loss_task, loss_kd


def dot_step(optimizer, loss_task, loss_kd):
    """The authors' order: the distillation gradient first, then the task's."""
    optimizer.zero_grad(set_to_none=True)
    loss_kd.backward(retain_graph=True)
    optimizer.step_kd()
    optimizer.zero_grad(set_to_none=True)
    loss_task.backward()
    optimizer.step()


def test_dot_updates_match_the_authors_and_resume_from_state():
    params, optimizer = dot_problem(DistillationOrientedTrainer, lr=0.01, momentum=0.825,
                                    momentum_kd=0.975, weight_decay=5e-4)
    for step, expected in enumerate(REFERENCE['dot_steps']):
        dot_step(optimizer, *dot_losses(step, *params))
        assert_close(flat([p.detach().flatten().tolist() for p in params]), flat(expected))
        if step == 1:
            state = optimizer.state_dict()
            assert {'momentum_buffer', 'momentum_kd_buffer'} <= set(state['state'][0])
            fresh_params, optimizer = dot_problem(DistillationOrientedTrainer, lr=0.01)
            with torch.no_grad():
                for new, old in zip(fresh_params, params):
                    new.copy_(old)
            optimizer.load_state_dict(state)
            params = fresh_params


def test_dot_without_delta_is_sgd_on_the_summed_gradient_for_shared_parameters():
    shared = nn.Parameter(det(4, 3))
    reference = nn.Parameter(det(4, 3))
    dot = DistillationOrientedTrainer([shared], lr=0.1, momentum=0.9, momentum_kd=0.9,
                                      weight_decay=5e-4)
    sgd = torch.optim.SGD([reference], lr=0.1, momentum=0.9, weight_decay=5e-4)
    for step in range(3):
        x = det(5, 4, phase=step)
        dot_step(dot, (x @ shared).pow(2).mean(), (x @ shared).sin().sum())
        sgd.zero_grad()
        ((x @ reference).pow(2).mean() + (x @ reference).sin().sum()).backward()
        sgd.step()
        assert torch.allclose(shared, reference, atol=1e-6)


class TwoTerms(nn.Module):
    """A learner stand-in with one parameter and a task and a distillation term of known
    gradients (``a`` and ``b``)."""

    def __init__(self, a, b):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(3))
        self.a, self.b = a, b

    def losses(self):
        return {'cls': (self.p * self.a).sum(), 'div': (self.p * self.b).sum()}


def dot_trainer(tmp_path, amp='off', max_grad_norm=None):
    from helper.loops import Supervised, Trainer
    opt = SimpleNamespace(amp=amp, max_grad_norm=max_grad_norm, channels_last=False)
    return Trainer(Supervised(nn.Linear(1, 1)), [], None, opt, 'x', str(tmp_path), None,
                   torch.device('cpu'), {'seed': 0})


def dot_step_of(trainer, optimizer, losses):
    """One step of the DOT strategy, the task term declared as 'cls'."""
    from helper.optimizers import OPTIMIZERS
    OPTIMIZERS['dot'].step(trainer, optimizer, losses, sum(losses.values()), ('cls',), False)


@pytest.mark.parametrize('amp', ['off', 'fp16'])
def test_dot_step_clips_both_gradients_jointly(tmp_path, amp):
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0])
    learner = TwoTerms(a, b)
    optimizer = DistillationOrientedTrainer([learner.p], lr=1.0, momentum=0.8, momentum_kd=0.95)
    trainer = dot_trainer(tmp_path, amp, max_grad_norm=0.5)
    dot_step_of(trainer, optimizer, learner.losses())
    trainer.scaler.update()
    # joint norm 5: both gradients scaled by 0.5 / 5; first step: p -= lr * g
    assert torch.allclose(learner.p.detach(), -(a + b) * 0.1, atol=1e-5)
    state = optimizer.state[learner.p]
    assert torch.allclose(state['momentum_kd_buffer'], b * 0.1, atol=1e-5)
    assert torch.allclose(state['momentum_buffer'], a * 0.1, atol=1e-5)


def test_dot_step_skips_on_a_non_finite_distillation_gradient_under_fp16(tmp_path):
    learner = TwoTerms(torch.ones(3), torch.tensor([float('inf'), 0.0, 0.0]))
    optimizer = DistillationOrientedTrainer([learner.p], lr=1.0, momentum=0.8, momentum_kd=0.95)
    trainer = dot_trainer(tmp_path, 'fp16')
    scale = trainer.scaler.get_scale()
    dot_step_of(trainer, optimizer, learner.losses())
    trainer.scaler.update()
    assert torch.equal(learner.p.detach(), torch.zeros(3)) and not optimizer.state
    assert trainer.scaler.get_scale() < scale


@pytest.mark.processes
def test_dot_with_two_processes_keeps_them_in_step(tmp_path):
    from conftest import train_teacher_run, write_cifar100
    from runs import same_weights, torchrun
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=64, n_test=16)
    save = str(tmp_path / 'save')
    common = ['--data_folder', data, '--save_dir', save, '--epochs', '1', '--batch_size', '16',
              '--num_workers', '0', '--seed', '0']
    _, teacher = train_teacher_run(data, save, *common[6:], model='resnet8')
    dump = str(tmp_path / 'dump')
    result = torchrun(tmp_path, 'train_student', ['--path_t', teacher, '--model_s', 'resnet8',
                                                  '--distill', 'crd', '--nce_k', '20',
                                                  '--optimizer', 'dot'] + common, dump)
    assert 'DOT: momentum' in result.stdout
    assert same_weights(dump)
