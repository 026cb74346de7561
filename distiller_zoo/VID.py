"""Variational Information Distillation (Ahn et al., CVPR 2019): at every stage, the negative
log-likelihood of the teacher feature under a Gaussian whose mean a small regressor predicts from
the student feature and whose per-channel variance is learnt."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import About, Distiller, Needs, pool_to_smaller, register_method


class VIDLoss(nn.Module):
    def __init__(self, num_input_channels, num_mid_channel, num_target_channels,
                 init_pred_var=5.0, eps=1e-5):
        super().__init__()

        def conv1x1(c_in, c_out):
            return nn.Conv2d(c_in, c_out, kernel_size=1, padding=0, bias=False)

        self.regressor = nn.Sequential(
            conv1x1(num_input_channels, num_mid_channel), nn.ReLU(),
            conv1x1(num_mid_channel, num_mid_channel), nn.ReLU(),
            conv1x1(num_mid_channel, num_target_channels))
        # softplus(log_scale) + eps starts at init_pred_var
        self.log_scale = nn.Parameter(
            math.log(math.exp(init_pred_var - eps) - 1.0) * torch.ones(num_target_channels))
        self.eps = eps

    def forward(self, input, target):
        input, target = pool_to_smaller(input, target)
        pred_mean = self.regressor(input)
        pred_var = (F.softplus(self.log_scale) + self.eps).view(1, -1, 1, 1)
        neg_log_prob = 0.5 * ((pred_mean - target) ** 2 / pred_var + torch.log(pred_var))
        return neg_log_prob.mean()


@register_method('vid')
class VID(Distiller):
    about = About('VID', 'every stage', 'a regressor + variance per stage')
    needs = Needs(weights=(1.0, 0.0, 1.0))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.criterion_kd = nn.ModuleList(
            VIDLoss(s.shape[1], t.shape[1], t.shape[1])
            for s, t in zip(feat_s[1:-1], feat_t[1:-1]))

    def kd_loss(self, s, t, batch):
        return sum(c(f_s, f_t) for c, f_s, f_t in zip(self.criterion_kd, s.feats[1:-1],
                                                      t.feats[1:-1]))
