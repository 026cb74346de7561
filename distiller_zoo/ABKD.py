"""ABKD (Wang et al., "ABKD: Pursuing a Proper Allocation of the Probability Mass in Knowledge
Distillation via alpha-beta-Divergence", ICML 2025; ghwang-s/abkd): the KL replaced by the
alpha-beta-divergence of teacher p and student q, which trades the "hardness concentration"
(alpha) against the "confidence concentration" (beta). The authors' repository applies it in four
places: the KD term (ABKL), LSKD's standardised logits (LS), DKD's non-target term and TTM's
transformed teacher. Their ``--distill ab|ls|dkd|ttm`` are taken here (Heo's AB, DKD, TTM):
``abkd``, ``abkd_lsd``, ``abkd_dkd``, ``abkd_ttm``."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import UserError, finite_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .DKD import DKD
from .LSKD import normalize
from .options import Option


def ab_divergence_rows(p, q, alpha, beta):
    """The general alpha-beta-divergence of each row (alpha, beta and alpha + beta nonzero):
    ``-(1 / (alpha beta)) sum_c [p^alpha q^beta - alpha / (alpha + beta) p^(alpha + beta) -
    beta / (alpha + beta) q^(alpha + beta)]``."""
    total = alpha + beta
    return (-(p ** alpha * q ** beta).sum(1) / (alpha * beta)
            + (p ** total).sum(1) / (beta * total) + (q ** total).sum(1) / (alpha * total))


def abkl_rows(p, q, alpha, beta, infinite):
    """ABKL's divergence of each row with the authors' special cases, chosen by exact tests.
    Theirs are alpha (or beta) times the textbook limits, not the limits of the general form
    (equal only at alpha = 1 or beta = 1). Entries where a logit is infinite count 0."""
    def power(x, e):
        return torch.pow(x, e).masked_fill(infinite, 0)
    if alpha == 0 and beta == 0:
        return 0.5 * ((q.log() - p.log()).masked_fill(infinite, 0) ** 2).sum(1)
    if alpha == 0:
        q_b, p_b = power(q, beta), power(p, beta)
        ratio = q_b / p_b
        ratio = ratio.masked_fill(ratio.isnan(), 0)
        return (q_b * ratio.log() - q_b + p_b).sum(1) / beta
    if beta == 0:
        p_a, q_a = power(p, alpha), power(q, alpha)
        return (p_a * (p_a / q_a).log() - p_a + q_a).sum(1) / alpha
    if alpha + beta == 0:
        p_a, q_a = power(p, alpha), power(q, alpha)
        return ((q_a / p_a).log() + p_a / q_a - 1).sum(1) / alpha
    total = alpha + beta
    first = (p ** alpha * q ** beta).masked_fill(infinite, 0)
    second = (alpha / total * p ** total).masked_fill(infinite, 0)
    third = (beta / total * q ** total).masked_fill(infinite, 0)
    return -(first - second - third).sum(1) / (alpha * beta)


def entropy(p):
    return -(p * torch.log(p + 1e-10)).sum(1).mean()


class ABKL(nn.Module):
    """The authors' module (numbers instead of their ``opt``): ``forward(y_s, y_t)``, the batch
    mean of the alpha-beta-divergence of softmax(y / T), without T^2. ``with_entropies``: also
    the student's mean entropies at T and at 1, as the authors' forward returns them."""

    def __init__(self, T=4.0, alpha=0.5, beta=0.5, with_entropies=False):
        super().__init__()
        self.T, self.alpha, self.beta, self.with_entropies = T, alpha, beta, with_entropies

    def forward(self, y_s, y_t):
        with torch.autocast(y_s.device.type, enabled=False):
            y_s, y_t = y_s.float(), y_t.float()
            q, p = F.softmax(y_s / self.T, 1), F.softmax(y_t / self.T, 1)
            loss = abkl_rows(p, q, self.alpha, self.beta, y_s.isinf() | y_t.isinf()).mean()
            if not self.with_entropies:
                return loss
            return loss, entropy(q), entropy(F.softmax(y_s, 1))


def ab_or_kl(p, q, log_q, alpha, beta):
    """Each row's KL(p || q) at (alpha, beta) = (1, 0), else the general divergence: what the
    authors' LS, DKD and TTM compute (no special branches)."""
    if alpha == 1 and beta == 0:
        return F.kl_div(log_q, p, reduction='none').sum(1)
    return ab_divergence_rows(p, q, alpha, beta)


