"""Attention Transfer (Zagoruyko & Komodakis, ICLR 2017): match the normalised spatial maps of
channel-averaged squared activations at every stage."""
import torch.nn as nn
import torch.nn.functional as F

from .base import About, Distiller, Needs, pool_to_smaller, register_method


class Attention(nn.Module):
    def __init__(self, p=2):
        super().__init__()
        self.p = p

    def forward(self, g_s, g_t):
        return [self.at_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def at_loss(self, f_s, f_t):
        f_s, f_t = pool_to_smaller(f_s, f_t)
        return (self.at(f_s) - self.at(f_t)).pow(2).mean()

    def at(self, f):
        return F.normalize(f.pow(self.p).mean(1).flatten(1))


@register_method('attention', 'at')
class AT(Distiller):
    about = About('AT', 'every stage')
    needs = Needs(weights=(1.0, 0.0, 1000.0))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.criterion_kd = Attention()

    def kd_loss(self, s, t, batch):
        return sum(self.criterion_kd(s.feats[1:-1], t.feats[1:-1]))
