"""How a training step turns the loss terms into an update: the strategy ``--opt`` names
(RepDistiller's SGD by default, DOT's two momenta, or any timm optimizer), building its optimizer
and taking one step. The training loop only calls ``strategy.step``; which terms are task terms
is declared by the learner (``task_terms``), not read from names. A strategy other than timm's
registers itself with ``register_optimizer``."""
import argparse

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
    ``trainer.average_grads`` instead of DistributedDataParallel; ``options``: its own flags
    (``distiller_zoo.options.Option``), whose values reach it as ``training.opt_args``;
    ``distils``: it steps a distillation's terms apart, so a run without them cannot use it."""
    averages_by_hand = False
    options = ()
    distils = False

    def build(self, params, training, device):
        raise NotImplementedError

    def step(self, trainer, optimizer, losses, loss, task_terms, average_grads):
        raise NotImplementedError

    def describe(self, training):
        """A line on what it does differently, printed at start ('' for plain SGD)."""
        return ''


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


class NamedParameters:
    """Parameters as timm's grouping reads a model's (``named_parameters``)."""

    def __init__(self, params):
        self.params = list(params)

    def named_parameters(self):
        return ((str(i), p) for i, p in enumerate(self.params))


class TimmStep(SGDStep):
    """A timm optimizer (``--opt``, through timm's factory, as the recipes of papers built on
    timm train): weight decay on weights only, not on biases and normalisation parameters
    (timm's ``param_groups_weight_decay``; the decayed group first, as checkpoints store it);
    the step as SGD's."""

    def build(self, params, training, device):
        from timm.optim import create_optimizer_v2, param_groups_weight_decay
        groups = param_groups_weight_decay(NamedParameters(params), training.weight_decay)
        groups.sort(key=lambda group: group['weight_decay'] == 0)
        return create_optimizer_v2(groups, opt=training.opt, lr=training.learning_rate,
                                   momentum=training.momentum)

    def describe(self, training):
        return f'timm\'s {training.opt} optimizer, no weight decay on biases and norms'


REPDISTILLER_SGD = SGDStep()


def strategy_named(name):
    """The strategy of an ``--opt`` value: None for RepDistiller's SGD, a registered one, or a
    timm optimizer."""
    return REPDISTILLER_SGD if name is None else OPTIMIZERS.get(name) or TimmStep()


def strategy_of(training):
    return strategy_named(training.opt)


def optimizer_args(opt):
    """``TrainingConfig.opt_args`` of parsed options: the values of the strategy's options."""
    return tuple((o.dest, getattr(opt, o.dest)) for o in strategy_named(opt.opt).options)


def optimizer_name(name):
    """An argparse type for ``--opt``: a registered strategy or a name of timm's optimizer
    registry."""
    from timm.optim import list_optimizers
    if name.lower() not in OPTIMIZERS and name.lower() not in list_optimizers():
        raise argparse.ArgumentTypeError(
            f"timm has no optimizer '{name}' and it is not {' or '.join(sorted(OPTIMIZERS))} "
            f"(e.g. sgd, adamw, lamb; timm.optim.list_optimizers() lists them)")
    return name.lower()


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


from . import dot  # noqa: F401,E402 (registers --opt dot; it builds on this module)
