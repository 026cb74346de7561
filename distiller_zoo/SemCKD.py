"""SemCKD (Chen et al., "Cross-Layer Distillation with Semantic Calibration", AAAI 2021), as the
SimKD toolbox runs it: every student stage is projected onto every teacher stage, and a
learned attention, computed per sample from the batch's similarity (Gram) matrices of each
stage, decides how much each student stage learns from each teacher stage.

The attention's input width is the batch size (the SimKD toolbox's ``feat_dim``, per process
under several processes), so a batch of another size cannot pass: the training loop skips the
last, shorter batch of each epoch, as the authors' code does."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import positive_float
from .SimKD import align_maps
from .base import About, Distiller, Needs, register_method
from .options import Option

ATTENTION_FACTOR = 4  # query/key width = batch size / 4


class MLPEmbed(nn.Module):
    """Linear, ReLU, linear, L2 normalisation (the SimKD toolbox's query/key embedding, without
    its unused second regressor)."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear1 = nn.Linear(dim_in, 2 * dim_out)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Linear(2 * dim_out, dim_out)

    def forward(self, x):
        x = self.linear2(self.relu(self.linear1(x.flatten(1))))
        return x / x.norm(dim=1, keepdim=True)


class Proj(nn.Module):
    """Bias-free 1x1 conv to twice the target channels, BN, ReLU, 3x3 conv, BN, ReLU, 1x1 conv
    to the target channels."""

    def __init__(self, num_input_channels=1024, num_target_channels=128):
        super().__init__()
        mid = 2 * num_target_channels
        self.regressor = nn.Sequential(
            nn.Conv2d(num_input_channels, mid, 1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, num_target_channels, 1, bias=False))

    def forward(self, x):
        return self.regressor(x)


class SelfA(nn.Module):
    """Cross-layer attention (the authors' name, signature and keys): ``feat_dim`` is the batch
    size. ``forward(feat_s, feat_t)`` returns ``(proj_value_stu, value_tea, attention)``:
    ``proj_value_stu[i][j]`` student stage i projected for teacher stage j,
    ``value_tea[i][j]`` teacher stage j at the common size, ``attention`` (B, L_s, L_t)."""

    def __init__(self, feat_dim, s_n, t_n, soft, factor=ATTENTION_FACTOR):
        super().__init__()
        self.soft, self.feat_dim = soft, feat_dim
        self.s_len, self.t_len = len(s_n), len(t_n)
        for i in range(self.s_len):
            setattr(self, f'query_{i}', MLPEmbed(feat_dim, feat_dim // factor))
        for j in range(self.t_len):
            setattr(self, f'key_{j}', MLPEmbed(feat_dim, feat_dim // factor))
        for i in range(self.s_len):
            for j in range(self.t_len):
                setattr(self, f'regressor{i}{j}', Proj(s_n[i], t_n[j]))

    @staticmethod
    def gram(f):
        f = f.flatten(1)
        return f @ f.t()

    def forward(self, feat_s, feat_t):
        query = torch.stack([getattr(self, f'query_{i}')(self.gram(f))
                             for i, f in enumerate(feat_s)], 1)  # (B, L_s, D)
        key = torch.stack([getattr(self, f'key_{j}')(self.gram(f))
                           for j, f in enumerate(feat_t)], 2)  # (B, D, L_t)
        attention = F.softmax(torch.bmm(query, key) / self.soft, dim=-1)
        proj_value_stu, value_tea = [], []
        for i, f_s in enumerate(feat_s):
            pairs = [align_maps(f_s, f_t) for f_t in feat_t]
            proj_value_stu.append([getattr(self, f'regressor{i}{j}')(source)
                                   for j, (source, _) in enumerate(pairs)])
            value_tea.append([target for _, target in pairs])
        return proj_value_stu, value_tea, attention


class SemCKDLoss(nn.Module):
    """``sum_{b,i,j} attention[b,i,j] * mean MSE(proj[i][j][b], target[i][j][b]) / (B L_s)``."""

    def forward(self, s_value, f_target, weight):
        bsz, num_stu, num_tea = weight.shape
        errors = torch.stack([
            torch.stack([(s_value[i][j] - f_target[i][j]).pow(2).flatten(1).mean(1)
                         for j in range(num_tea)], 1)
            for i in range(num_stu)], 1)  # (B, L_s, L_t)
        return (weight * errors).sum() / (bsz * num_stu)


@register_method('semckd')
class SemCKD(Distiller):
    about = About('SemCKD (Chen et al., AAAI 2021)',
                  'every stage',
                  'attention MLPs + a projection per stage pair')
    # the SimKD toolbox's -c 1 -d 1 -b 400
    needs = Needs(weights=(1.0, 1.0, 400.0), full_batches_only=True)

    options = (Option('-s', '--soft', type=positive_float, default=1.0,
                      help='SemCKD: attention temperature. SemCKD\'s attention is sized by '
                           '--batch_size (per process), so the last, shorter batch of each '
                           'epoch is skipped, as in its authors\' code'),)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        if config.batch_size < ATTENTION_FACTOR:
            raise ValueError(f'its attention embeds each batch into --batch_size / '
                             f'{ATTENTION_FACTOR} dimensions; use --batch_size '
                             f'{ATTENTION_FACTOR} or more')
        feat_s, feat_t = self.probe_features(config.image_size)
        self.batch_size = config.batch_size
        self.attention = SelfA(config.batch_size, [f.shape[1] for f in feat_s[1:-1]],
                               [f.shape[1] for f in feat_t[1:-1]], config.options.soft)
        self.criterion_kd = SemCKDLoss()

    def describe(self):
        return (f'attention temperature {self.attention.soft:g}, sized for batches of '
                f'{self.batch_size} (the last, shorter batch of each epoch is skipped)')

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(*self.attention(s.feats[1:-1], t.feats[1:-1]))
