"""Similarity-Preserving KD (Tung & Mori, ICCV 2019): match the row-normalised batch Gram
matrices of the last stage's features."""
import torch.nn as nn
import torch.nn.functional as F

from .base import Distiller, register_method


class Similarity(nn.Module):
    def forward(self, g_s, g_t):
        return [self.similarity_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    @staticmethod
    def similarity_loss(f_s, f_t):
        bsz = f_s.shape[0]
        f_s, f_t = f_s.reshape(bsz, -1), f_t.reshape(bsz, -1)
        g_s = F.normalize(f_s @ f_s.t())
        g_t = F.normalize(f_t @ f_t.t())
        return (g_t - g_s).pow(2).reshape(-1, 1).sum(0) / (bsz * bsz)


@register_method('similarity', 'sp')
class SP(Distiller):
    default_weights = (1.0, 0.0, 3000.0)

    def __init__(self, student, teacher, opt, image_size=32):
        super().__init__(student, teacher, opt, image_size)
        self.criterion_kd = Similarity()

    def kd_loss(self, feat_s, feat_t, logit_s, logit_t, index=None, contrast_idx=None):
        return sum(self.criterion_kd([feat_s[-2]], [feat_t[-2]]))
