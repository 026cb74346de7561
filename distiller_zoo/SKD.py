"""SKD (Jeong, Lee, Choi, "Streamlined Knowledge Distillation", CVPR 2026), in the two forms
that exist, which differ:

- ``skd``: torchdistill's losses (yoshitomo-matsubara/torchdistill, PR #538): an instance term,
  the batch-mean KL at T without T^2, and a direction term, the Mahalanobis length of each row
  of the difference of the students' and the teachers' Gram matrices of L2-normalised logits
  (B x B), under the covariance of those rows plus lambda I. No cross-entropy.
- ``skd_authors``: the authors' objective (HyunJunSik/StreamLined), which produced their
  numbers: CE + Hinton's KD + the direction term with the Gram matrices divided by C, the two
  terms scaled by the fraction of samples (resp. classes) at or below the median teacher
  confidence (their masks multiply terms already reduced to scalars).

Both read logits only, so the teacher-output cache serves them."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .MLLD import less_confident_half
from .modifiers import hinton_kl
from .options import Option


def direction_loss(logits_student, logits_teacher, tikhonov, gram_scale=1.0):
    """The mean over rows ``i`` of ``sqrt(D_i (cov(D) + lambda I)^-1 D_i^T)``, ``D`` the
    difference of the B x B Gram matrices of the L2-normalised logits (times ``gram_scale``),
    the covariance over D's rows, unbiased; in fp32. A batch of one row has no covariance: 0."""
    if logits_student.shape[0] < 2:
        return logits_student.sum() * 0.0
    with torch.autocast(logits_student.device.type, enabled=False):
        z_s = F.normalize(logits_student.float(), p=2, dim=1)
        z_t = F.normalize(logits_teacher.float(), p=2, dim=1)
        diff = (z_s @ z_s.t() - z_t @ z_t.t()) * gram_scale
        eye = torch.eye(diff.shape[1], device=diff.device)
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(torch.cov(diff.t())
                                                               + tikhonov * eye))
        return torch.einsum('bi,ij,bj->b', diff, inverse, diff).sqrt().mean()


class SKDInstanceLoss(nn.Module):
    """torchdistill's instance term, ``forward(logits_student, logits_teacher)``: batch-mean
    ``KL(softmax(z_t / T) || softmax(z_s / T))``, no T^2."""

    def __init__(self, temperature=4.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits_student, logits_teacher):
        T = self.temperature
        return F.kl_div(F.log_softmax(logits_student / T, 1), F.softmax(logits_teacher / T, 1),
                        reduction='batchmean')


class SKDDirectionLoss(nn.Module):
    """torchdistill's direction term, ``forward(logits_student, logits_teacher)``."""

    def __init__(self, tikhonov=0.1):
        super().__init__()
        self.tikhonov = tikhonov

    def forward(self, logits_student, logits_teacher):
        return direction_loss(logits_student, logits_teacher, self.tikhonov)


def SKD_loss(logits_student, logits_teacher, tik_factor):
    """The authors' direction term: the Gram matrices divided by the number of classes."""
    return direction_loss(logits_student, logits_teacher, tik_factor,
                          1.0 / logits_student.shape[1])


def masked_terms(logits_student, logits_teacher, temperature, tik):
    """The authors' KD and direction terms, unweighted: each times the fraction of samples
    (resp. classes) whose teacher confidence (resp. summed probability) is at or below the
    batch's median."""
    p_t = F.softmax(logits_teacher.detach().float(), dim=1)
    sample_fraction = less_confident_half(p_t.max(1).values).mean()
    class_fraction = less_confident_half(p_t.sum(0)).mean()
    return {'kd': hinton_kl(logits_student, logits_teacher, temperature) * sample_fraction,
            'bc': SKD_loss(logits_student, logits_teacher, tik) * class_fraction}


def skd_losses(logits_student, logits_teacher, target, temperature=4.0, tik=0.1, ce=0.1, kd=0.9):
    """The authors' weighted terms ``{'loss_ce', 'loss_kd', 'loss_bc'}`` of one batch."""
    terms = masked_terms(logits_student, logits_teacher, temperature, tik)
    return {'loss_ce': ce * F.cross_entropy(logits_student, target),
            'loss_kd': kd * terms['kd'], 'loss_bc': kd * terms['bc']}


OPTIONS = (Option('--skd_T', type=positive_float, default=4.0,
                  help='SKD: temperature of the instance (KD) term'),
           Option('--skd_tikhonov', type=positive_float, default=0.1,
                  help='SKD: lambda added to the covariance of the direction term'))


@register_method('skd')
class SKD(Distiller):
    about = About('SKD (Jeong et al., CVPR 2026), torchdistill\'s losses', 'logits')
    # b x (instance + direction); torchdistill's sample config has no cross-entropy
    needs = Needs(weights=(0.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}))
    options = OPTIONS

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.instance = SKDInstanceLoss(config.options.skd_T)
        self.direction = SKDDirectionLoss(config.options.skd_tikhonov)

    def describe(self):
        o = self.config.options
        return f'instance term at T {o.skd_T:g} (no T^2), direction term lambda {o.skd_tikhonov:g}'

    def kd_loss(self, s, t, batch):
        return {'instance': self.instance(s.logits, t.logits),
                'direction': self.direction(s.logits, t.logits)}


@register_method('skd_authors')
class SKDAuthors(Distiller):
    about = About('SKD (Jeong et al., CVPR 2026), the authors\' objective', 'logits')
    # r x CE + b x (masked KD + masked direction); the authors' class defaults ce 0.1, kd 0.9
    # (resnet32x4 -> resnet8x4: 0.5, 0.5, per_pair/skd.toml)
    needs = Needs(weights=(0.1, 0.0, 0.9), teacher_reads=frozenset({LOGITS}),
                  pair_table=('skd', 'skd_authors'))
    options = OPTIONS

    def describe(self):
        o = self.config.options
        return (f'KD at T {o.skd_T:g} and direction term (lambda {o.skd_tikhonov:g}), each times '
                f'the fraction of less confident samples (classes)')

    def kd_loss(self, s, t, batch):
        o = self.config.options
        return masked_terms(s.logits, t.logits, o.skd_T, o.skd_tikhonov)
