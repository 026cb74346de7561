"""How a training step turns the loss terms into an update: strategies chosen by
``--optimizer``, each building its optimizer and taking one step. The training loop only calls
``strategy.step``; which terms are task terms is declared by the learner (``task_terms``), not
read from names. A strategy registers itself with ``register_optimizer``."""
import torch.nn as nn

from core.accel import make_sgd

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


def strategy_of(training):
    """The strategy of a run's options (``--optimizer``; scripts without it: SGD)."""
    return OPTIMIZERS[training.optimizer]