class LS(nn.Module):
    """The authors' ABLSD (numbers instead of their ``opt``): ``forward(y_s, y_t, target=None,
    epoch=None)``, both logits z-scored per sample (LSKD's ``normalize``), then T^2 x the batch
    mean of the divergence at T."""

    def __init__(self, T=4.0, alpha=0.5, beta=0.5):
        super().__init__()
        self.T, self.alpha, self.beta = T, alpha, beta

    def forward(self, y_s, y_t, target=None, epoch=None):
        with torch.autocast(y_s.device.type, enabled=False):
            z_s, z_t = normalize(y_s.float()) / self.T, normalize(y_t.float()) / self.T
            rows = ab_or_kl(F.softmax(z_t, 1), F.softmax(z_s, 1), F.log_softmax(z_s, 1),
                            self.alpha, self.beta)
            return rows.mean() * self.T ** 2


ABLSD = LS


def ab_dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature, ab_alpha,
                ab_beta):
    """The authors' ``dkd_loss`` (renamed: ``dkd_loss`` is DKD's here): DKD's target term, and
    its non-target term (the label's column removed) as the divergence at (ab_alpha, ab_beta),
    both T^2 and batch means; ``alpha * TCKD + beta * NCKD``."""
    with torch.autocast(logits_student.device.type, enabled=False):
        z_s, z_t = logits_student.float() / temperature, logits_teacher.float() / temperature
        is_target = F.one_hot(target, z_s.shape[1]).bool()
        p_s, p_t = z_s.softmax(1), z_t.softmax(1)

        def binary(p):
            mass = p.masked_fill(~is_target, 0).sum(1, keepdim=True)
            return torch.cat([mass, p.masked_fill(is_target, 0).sum(1, keepdim=True)], 1)
        tckd = F.kl_div(binary(p_s).log(), binary(p_t), reduction='batchmean')
        n = z_s.shape[0]
        others_s, others_t = z_s[~is_target].reshape(n, -1), z_t[~is_target].reshape(n, -1)
        nckd = ab_or_kl(others_t.softmax(1), others_s.softmax(1), others_s.log_softmax(1),
                        ab_alpha, ab_beta).mean()
        return (alpha * tckd + beta * nckd) * temperature ** 2


class ABTTM(nn.Module):
    """The authors' ``TTM`` of the ABKD repository (renamed; their constructor reads an
    ``opt.ab_gamma`` their parser never defines): ``forward(y_s, y_t)``, the divergence between
    the teacher's probabilities raised to ``l`` and renormalised and the student's at T 1,
    batch mean, no T^2; (1, 0) is TTM."""

    def __init__(self, l=0.1, alpha=0.5, beta=0.5):
        super().__init__()
        self.l, self.alpha, self.beta = l, alpha, beta

    def forward(self, y_s, y_t):
        with torch.autocast(y_s.device.type, enabled=False):
            y_s = y_s.float()
            p_t = F.softmax(y_t.float(), 1) ** self.l
            p_t = p_t / p_t.sum(1, keepdim=True)
            return ab_or_kl(p_t, F.softmax(y_s, 1), F.log_softmax(y_s, 1), self.alpha,
                            self.beta).mean()


AB_OPTIONS = (
    Option('--abkd_alpha', '--ab_alpha', type=finite_float, default=0.5, dest='abkd_alpha',
           help='ABKD: alpha of the alpha-beta-divergence (the authors\' --ab_alpha)'),
    Option('--abkd_beta', '--ab_beta', type=finite_float, default=0.5, dest='abkd_beta',
           help='ABKD: beta of the alpha-beta-divergence (the authors\' --ab_beta)'))


