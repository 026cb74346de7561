"""MLKD (Ding et al., "Multi-level Knowledge Distillation via Knowledge Alignment and
Correlation"; ifding/DLKD): each image comes as four views, rotated by 0, 90, 180 and 270
degrees counter-clockwise (after one random flip, each view randomly cropped), and both
networks see all of them. Three losses on the pooled embeddings: a correlation loss (the
rotated views' cosine similarities to the unrotated ones, student through an MLP, matched to
the teacher's), a supervised contrastive loss over student and teacher embeddings, and an
alignment loss (BYOL-style) of an MLP of the student's embedding to the teacher's. CE is on
the unrotated views; validation uses the plain test images.

Weights: ``-r`` CE, ``-a`` correlation, ``-b`` contrastive, ``-d`` alignment (for this method
``-d`` is not the KL weight: there is no KL term)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.util import Embed
from dataset.batch import BatchSpec
from dataset.views import RotatedViews
from .base import About, Distiller, Needs, register_method, with_embedding_dims
from .options import FEAT_DIM

VIEWS = RotatedViews.count  # rotations by k quarter-turns, k = 0..3, image-major in a batch


class MLPHead(nn.Module):
    """Linear, BN, ReLU, linear (the authors' name and keys, ``net.*``)."""

    def __init__(self, in_channels, mlp_hidden_size, projection_size):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, mlp_hidden_size),
                                 nn.BatchNorm1d(mlp_hidden_size), nn.ReLU(inplace=True),
                                 nn.Linear(mlp_hidden_size, projection_size))

    def forward(self, x):
        return self.net(x)


def _rotated_to_plain_similarity(f):
    """Cosine similarity of each rotated view (rows) to each unrotated view (columns)."""
    f = F.normalize(f, dim=1)
    plain = torch.arange(len(f), device=f.device) % VIEWS == 0
    return f[~plain] @ f[plain].t()


class CorrLoss(nn.Module):
    """KL between the teacher's and the student's (through ``mlp``) distributions of rotated-to-
    unrotated similarities, at ``temperature``; batch-mean over the rotated views."""

    def __init__(self, opt, temperature=0.5):
        super().__init__()
        self.temperature = temperature
        self.mlp = MLPHead(opt.s_dim, opt.s_dim, opt.s_dim)

    def forward(self, feat_s, feat_t):
        s = _rotated_to_plain_similarity(self.mlp(feat_s)) / self.temperature
        t = _rotated_to_plain_similarity(feat_t).detach() / self.temperature
        return F.kl_div(F.log_softmax(s, dim=1), F.softmax(t, dim=1), reduction='batchmean')


class SupConLoss(nn.Module):
    """Supervised contrastive loss over the stacked student and teacher embeddings (the
    authors' name and signature; ``contrast_mode`` 'all' is the one used)."""

    def __init__(self, opt, temperature=0.07, contrast_mode='all', base_temperature=0.07):
        super().__init__()
        self.temperature, self.base_temperature = temperature, base_temperature
        self.contrast_mode = contrast_mode
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)

    def forward(self, feat_s, feat_t, labels):
        anchors = torch.cat([self.embed_s(feat_s), self.embed_t(feat_t)])
        labels = labels.repeat(2)
        logits = anchors @ anchors.t() / self.temperature
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        not_self = ~torch.eye(len(anchors), dtype=torch.bool, device=anchors.device)
        positives = (labels[:, None] == labels[None, :]) & not_self
        log_prob = logits - torch.log((logits.exp() * not_self).sum(1, keepdim=True) + 1e-7)
        mean_log_prob = (positives * log_prob).sum(1) / positives.sum(1)
        return -(self.temperature / self.base_temperature) * mean_log_prob.mean()


class AlignLoss(nn.Module):
    """``2 - 2 cos(mlp(h_s), h_t)``, averaged over the views."""

    def __init__(self, opt, p=2):
        super().__init__()
        self.p = p
        self.mlp = MLPHead(opt.s_dim, 16 * opt.t_dim, opt.t_dim)

    def forward(self, feat_s, feat_t):
        f_s = F.normalize(self.mlp(feat_s), dim=-1, p=self.p)
        f_t = F.normalize(feat_t, dim=-1, p=self.p)
        return 2 - 2 * (f_s * f_t).sum(dim=-1).mean()


@register_method('mlkd')
class MLKD(Distiller):
    about = About('MLKD (Ding et al.)',
                  'embeddings of 4 rotated views',
                  'correlation MLP, 2 embeddings, alignment MLP')
    # -r -a -b -d of the authors' scripts; each image as its four rotations, seen in one pass
    a_term_is_kd = False  # its -a term is its own
    needs = Needs(weights=(1.0, 50.0, 1.0, 20.0), batch=BatchSpec(views=RotatedViews()))
    logit_kl_weights = ()  # its losses are on embeddings
    options = (FEAT_DIM,)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        dims = with_embedding_dims(config, feat_s, feat_t)
        self.delta = config.weights[3]
        self.criterion_corr = CorrLoss(dims)
        self.criterion_kd = SupConLoss(dims)
        self.criterion_align = AlignLoss(dims)

    def describe(self):
        return (f'CE on unrotated views x {self.gamma:g}, correlation x {self.alpha:g}, '
                f'contrastive x {self.beta:g}, alignment x {self.delta:g} (-d); 4 rotated views '
                f'per image')

    def losses(self, s, t, batch):
        """``s``, ``t``: the networks on the ``B x 4`` views, image by image."""
        h_s, h_t, target = s.feats[-1], t.feats[-1], batch.target
        logits = s.logits[::VIEWS]  # the unrotated views
        return logits, {
            'cls': self.gamma * self.criterion_cls(logits, target),
            'corr': self.alpha * self.criterion_corr(h_s, h_t),
            'kd': self.beta * self.criterion_kd(h_s, h_t, target.repeat_interleave(VIEWS)),
            'align': self.delta * self.criterion_align(h_s, h_t)}
