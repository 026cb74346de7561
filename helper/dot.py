"""DOT, the Distillation-Oriented Trainer (Zhao et al., ICCV 2023; mdistiller's
``DistillationOrientedTrainer``): SGD with two momenta, a smaller one (``momentum``) for the
gradient of the task loss and a larger one (``momentum_kd``) for the gradient of the
distillation loss.

One step is ``step_kd()`` after the distillation loss's backward (it takes those gradients),
then ``step()`` after the task loss's backward. Per parameter: the task gradient plus weight
decay goes into the task buffer, with ``momentum`` when the parameter also has a distillation
gradient and the mean of both momenta otherwise, and the parameter moves by ``-lr`` times the
buffer; then the distillation gradient goes into its own buffer (``momentum_kd`` when the
parameter also had a task gradient; else the mean, with weight decay), and the parameter moves
by ``-lr`` times that buffer. A buffer starts as the first gradient it receives (the
distillation buffer without weight decay). Both buffers live in the optimizer's state
(``momentum_buffer``, ``momentum_kd_buffer``), so checkpoints resume them.
"""
import argparse

import torch
from torch.optim.optimizer import Optimizer, required

from distiller_zoo.options import Option
from core.component import Component, add_switched_group, value
from core.util import UserError, non_negative_float
from .optimizers import Strategy, parameters_of, register_optimizer


class DistillationOrientedTrainer(Optimizer):
    """The authors' name and signature; one parameter group."""

    def __init__(self, params, lr=required, momentum=0, momentum_kd=0, dampening=0,
                 weight_decay=0):
        for name, amount in (('learning rate', lr if lr is not required else 0),
                             ('momentum', momentum), ('momentum_kd', momentum_kd),
                             ('weight_decay', weight_decay)):
            if amount < 0:
                raise ValueError(f'invalid {name}: {amount}')
        super().__init__(params, dict(lr=lr, momentum=momentum, momentum_kd=momentum_kd,
                                      dampening=dampening, weight_decay=weight_decay))
        if len(self.param_groups) != 1:
            raise ValueError('DistillationOrientedTrainer takes one parameter group')
        self.kd_grads = None  # parameter -> distillation gradient, from step_kd to step

    @torch.no_grad()
    def step_kd(self):
        """Take the distillation loss's gradients (the parameters' ``grad`` now)."""
        self.kd_grads = {p: p.grad for p in self.param_groups[0]['params']
                         if p.grad is not None}

    @torch.no_grad()
    def step(self, closure=None):
        """Update every parameter from the task gradients (their ``grad`` now) and the
        distillation gradients ``step_kd`` took."""
        group = self.param_groups[0]
        lr, wd, damp = group['lr'], group['weight_decay'], group['dampening']
        m_task, m_kd = group['momentum'], group['momentum_kd']
        m_mean = (m_task + m_kd) / 2
        kd_grads, self.kd_grads = self.kd_grads or {}, None
        task_params = [p for p in group['params'] if p.grad is not None]
        for p in task_params:
            grad = p.grad.add(p, alpha=wd) if wd else p.grad
            buffer = self._update(p, 'momentum_buffer', grad,
                                  m_task if p in kd_grads else m_mean, damp)
            p.add_(buffer, alpha=-lr)
        task = set(task_params)
        for p, grad in kd_grads.items():
            state = self.state[p]
            if 'momentum_kd_buffer' in state and p not in task and wd:
                grad = grad.add(p, alpha=wd)
            buffer = self._update(p, 'momentum_kd_buffer', grad,
                                  m_kd if p in task else m_mean, damp)
            p.add_(buffer, alpha=-lr)

    def _update(self, p, key, grad, momentum, dampening):
        """The buffer ``key`` of ``p`` after ``grad``: the gradient itself the first time."""
        state = self.state[p]
        if key not in state:
            state[key] = torch.clone(grad).detach()
        else:
            state[key].mul_(momentum).add_(grad, alpha=1 - dampening)
        return state[key]


class DistillationPhase:
    """What the grad scaler unscales and steps for DOT's first gradient: the optimizer's
    parameters, and ``step_kd`` as the step."""

    def __init__(self, optimizer):
        self.param_groups, self.step = optimizer.param_groups, optimizer.step_kd


