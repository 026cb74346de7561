"""How a training step turns the loss terms into an update: strategies chosen by
``--optimizer``, each building its optimizer and taking one step. The training loop only calls
``strategy.step``; which terms are task terms is declared by the learner (``task_terms``), not
read from names. A strategy registers itself with ``register_optimizer``."""
import torch.nn as nn

from core.accel import make_sgd
from core.util import adjust_learning_rate

OPTIMIZERS = {}


def register_optimizer(name):
    def decorator(cls):
        OPTIMIZERS[name] = cls()
        return cls
    return decorator


def parameters_of(optimizer):
    return [p for group in optimizer.param_groups for p in group['params']]


class Strategy:
    """``build(params, training, device)``: the optimizer (``training``: a ``TrainingConfig``);
    ``step(trainer, optimizer, losses, loss, task_terms, average_grads)``: one update from the
    batch's weighted terms (``loss`` their sum), with the trainer's grad scaler;
    ``averages_by_hand``: its gradients are averaged across processes by
    ``trainer.average_grads`` instead of DistributedDataParallel."""
    averages_by_hand = False

    def build(self, params, training, device):
        raise NotImplementedError

    def step(self, trainer, optimizer, losses, loss, task_terms, average_grads):
        raise NotImplementedError

    def describe(self, training):
        """A line on what it does differently, printed at start ('' for plain SGD)."""
        return ''


@register_optimizer('sgd')
class SGDStep(Strategy):
    """RepDistiller's SGD: one backward of the summed terms, optionally clipped."""

    def build(self, params, training, device):
        return make_sgd(params, training, device)

    def step(self, trainer, optimizer, losses, loss, task_terms, average_grads):
        optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.average_grads(optimizer, average_grads)
        if trainer.training.max_grad_norm:
            trainer.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(parameters_of(optimizer), trainer.training.max_grad_norm)
        trainer.scaler.step(optimizer)


class TimmStep(SGDStep):
    """A timm optimizer (``--opt``, through timm's factory, as the recipes of papers built on
    timm train): weight decay on weights only, not on biases and normalisation parameters;
    the step as SGD's."""

    def build(self, params, training, device):
        from timm.optim import create_optimizer_v2
        params = list(params)
        groups = [{'params': [p for p in params if p.ndim > 1],
                   'weight_decay': training.weight_decay},
                  {'params': [p for p in params if p.ndim <= 1], 'weight_decay': 0.0}]
        return create_optimizer_v2([g for g in groups if g['params']], opt=training.opt,
                                   lr=training.learning_rate, momentum=training.momentum)

    def describe(self, training):
        return f'timm\'s {training.opt} optimizer, no weight decay on biases and norms'


def strategy_of(training):
    """The strategy of a run's options (``--opt``: a timm optimizer; else ``--optimizer``;
    scripts without it: SGD)."""
    return TimmStep() if training.opt else OPTIMIZERS[training.optimizer]


def learning_rate_schedule(training, optimizer):
    """``epoch -> lr``, setting it on ``optimizer`` (epochs from 1): RepDistiller's steps, or
    timm's cosine schedule with its linear warm-up (stateless, so a resumed run gets the same
    rates)."""
    if training.schedule == 'step':
        return lambda epoch: adjust_learning_rate(epoch, training, optimizer)
    from timm.scheduler import create_scheduler_v2
    for group in optimizer.param_groups:
        group['initial_lr'] = training.learning_rate
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=training.schedule, num_epochs=training.epochs, min_lr=training.min_lr,
        warmup_lr=training.warmup_lr, warmup_epochs=training.warmup_epochs)

    def at(epoch):
        scheduler.step(epoch - 1)
        return optimizer.param_groups[0]['lr']
    return at
