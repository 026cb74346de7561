"""RLD (Sun et al., "Knowledge Distillation with Refined Logits", arXiv 2408.07703; zju-SWJ/RLD):
DKD's two terms refined so that a wrong teacher never corrects the student. Sample confidence
(SCD): the student's [p(label), rest] against the teacher's [p(its top class), rest], at
alpha_T. Masked correlation (MCD): every class the teacher ranks at or above the label is
masked on both sides, and the rest matched by a KL at T. Warmed up over 20 epochs."""
import torch
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int, positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .LSKD import Standardised, normalize
from .options import Option


def _binary(p, index):
    """(B, 2): the probability of ``index`` and of the rest."""
    picked = p.gather(1, index[:, None])
    return torch.cat([picked, p.sum(1, keepdim=True) - picked], 1)


def refined_kl(logits_student, logits_teacher, target, alpha, beta, temperature,
               alpha_temperature):
    """RLD's ``alpha SCD + beta MCD`` on (already transformed) logits, in fp32; each term a
    batch-mean KL times its temperature squared."""
    with torch.autocast(logits_student.device.type, enabled=False):
        z_s, z_t = logits_student.float(), logits_teacher.float()
        p_s = _binary(F.softmax(z_s / alpha_temperature, 1), target)
        p_t = _binary(F.softmax(z_t / alpha_temperature, 1), z_t.argmax(1))
        scd = F.kl_div(torch.log(p_s), p_t, reduction='batchmean') * alpha_temperature ** 2
        masked = z_t >= z_t.gather(1, target[:, None])  # the label and all above it
        log_q_s = F.log_softmax((z_s / temperature).masked_fill(masked, -1e9), 1)
        masked_t = (z_t / temperature).masked_fill(masked, -1e9)
        # With a learned temperature the teacher's side carries gradients, and the masked
        # classes' zero probabilities would give them a NaN (0 log 0): there the KL is taken
        # between log-probabilities, as DKD's.
        if masked_t.requires_grad:
            mcd = F.kl_div(log_q_s, F.log_softmax(masked_t, 1), reduction='batchmean',
                           log_target=True)
        else:
            mcd = F.kl_div(log_q_s, F.softmax(masked_t, 1), reduction='batchmean')
        mcd = mcd * temperature ** 2
        return (alpha * scd + beta * mcd).reshape(())


def rld_loss(logits_student_in, logits_teacher_in, target, alpha, beta, temperature,
             logit_stand, alpha_temperature):
    """The authors' name and eight arguments (``logit_stand``: LSKD's z-score first)."""
    if logit_stand:
        logits_student_in, logits_teacher_in = (normalize(logits_student_in),
                                                normalize(logits_teacher_in))
    return refined_kl(logits_student_in, logits_teacher_in, target, alpha, beta, temperature,
                      alpha_temperature)


@register_method('rld')
class RLD(Distiller):
    about = About('RLD (Sun et al., refined logits)', 'logits, labels')
    # 1 x CE + warm-up x (alpha SCD + beta MCD); the README's command: --same-t RLD.ALPHA 1.
    # RLD.BETA 8. RLD.T 4. (alpha_T = T); with --logit_stand: alpha w, beta 8w, T = alpha_T = tau
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised('rld', 'rld_T', 'rld_alpha', 'rld_beta'))
    logit_kl_weights = ('alpha', 'beta')
    options = (
        Option('--rld_alpha', type=non_negative_float, default=1.0,
               help='RLD: weight of the sample-confidence term (SCD)'),
        Option('--rld_beta', type=non_negative_float, default=8.0,
               help='RLD: weight of the masked-correlation term (MCD)'),
        Option('--rld_T', type=positive_float, default=4.0, help='RLD: temperature of MCD'),
        Option('--rld_alpha_T', type=positive_float, default=None,
               help='RLD: temperature of SCD (default: --rld_T, as the authors\' README runs '
                    'it with --same-t; their config file alone gives 1)'),
        Option('--rld_warmup', type=non_negative_int, default=20,
               help='RLD: epochs over which the term grows linearly to full weight'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        o = config.options
        self.rld_alpha, self.rld_beta, self.warmup = o.rld_alpha, o.rld_beta, o.rld_warmup
        self.rld_kl = self.logit_kl(o.rld_T)
        self.alpha_T = o.rld_alpha_T  # None: the KL's temperature, learned or not

    def describe(self):
        scd_T = 'T' if self.alpha_T is None else f'{self.alpha_T:g}'
        return (f'alpha {self.rld_alpha:g} (SCD at {scd_T}), beta {self.rld_beta:g} (MCD), '
                f'{self.rld_kl.describe()}, warm-up {self.warmup} epochs')

    def kd_loss(self, s, t, batch):
        z_s, z_t = self.rld_kl.logits(s.logits, t.logits)
        T = self.rld_kl.temperature()
        return self.warmup_weight(self.warmup) * refined_kl(
            z_s, z_t, batch.target, self.rld_alpha, self.rld_beta, T,
            T if self.alpha_T is None else self.alpha_T)