@register_optimizer('dot')
class DOTStep(Strategy):
    """The distillation terms' gradients are taken first (``step_kd``), then the task terms'
    (``step``), each unscaled (fp16), averaged over processes by hand (DDP reduces once per
    backward) and, with ``--max_grad_norm``, clipped jointly; a non-finite gradient in either
    set skips the whole step. Init stages keep SGD."""
    averages_by_hand = True
    distils = True

    @property
    def options(self):
        return OPTIONS[1:]

    def build(self, params, training, device):
        """Momenta ``--momentum`` -/+ ``--dot_delta``."""
        delta = dict(training.opt_args)['dot_delta']
        return DistillationOrientedTrainer(params, lr=training.learning_rate,
                                           momentum=training.momentum - delta,
                                           momentum_kd=training.momentum + delta,
                                           weight_decay=training.weight_decay)

    def describe(self, training):
        delta = dict(training.opt_args)['dot_delta']
        return (f'DOT: momentum {training.momentum - delta:g} for the task gradient, '
                f'{training.momentum + delta:g} for the distillation gradient')

    def step(self, trainer, optimizer, losses, loss, task_terms, average_grads):
        scaler = trainer.scaler
        task = sum(v for name, v in losses.items() if name in task_terms)
        distillation = sum(v for name, v in losses.items() if name not in task_terms)
        optimizer.kd_grads = None
        optimizer.zero_grad(set_to_none=True)
        distils = torch.is_tensor(distillation) and distillation.requires_grad
        if distils:
            scaler.scale(distillation).backward(retain_graph=True)
            trainer.average_grads(optimizer, average_grads)
            phase = DistillationPhase(optimizer)
            scaler.unscale_(phase)
            scaler.step(phase)  # skipped on a non-finite gradient
            optimizer.zero_grad(set_to_none=True)
        if torch.is_tensor(task) and task.requires_grad:
            scaler.scale(task).backward()
            trainer.average_grads(optimizer, average_grads)
        scaler.unscale_(optimizer)
        if distils and optimizer.kd_grads is None:
            return  # the distillation gradient was not finite: no update
        max_norm = trainer.training.max_grad_norm
        if max_norm:
            grads = [p.grad for p in parameters_of(optimizer) if p.grad is not None]
            grads += list((optimizer.kd_grads or {}).values())
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in grads]))
            torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
        scaler.step(optimizer)


def repdistiller_optimizer(name):
    """An argparse type: ``--optimizer``'s values, as ``--opt`` names them (sgd: the default)."""
    if name not in ('sgd', 'dot'):
        raise argparse.ArgumentTypeError(f"invalid choice: '{name}' (choose from 'sgd', 'dot')")
    return None if name == 'sgd' else name


OPTIONS = (
    Option('--optimizer', dest='opt', type=repdistiller_optimizer, default=None,
           metavar='{sgd,dot}',
           help='dot (= --opt dot): DOT, separate momenta for the task (CE) gradient and the '
                'distillation gradient (every other term); init stages keep SGD'),
    Option('--dot_delta', type=non_negative_float, default=0.075,
           help='DOT: momentum --momentum - delta for the task gradient, + delta for the '
                'distillation gradient'))



class DistillationOrientedMomenta(Component):
    """``--opt dot`` (or ``--optimizer dot``): the run's optimizer strategy is DOT's. Its folders
    keep the name ``--optimizer dot`` gave them."""
    title = 'optimizer (DOT: distillation-oriented momenta)'
    options = OPTIONS
    label = 'DOT'
    checks = (('kd --optimizer dot', ['--optimizer', 'dot']),
              ('kd --optimizer dot --amp fp16', ['--optimizer', 'dot', '--amp', 'fp16']))

    switch = '--optimizer dot'

    def enabled(self, opt):
        return value(opt, OPTIONS[0]) == 'dot'

    def add_options(self, parser, given, distill):
        on = given is None or any(word in given for word in ('--optimizer', '--opt'))
        add_switched_group(parser, self.title, OPTIONS, on)

    @property
    def defining(self):
        return ('dot_delta',)  # --opt is the recipe's

    def suffix(self, opt):
        if not self.enabled(opt):
            return ''
        delta = value(opt, OPTIONS[1])
        return '_optimizer:dot' + (f'_dot_delta:{delta}' if delta != OPTIONS[1].default else '')

    def upgrade(self, record):
        """Before ``--opt dot``, DOT was ``optimizer: dot`` in a run's options."""
        if 'optimizer' not in record:
            return record
        record = dict(record)
        if record.pop('optimizer') == 'dot':
            record['opt'] = 'dot'
        return record

    def check_given(self, opt, method):
        super().check_given(opt, method)
        if not self.enabled(opt):
            return
        if opt.nesterov:
            raise UserError('--nesterov is an option of SGD\'s momentum, which --optimizer dot '
                            'replaces with its two momenta: leave one of them out')
        if opt.dot_delta >= min(opt.momentum, 1 - opt.momentum):
            raise UserError(f'--dot_delta {opt.dot_delta} must be below --momentum and 1 - '
                            f'--momentum (DOT\'s momenta are --momentum -/+ delta)')


DOT = DistillationOrientedMomenta()
