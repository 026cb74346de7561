"""CTKD's learned temperature (Li et al., "Curriculum Temperature for Knowledge Distillation",
AAAI 2023; zhengli97/CTKD), under its authors' names: one parameter ``theta`` behind a gradient
reversal layer gives ``tau = t_start + t_end * sigmoid(theta)``; the student minimises the
KD loss while the reversed gradient makes ``theta`` maximise it, with a strength ``lambda``
that a cosine (or linear) curriculum raises from 0 to 1 over the first epochs.

With ``--ctkd`` (or ``--distill ctkd``) the ``-a`` term's temperature, and DKD's, become the
learned one (``Distiller`` holds a ``LearnedTemperature`` then); ``theta`` is trained with the
student (in its SGD, weight decay included) and saved with the method.
"""
import math

import torch
import torch.nn as nn
from torch.autograd import Function

from core.component import value
from core.util import UserError, positive_float, positive_int
from . import LSKD
from .modifiers import PRESETS, LogitModifier
from .options import KD_T, Option


class GradientReversalFunction(Function):
    """Identity forward; the backward multiplies the gradient by ``lambda_`` (CTKD's lambda is
    at most 0, which reverses it)."""

    @staticmethod
    def forward(ctx, x, lambda_):
        ctx.lambda_ = lambda_
        return x.clone()

    @staticmethod
    def backward(ctx, grads):
        return grads.new_tensor(ctx.lambda_) * grads, None


class GradientReversal(nn.Module):
    def forward(self, x, lambda_):
        return GradientReversalFunction.apply(x, lambda_)


class Global_T(nn.Module):
    """The global temperature parameter (``global_T``, initialised to 1) through the reversal
    layer; the two inputs are unused, as in the authors' signature."""

    def __init__(self):
        super().__init__()
        self.global_T = nn.Parameter(torch.ones(1))
        self.grl = GradientReversal()

    def forward(self, fake_input1, fake_input2, lambda_):
        return self.grl(self.global_T, lambda_)


class CosineDecay:
    """``min + (max - min) * (1 + cos(pi * min(i, loops) / loops)) / 2``."""

    def __init__(self, max_value, min_value, num_loops):
        self.max_value, self.min_value, self.num_loops = max_value, min_value, num_loops

    def get_value(self, i):
        i = min(max(i, 0), self.num_loops)
        cosine = (math.cos(i * math.pi / self.num_loops) + 1.0) / 2
        return cosine * (self.max_value - self.min_value) + self.min_value


class LinearDecay:
    """``-(max - min) * min(i, loops - 1) / loops``: it never reaches ``min`` and ignores the
    offset ``max`` (the authors' quirk, kept)."""

    def __init__(self, max_value, min_value, num_loops):
        self.max_value, self.min_value, self.num_loops = max_value, min_value, num_loops

    def get_value(self, i):
        i = min(max(i, 0), self.num_loops - 1)
        return -i * (self.max_value - self.min_value) / self.num_loops


CURRICULA = {'cosine': CosineDecay, 'linear': LinearDecay}


class LearnedTemperature(nn.Module):
    """``tau = t_start + t_end * sigmoid(theta)``, ``theta`` behind the reversal layer at the
    epoch's ``lambda`` (``set_epoch``, epochs from 1, as the authors' loop)."""

    def __init__(self, t_start=1.0, t_end=20.0, decay='cosine', lambda_max=0.0,
                 lambda_min=-1.0, lambda_epochs=10):
        super().__init__()
        self.t_start, self.t_end = t_start, t_end
        self.global_T = Global_T()
        self.curriculum = CURRICULA[decay](lambda_max, lambda_min, lambda_epochs)
        self.lambda_ = self.curriculum.get_value(1)

    def set_epoch(self, epoch):
        self.lambda_ = self.curriculum.get_value(epoch)

    def forward(self):
        theta = self.global_T(None, None, self.lambda_)
        return self.t_start + self.t_end * torch.sigmoid(theta)


OPTIONS = (
    Option('--ctkd', action='store_true',
           help='CTKD: the temperature of every logit KL of the method is learned, '
                'adversarially, on a curriculum (--distill ctkd is KD with it)'),
    Option('--ctkd_t_start', type=positive_float, default=1.0,
           help='CTKD: the lowest temperature (tau = t_start + t_end * sigmoid(theta))'),
    Option('--ctkd_t_end', type=positive_float, default=20.0,
           help='CTKD: the range of the temperature above t_start'),
    Option('--ctkd_decay', choices=sorted(CURRICULA), default='cosine',
           help='CTKD: the curriculum of the reversal strength lambda'),
    Option('--ctkd_lambda_max', type=float, default=0.0,
           help='CTKD: lambda at epoch 0 (the authors\' script: 0)'),
    Option('--ctkd_lambda_min', type=float, default=-1.0,
           help='CTKD: lambda once the curriculum ends (the authors\' script: -1)'),
    Option('--ctkd_lambda_epochs', type=positive_int, default=10,
           help='CTKD: epochs over which lambda moves from max to min'))


def learned_temperature(config):
    """The run's learned temperature (a module the method owns), or None for fixed ones."""
    return LearnedTemperature(**config.learned_T) if config.learned_T else None


class LearnedTemperatureModifier(LogitModifier):
    """``--ctkd``: the fixed temperatures give way to the learned one."""
    title = 'learned temperature (CTKD): every logit KL of the method'
    options = OPTIONS
    label = 'CTKD'
    checks = (('kd --ctkd', ['--ctkd']), ('dkd --ctkd', ['--ctkd']))

    def check_given(self, opt, method):
        super().check_given(opt, method)
        if not self.enabled(opt):
            return
        name = '--ctkd' if opt.ctkd else f'--distill {opt.distill}'
        for option in (KD_T, LSKD.OPTIONS[1]):
            if value(opt, option) != option.default:
                raise UserError(f'with {name} the temperature is learned, so {option.flag} '
                                f'is not read: leave it out (--ctkd_t_start and --ctkd_t_end set '
                                f'its range)')

    def method_fields(self, opt):
        if not self.enabled(opt):
            return {'learned_T': None}
        return {'learned_T': dict(t_start=opt.ctkd_t_start, t_end=opt.ctkd_t_end,
                                  decay=opt.ctkd_decay, lambda_max=opt.ctkd_lambda_max,
                                  lambda_min=opt.ctkd_lambda_min,
                                  lambda_epochs=opt.ctkd_lambda_epochs)}

    def describe(self, config):
        learned = config.method.learned_T
        if not learned:
            return ''
        return (f'temperature learned (CTKD): {learned["t_start"]:g} + {learned["t_end"]:g} * '
                f'sigmoid(theta), reversal strength {learned["lambda_max"]:g} -> '
                f'{learned["lambda_min"]:g} over {learned["lambda_epochs"]} epochs '
                f'({learned["decay"]}), logged each epoch')

    def labelled(self, opt):
        # a preset (--distill ctkd) carries the name already
        return bool(value(opt, self.options[0])) and opt.distill not in PRESETS


LEARNED_T = LearnedTemperatureModifier()
