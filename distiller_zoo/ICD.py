"""ICD / DCD (Giakoumoglou & Stathaki, "Discriminative and Consistent Representation
Distillation", first titled "Invariant Consistency for Knowledge Distillation"): the batch's
student and teacher embeddings are compared all against all with a learned inverse temperature
(capped) and bias; a contrastive term makes each student embedding pick its own teacher
embedding, and a consistency term makes the student-over-teacher and teacher-over-student
distributions agree."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method, with_embedding_dims
from .options import FEAT_DIM


class LearnableParams(nn.Module):
    """The inverse-temperature exponent ``tau`` and the bias ``b`` (the authors' keys
    ``params.tau``, ``params.b``)."""

    def __init__(self, init_tau=1.0, init_b=0.0):
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(float(init_tau)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))


class DCDLoss(nn.Module):
    """The authors' name and signature. ``opt`` carries ``s_dim``, ``t_dim``, ``feat_dim`` (and
    ``nce_t`` when ``trainable`` is False: then the similarities are multiplied by ``nce_t``
    and there is no bias). ``forward(f_s, f_t)`` on the pooled embeddings."""

    def __init__(self, opt, max_tau=10.0, alpha=0.5, init_tau=1.0, init_b=0.0, trainable=True):
        super().__init__()
        self.max_tau, self.alpha, self.trainable = max_tau, alpha, trainable
        self.params = LearnableParams(init_tau, init_b)
        if not trainable:
            self.params.tau = nn.Parameter(torch.tensor(float(opt.nce_t)), requires_grad=False)
            self.params.b = nn.Parameter(torch.tensor(0.0), requires_grad=False)
        self.embed_s = nn.Linear(opt.s_dim, opt.feat_dim)
        self.embed_t = nn.Linear(opt.t_dim, opt.feat_dim)

    def inverse_temperature(self):
        """``min(exp(tau), max_tau)``, or the fixed ``nce_t``."""
        if not self.trainable:
            return self.params.tau
        return self.params.tau.exp().clamp(max=self.max_tau)

    def forward(self, f_s, f_t):
        z_s = F.normalize(self.embed_s(f_s), dim=1)
        z_t = F.normalize(self.embed_t(f_t), dim=1)
        bias = self.params.b if self.trainable else 0.0
        scores = self.inverse_temperature() * z_s @ z_t.t() + bias  # row: a student sample
        contrastive = F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))
        # Each teacher sample's distribution over the student samples against each student
        # sample's distribution over the teacher samples.
        consistency = F.kl_div(F.log_softmax(scores, dim=1), F.softmax(scores, dim=0).t(),
                               reduction='batchmean')
        return contrastive + self.alpha * consistency


class ICDLoss(DCDLoss):
    """The earlier name of the same loss (always trainable)."""

    def __init__(self, opt, max_tau=10.0, alpha=0.5, init_tau=1.0, init_b=0.0):
        super().__init__(opt, max_tau, alpha, init_tau, init_b, trainable=True)


@register_method('icd', 'dcd')
class ICD(Distiller):
    about = About('ICD / DCD (Giakoumoglou & Stathaki, 2024)',
                  'embeddings',
                  '2 linear embeddings, learned temperature and bias')
    # the authors' "-a 0 -b 1"; "-a 1 -b 1" adds KD
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS, EMBEDDING}))
    options = (FEAT_DIM,)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.criterion_kd = DCDLoss(with_embedding_dims(config, feat_s, feat_t))

    def describe(self):
        tau = self.criterion_kd.params.tau.item()
        return (f'inverse temperature exp(tau) learned from tau = {tau:.3g}, capped at '
                f'{self.criterion_kd.max_tau:g}; consistency weight '
                f'{self.criterion_kd.alpha:g}')

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.feats[-1], t.feats[-1])
