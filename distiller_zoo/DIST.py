"""DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022): match
the Pearson correlations of the softened predictions, per sample across classes (inter-class)
and per class across the batch (intra-class), instead of the probabilities themselves."""
import torch.nn as nn

from core.util import non_negative_float, positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .options import Option


def pearson(a, b, eps=1e-8):
    """Row-wise Pearson correlation (centred cosine) of two B x C matrices."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(y_s, y_t):
    """1 - mean correlation of each sample's class scores."""
    return 1 - pearson(y_s, y_t).mean()


def intra_class_relation(y_s, y_t):
    """1 - mean correlation of each class's scores over the batch."""
    return inter_class_relation(y_s.t(), y_t.t())


class DIST(nn.Module):
    """The DIST loss (its authors' name and signature): ``tau^2 (beta L_inter + gamma L_intra)``
    on ``softmax(z / tau)``."""

    def __init__(self, beta=1.0, gamma=1.0, tau=1.0):
        super().__init__()
        self.beta, self.gamma, self.tau = beta, gamma, tau

    def forward(self, z_s, z_t):
        y_s = (z_s / self.tau).softmax(dim=1)
        y_t = (z_t / self.tau).softmax(dim=1)
        return self.tau ** 2 * (self.beta * inter_class_relation(y_s, y_t)
                                + self.gamma * intra_class_relation(y_s, y_t))


@register_method('dist')
class DISTMethod(Distiller):
    about = About('DIST (Huang et al., NeurIPS 2022)', 'logits')
    # DIST's CIFAR recipe: 1 x CE + 2 x DIST, no KL term
    needs = Needs(weights=(1.0, 0.0, 2.0), teacher_reads=frozenset({LOGITS}))

    options = (
        Option('--dist_beta', type=non_negative_float, default=1.0,
               help='DIST: weight of the inter-class (per sample) relation'),
        Option('--dist_gamma', type=non_negative_float, default=1.0,
               help='DIST: weight of the intra-class (per class) relation'),
        Option('--dist_tau', type=positive_float, default=4.0,
               help='DIST: temperature (4 on CIFAR, 1 on ImageNet)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        o = config.options
        self.criterion_kd = DIST(o.dist_beta, o.dist_gamma, o.dist_tau)

    def describe(self):
        c = self.criterion_kd
        return f'beta {c.beta:g} (inter-class), gamma {c.gamma:g} (intra-class), tau {c.tau:g}'

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.logits, t.logits)
