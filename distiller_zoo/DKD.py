"""Decoupled KD (Zhao et al., CVPR 2022): the KD loss split into a target-class term (TCKD, the
binary target / non-target masses) and a non-target term (NCKD, the distribution over the
other classes), weighted separately and warmed up linearly over the first epochs."""
import torch
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int, positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .LSKD import Standardised, normalize
from .options import Option


def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature,
             logit_stand=False):
    """``alpha * TCKD + beta * NCKD`` (the authors' name and signature; ``logit_stand``, LSKD's
    seventh argument, standardises both logits first), each ``T^2 KL`` averaged over the batch.
    ``temperature`` may be a learned tensor (CTKD)."""
    if logit_stand:
        logits_student, logits_teacher = normalize(logits_student.float()), normalize(
            logits_teacher.float())
    return decoupled_kl(logits_student, logits_teacher, target, alpha, beta, temperature)


def decoupled_kl(logits_student, logits_teacher, target, alpha, beta, temperature):
    """DKD's two terms on (already transformed) logits, averaged over the batch."""
    rows = decoupled_kl_rows(logits_student, logits_teacher, target, alpha, beta, temperature)
    return (rows.sum() / target.shape[0]).reshape(())


def decoupled_kl_rows(logits_student, logits_teacher, target, alpha, beta, temperature):
    """``T^2 (alpha TCKD + beta NCKD)`` of each row. Computed in fp32 even under autocast: the
    log of the target / non-target sums is -inf in fp16 once a mass underflows."""
    with torch.autocast(logits_student.device.type, enabled=False):
        logits_student, logits_teacher = logits_student.float(), logits_teacher.float()
        z_s, z_t = logits_student / temperature, logits_teacher / temperature
        is_target = F.one_hot(target, z_s.shape[1]).bool()
        p_s, p_t = z_s.softmax(1), z_t.softmax(1)

        def binary(p):  # (B, 2): target mass, non-target mass
            target_mass = p.masked_fill(~is_target, 0).sum(1, keepdim=True)
            return torch.cat([target_mass, p.masked_fill(is_target, 0).sum(1, keepdim=True)], 1)
        tckd = F.kl_div(torch.log(binary(p_s)), binary(p_t), reduction='none').sum(1)
        # The target logit is pushed 1000 down, which removes it from the softmax. With a
        # learned temperature the teacher's side carries gradients, and the KL of its zero
        # target probability would give them a NaN (0 log 0): there the KL is taken between
        # log-probabilities.
        masked = 1000.0 * is_target
        log_q_s = F.log_softmax(z_s - masked, 1)
        if z_t.requires_grad:
            nckd = F.kl_div(log_q_s, F.log_softmax(z_t - masked, 1), reduction='none',
                            log_target=True).sum(1)
        else:
            nckd = F.kl_div(log_q_s, F.softmax(z_t - masked, 1), reduction='none').sum(1)
        return (alpha * tckd + beta * nckd) * temperature ** 2


@register_method('dkd')
class DKD(Distiller):
    about = About('DKD (Zhao et al., CVPR 2022)', 'logits, labels')
    # 1 x CE + warm-up x (alpha TCKD + beta NCKD)
    # LSKD: T tau, alpha w, beta w times the pair's beta (LSKD's, else DKD's own)
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised('dkd', 'dkd_T', 'dkd_alpha', 'dkd_beta'))
    logit_kl_weights = ('alpha', 'beta')  # -b weighs DKD's own KLs

    options = (
        Option('--dkd_alpha', type=non_negative_float, default=1.0,
               help='DKD: weight of the target-class term (TCKD)'),
        Option('--dkd_beta', type=non_negative_float, default=None,
               help='DKD: weight of the non-target term (NCKD); default: the authors\' weight '
                    'for the pair (8; 6 for wrn_40_2 and vgg13 teachers, 2 for '
                    'resnet56/resnet110 -> resnet20/resnet32)',
               pair_default=('mdistiller', 'dkd', 'beta')),
        Option('--dkd_T', type=positive_float, default=4.0, help='DKD: temperature'),
        Option('--dkd_warmup', type=non_negative_int, default=20,
               help='DKD: epochs over which the term grows linearly to full weight (epoch e of '
                    'the run weighs min(e / warmup, 1); 0: none)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        o = config.options
        self.dkd_alpha, self.dkd_T, self.warmup = o.dkd_alpha, o.dkd_T, o.dkd_warmup
        self.dkd_beta = o.dkd_beta
        self.dkd_kl = self.logit_kl(self.dkd_T)

    def describe(self):
        return (f'alpha {self.dkd_alpha:g} (TCKD), beta {self.dkd_beta:g} (NCKD), '
                f'{self.dkd_kl.describe()}, warm-up {self.warmup} epochs')

    def kd_loss(self, s, t, batch):
        z_s, z_t = self.dkd_kl.logits(s.logits.float(), t.logits.float())
        return self.warmup_weight(self.warmup) * decoupled_kl(
            z_s, z_t, batch.target, self.dkd_alpha, self.dkd_beta, self.dkd_kl.temperature())
