"""Relational Knowledge Distillation (Park et al., CVPR 2019): match normalised pairwise
distances and triplet angles of the batch's embeddings (Huber loss)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method


def pdist(e, squared=False, eps=1e-12):
    sq = e.pow(2).sum(dim=1)
    dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        dist = dist.sqrt()
    dist = dist.clone()
    dist[range(len(e)), range(len(e))] = 0
    return dist


def _normalised_distances(e):
    d = pdist(e)
    return d / d[d > 0].mean()


def _angles(e):
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # diff[i, j] = e_j - e_i
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


class RKDLoss(nn.Module):
    def __init__(self, w_d=25, w_a=50):
        super().__init__()
        self.w_d = w_d
        self.w_a = w_a

    def forward(self, f_s, f_t):
        student, teacher = f_s.flatten(1), f_t.flatten(1)
        with torch.no_grad():
            t_d, t_angle = _normalised_distances(teacher), _angles(teacher)
        loss_d = F.smooth_l1_loss(_normalised_distances(student), t_d)
        loss_a = F.smooth_l1_loss(_angles(student), t_angle)
        return self.w_d * loss_d + self.w_a * loss_a


@register_method('rkd')
class RKD(Distiller):
    about = About('RKD', 'embeddings')
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS, EMBEDDING}))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.criterion_kd = RKDLoss()

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.feats[-1], t.feats[-1])
