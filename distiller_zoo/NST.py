"""Neuron Selectivity Transfer (Huang & Wang, 2017): squared MMD with a degree-2 polynomial
kernel between the channel activation maps of student and teacher at every stage."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import About, Distiller, Needs, pool_to_smaller, register_method


class NSTLoss(nn.Module):
    def forward(self, g_s, g_t):
        return [self.nst_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def nst_loss(self, f_s, f_t):
        f_s, f_t = pool_to_smaller(f_s, f_t)
        f_s = F.normalize(f_s.flatten(2), dim=2)
        f_t = F.normalize(f_t.flatten(2), dim=2)
        # The teacher-only term is constant; it is kept so the value is the full squared MMD.
        return (self.poly_kernel(f_t, f_t).mean().detach() + self.poly_kernel(f_s, f_s).mean()
                - 2 * self.poly_kernel(f_s, f_t).mean())

    @staticmethod
    def poly_kernel(a, b):
        # (a_j . b_i)^2 for every channel pair, as one batched product (B, C, C) rather than
        # RepDistiller's broadcast through a (B, C, C, HW) tensor.
        return torch.bmm(b, a.transpose(1, 2)).pow(2)


@register_method('nst')
class NST(Distiller):
    about = About('NST', 'every stage')
    needs = Needs(weights=(1.0, 0.0, 50.0))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.criterion_kd = NSTLoss()

    def kd_loss(self, s, t, batch):
        return sum(self.criterion_kd(s.feats[1:-1], t.feats[1:-1]))
