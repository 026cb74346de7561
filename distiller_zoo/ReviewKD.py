"""ReviewKD (Chen et al., "Distilling Knowledge via Knowledge Review", CVPR 2021), as mdistiller
runs it: attention-based fusion (ABF) modules review the student's stages from the deepest
(its pooled embedding as a 1x1 map) to the shallowest, each fusing its stage with the deeper
result, and a hierarchical context loss (HCL) matches every output to the teacher's
pre-activation stage (and embedding) at several pooled resolutions. The configuration is
derived from the probed shapes, so every teacher/student pair of the registry works."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int
from .base import About, FEATURES, PREACT, Distiller, Needs, register_method
from .options import Option

MAX_MID_CHANNELS = 512
# The per-pair loss weight of the ReviewKD authors' CIFAR-100 script; 1 elsewhere.
REVIEWKD_WEIGHTS = {('wrn_40_2', 'wrn_16_2'): 5.0, ('wrn_40_2', 'wrn_40_1'): 5.0,
                    ('wrn_40_2', 'ShuffleV1'): 5.0, ('resnet32x4', 'ShuffleV1'): 5.0,
                    ('resnet32x4', 'resnet8x4'): 5.0, ('resnet32x4', 'ShuffleV2'): 8.0,
                    ('resnet56', 'resnet20'): 0.6, ('resnet110', 'resnet32'): 1.0}
REVIEWKD_DEFAULT_WEIGHT = 1.0


def hcl_loss(fstudent, fteacher):
    """Hierarchical context loss (the authors' name): per level, the MSE of the maps plus the
    MSEs of their 4x4, 2x2 and 1x1 average pools (those smaller than the map), weighted 1, 1/2,
    1/4, 1/8 in that order and normalised by the weights used; summed over levels."""
    total = 0.0
    for f_s, f_t in zip(fstudent, fteacher):
        loss, weight, weights = F.mse_loss(f_s, f_t), 1.0, 1.0
        for side in (4, 2, 1):
            if side >= f_s.shape[2]:
                continue
            weight /= 2
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(f_s, side),
                                              F.adaptive_avg_pool2d(f_t, side))
            weights += weight
        total = total + loss / weights
    return total


class ABF(nn.Module):
    """Attention-based fusion (the authors' name, signature and state-dict keys): a 1x1 conv +
    BN to ``mid_channel``; with ``fuse``, the deeper result ``y``, upsampled to ``shape``, is
    blended in with two per-pixel sigmoid weights; the map is resized to ``out_shape`` when it
    differs; a 3x3 conv + BN gives the ``out_channel`` output. Returns ``(output, residual)``."""

    def __init__(self, in_channel, mid_channel, out_channel, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channel, mid_channel, 1, bias=False),
                                   nn.BatchNorm2d(mid_channel))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channel, out_channel, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channel))
        self.att_conv = (nn.Sequential(nn.Conv2d(2 * mid_channel, 2, 1), nn.Sigmoid())
                         if fuse else None)
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x, y=None, shape=None, out_shape=None):
        x = self.conv1(x)
        if self.att_conv is not None:
            y = F.interpolate(y, (shape, shape), mode='nearest')
            gates = self.att_conv(torch.cat([x, y], dim=1))
            x = x * gates[:, 0:1] + y * gates[:, 1:2]
        if x.shape[-1] != out_shape:
            x = F.interpolate(x, (out_shape, out_shape), mode='nearest')
        return self.conv2(x), x


def review_levels(feats, depth):
    """The ``depth`` deepest stage maps, then the embedding as a 1x1 map (shallow to deep)."""
    return feats[1:-1][-depth:] + [feats[-1][:, :, None, None]]


@register_method('reviewkd')
class ReviewKD(Distiller):
    about = About('ReviewKD (Chen et al., CVPR 2021)',
                  'every stage + embedding (teacher: pre-activation)',
                  'ABF modules')
    # 1 x CE + -b x weight x warm-up x HCL; the teacher's stages before their last ReLU
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=FEATURES | {PREACT})

    options = (
        Option('--reviewkd_weight', type=non_negative_float, default=None,
               help='ReviewKD: weight of the HCL loss; default: the authors\' weight for the '
                    'pair (5 for resnet8x4, wrn_16_2, wrn_40_1 and ShuffleV1 students, 8 for '
                    'ShuffleV2, 0.6 for resnet56 -> resnet20, else 1)'),
        Option('--reviewkd_warmup', type=non_negative_int, default=20,
               help='ReviewKD: epochs over which the loss grows linearly to full weight (epoch '
                    'e weighs min(e / warmup, 1); 0: none)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        # Stage counts may differ across families: the deepest stages are paired.
        self.depth = min(len(feat_s), len(feat_t)) - 2
        levels_s, levels_t = review_levels(feat_s, self.depth), review_levels(feat_t, self.depth)
        in_channels = [f.shape[1] for f in levels_s]
        out_channels = [f.shape[1] for f in levels_t]
        self.shapes = [f.shape[2] for f in levels_s][::-1]  # deep to shallow
        self.out_shapes = [f.shape[2] for f in levels_t][::-1]
        mid = min(MAX_MID_CHANNELS, in_channels[-1])
        abfs = [ABF(c_in, mid, c_out, i < len(in_channels) - 1)
                for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels))]
        self.abfs = nn.ModuleList(abfs[::-1])
        o = config.options
        self.weight = (REVIEWKD_WEIGHTS.get((config.model_t, config.model_s),
                                            REVIEWKD_DEFAULT_WEIGHT)
                       if o.reviewkd_weight is None else o.reviewkd_weight)
        self.warmup = o.reviewkd_warmup

    def describe(self):
        return (f'HCL weight {self.weight:g}, warm-up {self.warmup} epochs, {self.depth} stages '
                f'+ embedding ({sum(p.numel() for p in self.abfs.parameters()):,} ABF parameters)')

    def review(self, feat_s):
        """The ABF outputs, shallow to deep, of the student's levels."""
        x = review_levels(feat_s, self.depth)[::-1]
        out, residual = self.abfs[0](x[0], out_shape=self.out_shapes[0])
        results = [out]
        for level, abf, shape, out_shape in zip(x[1:], self.abfs[1:], self.shapes[1:],
                                                self.out_shapes[1:]):
            out, residual = abf(level, residual, shape, out_shape)
            results.insert(0, out)
        return results

    def kd_loss(self, s, t, batch):
        loss = hcl_loss(self.review(s.feats), review_levels(t.feats, self.depth))
        return self.weight * self.warmup_weight(self.warmup) * loss
