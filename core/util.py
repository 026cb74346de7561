"""Small training utilities (RepDistiller names where they exist)."""
import argparse
import math
import random

import numpy as np
import torch


class UserError(Exception):
    """A problem with the user's input; scripts print its message and exit with status 2."""


class FrozenNamespace:
    """A namespace whose attributes are set once, at construction: ``vars()`` reads them, and
    setting one afterwards is an error (parsed options are never changed after parsing)."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __setattr__(self, name, value):
        raise AttributeError(f"'{name}' cannot be set: options are read-only once parsed; "
                             f"compute what is derived from them and pass it on")

    def __repr__(self):
        return f'{type(self).__name__}({", ".join(f"{k}={v!r}" for k, v in vars(self).items())})'

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # its values may be lists


class RunFinished(Exception):
    """There is nothing to do: the run to resume has already finished."""


class RunInterrupted(Exception):
    """The run stopped on request; ``resumable``: after writing a checkpoint to resume from."""

    def __init__(self, message, resumable=True):
        super().__init__(message)
        self.resumable = resumable


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _number(kind, test, wanted):
    """An argparse type: ``kind`` (int or float) that is finite and passes ``test``."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {wanted}, got {text!r}') from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f'must be {wanted}, got {text}')
        return value
    convert.__name__ = wanted  # what argparse names in its own messages
    return convert


positive_int = _number(int, lambda v: v > 0, 'a positive integer')
non_negative_int = _number(int, lambda v: v >= 0, 'an integer >= 0')
positive_float = _number(float, lambda v: v > 0, 'a positive number')
non_negative_float = _number(float, lambda v: v >= 0, 'a number >= 0')
finite_float = _number(float, lambda v: True, 'a finite number')
unit_interval = _number(float, lambda v: 0 <= v < 1, 'a number in [0, 1)')
seed_int = _number(int, lambda v: 0 <= v < 2 ** 32, 'an integer from 0 to 4294967295')


def run_label(text):
    """An argparse type for a name that becomes part of a folder name (``--trial``)."""
    if '/' in text or '\\' in text or text in ('.', '..'):
        raise argparse.ArgumentTypeError(f'must not contain a path separator, got {text!r}')
    return text


def parse_decay_epochs(text):
    try:
        epochs = [int(e) for e in text.split(',') if e.strip()]
    except ValueError:
        raise UserError(f"--lr_decay_epochs must be comma-separated integers like '150,180,210', "
                        f"got '{text}'") from None
    if epochs != sorted(epochs) or any(e <= 0 for e in epochs):
        raise UserError(f"--lr_decay_epochs must be increasing positive epochs, got '{text}'")
    return epochs


def learning_rate_at(epoch, training):
    """Step schedule: ``lr * rate^k`` after ``k`` of the decay epochs have passed (1-based)."""
    steps = sum(epoch > e for e in training.lr_decay_epochs)
    return training.learning_rate * training.lr_decay_rate ** steps


def adjust_learning_rate(epoch, training, optimizer):
    lr = learning_rate_at(epoch, training)
    for group in optimizer.param_groups:
        group['lr'] = lr
    return lr


def accuracy(output, target, topk=(1,)):
    """Top-k accuracies in percent, one 1-element tensor per k."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices
    correct = pred.eq(target.view(-1, 1))
    return [correct[:, :k].any(dim=1).float().sum().mul_(100.0 / target.shape[0]).view(1)
            for k in topk]

