"""Similarity-Preserving KD (Tung & Mori, ICCV 2019): match the row-normalised batch Gram
matrices of the last stage's features."""
import torch.nn as nn
import torch.nn.functional as F

from .base import About, Distiller, Needs, register_method


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
    about = About('SP', 'last stage')
    needs = Needs(weights=(1.0, 0.0, 3000.0))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.criterion_kd = Similarity()

    def kd_loss(self, s, t, batch):
        return sum(self.criterion_kd([s.feats[-2]], [t.feats[-2]]))
