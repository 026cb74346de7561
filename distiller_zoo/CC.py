"""Correlation Congruence (Peng et al., ICCV 2019), in the form its authors gave RepDistiller:
the inner product of consecutive samples' absolute embedding residuals, after a trained linear
embedding on each side."""
import torch.nn as nn

from models.util import LinearEmbed
from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method
from .options import FEAT_DIM


class Correlation(nn.Module):
    def forward(self, f_s, f_t):
        delta = (f_s - f_t).abs()
        return (delta[:-1] * delta[1:]).sum(1).mean()


@register_method('correlation', 'cc')
class CC(Distiller):
    about = About('CC', 'embeddings', '2 linear embeddings (`--feat_dim`)')
    needs = Needs(weights=(1.0, 0.0, 0.02), teacher_reads=frozenset({LOGITS, EMBEDDING}))
    options = (FEAT_DIM,)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.embed_s = LinearEmbed(feat_s[-1].shape[1], config.options.feat_dim)
        self.embed_t = LinearEmbed(feat_t[-1].shape[1], config.options.feat_dim)  # trained too
        self.criterion_kd = Correlation()

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(self.embed_s(s.feats[-1]), self.embed_t(t.feats[-1]))
