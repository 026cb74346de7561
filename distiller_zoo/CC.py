"""Correlation Congruence (Peng et al., ICCV 2019), in the form its authors gave RepDistiller:
the inner product of consecutive samples' absolute embedding residuals, after a trained linear
embedding on each side."""
import torch.nn as nn

from models.util import LinearEmbed
from .base import Distiller, register_method
from .options import FEAT_DIM


class Correlation(nn.Module):
    def forward(self, f_s, f_t):
        delta = (f_s - f_t).abs()
        return (delta[:-1] * delta[1:]).sum(1).mean()


@register_method('correlation', 'cc')
class CC(Distiller):
    default_weights = (1.0, 0.0, 0.02)
    teacher_outputs = ('logits', 'embedding')
    options = (FEAT_DIM,)

    def __init__(self, student, teacher, opt, image_size=32):
        super().__init__(student, teacher, opt, image_size)
        feat_s, feat_t = self.probe_features(image_size)
        self.embed_s = LinearEmbed(feat_s[-1].shape[1], opt.feat_dim)
        self.embed_t = LinearEmbed(feat_t[-1].shape[1], opt.feat_dim)  # trained as well
        self.criterion_kd = Correlation()

    def kd_loss(self, feat_s, feat_t, logit_s, logit_t, index=None, contrast_idx=None):
        return self.criterion_kd(self.embed_s(feat_s[-1]), self.embed_t(feat_t[-1]))
