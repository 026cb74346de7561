"""OFD (Heo et al., "A Comprehensive Overhaul of Feature Distillation", ICCV 2019;
clovaai/overhaul-distillation, and mdistiller's version): the student's pre-ReLU stage outputs,
through a 1x1 conv + BN connector each, regress the teacher's, clipped from below by a margin
per channel (the expected value of the teacher's negative responses, from its BN's affine
parameters), with a partial L2 that ignores a student already below a non-positive target.
Deeper stages weigh more (1, 1/2, 1/4, ...). As both authors' code, the teacher runs with
its BatchNorm on batch statistics during distillation (``--ofd_teacher_bn batch``), which is
what the margins assume; ``eval`` keeps its running statistics."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import About, BATCH_STATS, PREACT, STAGES, Distiller, Needs, register_method
from .options import Option

MIN_NEGATIVE_MASS = 0.001  # below it the margin is -3 standard deviations


def get_margin_from_BN(bn):
    """Per channel, with ``s = |gamma|`` and ``m = beta``: ``E[x | x < 0]`` for ``x ~ N(m, s^2)``,
    ``m - s * pdf(m/s) / cdf(-m/s)``, or ``-3 s`` where ``cdf(-m/s) <= 0.001``."""
    s = bn.weight.detach().double().abs()
    m = bn.bias.detach().double()
    negative_mass = torch.special.ndtr(-m / s)
    density = torch.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi)
    margin = torch.where(negative_mass > MIN_NEGATIVE_MASS,
                         m - s * density / negative_mass.clamp_min(MIN_NEGATIVE_MASS), -3 * s)
    return margin.float()


def feat_loss(source, target, margin):
    """Partial L2 between ``source`` (student) and ``target`` raised to ``margin`` (per channel):
    no loss where the student is at or below a target that is not positive; summed over
    channels and positions, averaged over the batch."""
    margin = margin.to(source).reshape(1, -1, 1, 1)
    target = torch.max(target, margin)
    counted = (source > target) | (target > 0)
    return ((source - target) ** 2 * counted).sum() / source.shape[0]


def stage_sum(student, teacher, margins):
    """``feat_loss`` of each stage (the connected student's maps, the teacher's pooled to
    their size), the deepest weighing 1, the one before 1/2, ..."""
    count = len(student)
    return sum(feat_loss(f_s, F.adaptive_avg_pool2d(f_t, f_s.shape[-2:]), margin)
               / 2 ** (count - 1 - i)
               for i, (f_s, f_t, margin) in enumerate(zip(student, teacher, margins)))


class ConnectorConvBN(nn.Module):
    """One 1x1 conv (He-normal over the output channels, no bias) + BN per stage, from the
    student's channels to the teacher's (``connectors.<i>``, the authors' keys)."""

    def __init__(self, s_channels, t_channels, kernel_size=1):
        super().__init__()
        self.connectors = nn.ModuleList(
            self._connector(s, t, kernel_size) for s, t in zip(s_channels, t_channels))

    @staticmethod
    def _connector(s_channels, t_channels, kernel_size):
        conv = nn.Conv2d(s_channels, t_channels, kernel_size, padding=(kernel_size - 1) // 2,
                         bias=False)
        nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / (kernel_size ** 2 * t_channels)))
        return nn.Sequential(conv, nn.BatchNorm2d(t_channels))

    def forward(self, g_s):
        return [connector(f) for connector, f in zip(self.connectors, g_s)]


@register_method('ofd')
class OFD(Distiller):
    about = About('OFD (Heo et al., ICCV 2019)',
                  'pre-ReLU stages; teacher BN affine parameters',
                  'a 1x1 conv + BN connector per stage')
    # mdistiller's CIFAR-100 recipe: 1 x CE + 0.001 x the stage sum, no KL
    needs = Needs(weights=(1.0, 0.0, 0.001), student_reads=frozenset({STAGES, PREACT}),
                    teacher_reads=frozenset({STAGES, PREACT, BATCH_STATS}))
    options = (Option('--ofd_teacher_bn', choices=['batch', 'eval'], default='batch',
                      help='OFD: the teacher\'s BatchNorm during distillation: batch statistics '
                           '(the authors\' code; its running statistics are kept) or eval'),)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        if config.options.ofd_teacher_bn == 'eval':
            self.teacher_reads = self.teacher_reads - {BATCH_STATS}
        feat_s, feat_t = self.probe_features(config.image_size)
        try:
            bns = self.teacher_net.get_bn_before_relu()
        except NotImplementedError as e:
            raise ValueError(str(e)) from None
        count = min(len(feat_s) - 2, len(feat_t) - 2)
        if count < 1 or len(bns) < count:
            raise ValueError('OFD needs pre-ReLU stages and their BN layers on both networks')
        self.count = count
        channels = [(s.shape[1], t.shape[1])
                    for s, t in zip(feat_s[1:-1][-count:], feat_t[1:-1][-count:])]
        self.connectors = ConnectorConvBN(*zip(*channels))
        for i, bn in enumerate(bns[-count:]):
            self.register_buffer(f'margin{i}', get_margin_from_BN(bn), persistent=False)

    def describe(self):
        size = sum(p.numel() for p in self.connectors.parameters())
        return (f'{self.count} stages, connectors {size:,} parameters; teacher BN on '
                f'{self.config.options.ofd_teacher_bn} statistics')

    def kd_loss(self, s, t, batch):
        """The unweighted stage sum (``-b`` weighs it)."""
        margins = [getattr(self, f'margin{i}') for i in range(self.count)]
        return stage_sum(self.connectors(s.feats[1:-1][-self.count:]),
                         t.feats[1:-1][-self.count:], margins)