class ABDivergence(Distiller):
    """The ABKD methods: the divergence at (``--abkd_alpha``, ``--abkd_beta``) as the ``-b``
    term; the general form needs alpha, beta and alpha + beta nonzero unless the method has the
    authors' special cases (``special_cases``)."""
    options = AB_OPTIONS
    special_cases = False

    @classmethod
    def check_options(cls, config):
        a, b = config.options.abkd_alpha, config.options.abkd_beta
        if not cls.special_cases and (a, b) != (1, 0) and 0 in (a, b, a + b):
            raise UserError(f'--distill {config.name}: alpha {a:g}, beta {b:g}: alpha, beta and '
                            f'alpha + beta must be nonzero, or (1, 0) for the KL')

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.ab_alpha, self.ab_beta = config.options.abkd_alpha, config.options.abkd_beta
        self.divergence = self.make_divergence(config)

    def make_divergence(self, config):
        """The loss module on the two networks' logits (None: ``kd_loss`` is the method's)."""
        return None

    def describe(self):
        return f'alpha {self.ab_alpha:g}, beta {self.ab_beta:g}' + self.more()

    def more(self):
        return f', T {self.config.kd_T:g}'

    def kd_loss(self, s, t, batch):
        return self.divergence(s.logits, t.logits)


@register_method('abkd')
class ABKD(ABDivergence):
    about = About('ABKD (Wang et al., ICML 2025)', 'logits')
    # the README's resnet56 -> resnet20 command: --ab_alpha 0.8 --ab_beta 0.3 -r 1 -a 0 -b 32
    needs = Needs(weights=(1.0, 0.0, 32.0), teacher_reads=frozenset({LOGITS}))
    special_cases = True

    def make_divergence(self, config):
        return ABKL(config.kd_T, self.ab_alpha, self.ab_beta)


@register_method('abkd_lsd')
class ABKDStandardised(ABDivergence):
    about = About('ABKD on standardised logits (ABLSD; Wang et al., ICML 2025)', 'logits')
    # train_ls.sh: -r 0.1 -a 0 -b 9 --kd_T 2
    needs = Needs(weights=(0.1, 0.0, 9.0), teacher_reads=frozenset({LOGITS}),
                  pair_table=('abkd', 'abkd_lsd'))

    def make_divergence(self, config):
        return LS(config.kd_T, self.ab_alpha, self.ab_beta)


@register_method('abkd_dkd')
class ABKDDecoupled(ABDivergence):
    about = About('ABKD on DKD\'s non-target term (Wang et al., ICML 2025)', 'logits, labels')
    # train_dkd.sh: -r 1 -a 0 -b 1, DKD's alpha 1, beta (its pair table), warm-up 20, T --kd_T
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}))
    options = AB_OPTIONS + tuple(o for o in DKD.options if o.dest != 'dkd_T')

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        o = config.options
        self.dkd_alpha, self.dkd_beta, self.warmup = o.dkd_alpha, o.dkd_beta, o.dkd_warmup

    def more(self):
        return (f', TCKD {self.dkd_alpha:g}, NCKD {self.dkd_beta:g}, T {self.config.kd_T:g}, '
                f'warm-up {self.warmup} epochs')

    def kd_loss(self, s, t, batch):
        return self.warmup_weight(self.warmup) * ab_dkd_loss(
            s.logits, t.logits, batch.target, self.dkd_alpha, self.dkd_beta, self.config.kd_T,
            self.ab_alpha, self.ab_beta)


@register_method('abkd_ttm')
class ABKDTransformed(ABDivergence):
    about = About('ABKD on TTM\'s transformed teacher (Wang et al., ICML 2025)', 'logits')
    # train_ttm.sh takes -b as an argument (its example: wrn_40_2 -> wrn_40_1, --ttm_l 0.1
    # -r 1 -a 0 -b 76): no default
    needs = Needs(weights=(1.0, 0.0, None), teacher_reads=frozenset({LOGITS}))
    reads_ttm_l = True

    @classmethod
    def check_options(cls, config):
        super().check_options(config)
        if config.weights[2] is None:
            raise UserError('--distill abkd_ttm: give its weight -b W (the authors\' example, '
                            'wrn_40_2 -> wrn_40_1: --ttm_l 0.1 -r 1 -a 0 -b 76)')

    def make_divergence(self, config):
        return ABTTM(config.ttm_l, self.ab_alpha, self.ab_beta)

    def more(self):
        return f', teacher power {self.config.ttm_l:g}'
