"""MLLD (Jin, Wang, Lin, "Multi-Level Logit Distillation", CVPR 2023;
Jin-Ying/Multi-Level-Logit-Distillation): each image comes as a weak and a strong view
(``dataset.views.WeakStrongViews``); the student sees both (one pass each), so does the
teacher, and the logits are matched at three levels, each over a set of temperatures: the
instance (KL per sample), the batch (the B x B Gram matrix of the predictions) and the class
(the C x C Gram matrix). Registered as ``mlld``; ``mlkd`` is Ding et al.'s method.

The authors' code reduces each term to a scalar before applying its "less confident half"
mask, so the mask only scales the term by the fraction it selects (about one half); that is
what produced their numbers and the default here (``--mlld_mask fraction``). ``sample``
applies the masks per sample and per class, as the paper describes. As in their code, the
strong view's KL terms at temperatures 2 and 6 are taken on the weak view's logits.

Weights: ``-r`` both cross-entropies, ``-a`` every distillation term (the authors' kd weight);
``-b`` is unused."""
import torch
import torch.nn.functional as F

from dataset.batch import BatchSpec
from dataset.views import WeakStrongViews
from .base import About, LOGITS, Distiller, Needs, register_method
from .LSKD import Standardised, normalize
from .modifiers import identity
from .options import Option

EXTRA_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)  # besides the base temperature
STRONG_FROM_WEAK = 2  # the last two temperatures of the strong KD terms use the weak logits
MASKS = ('fraction', 'sample')


def kl_per_sample(logits_student, logits_teacher, temperature, transform=identity):
    logits_student, logits_teacher = transform(logits_student), transform(logits_teacher)
    log_p_s = F.log_softmax(logits_student / temperature, dim=1)
    log_p_t = F.log_softmax(logits_teacher / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction='none', log_target=True).sum(1)
    return kl * temperature ** 2


def _gram_gap(logits_student, logits_teacher, temperature, classes):
    """Squared entries of the difference of the teachers' and the students' Gram matrices of
    softmax predictions: over classes (C x C) or over samples (B x B)."""
    p_s = F.softmax(logits_student / temperature, dim=1)
    p_t = F.softmax(logits_teacher / temperature, dim=1)
    if classes:
        p_s, p_t = p_s.t(), p_t.t()
    return (p_t @ p_t.t() - p_s @ p_s.t()) ** 2


def cc_loss(logits_student, logits_teacher, temperature, reduce=True):
    """Class-level term: ``||P_t^T P_t - P_s^T P_s||_F^2 / C`` (``reduce=False``: the C x C
    entries, each divided by C)."""
    gap = _gram_gap(logits_student, logits_teacher, temperature, classes=True)
    classes = logits_teacher.shape[1]
    return gap.sum() / classes if reduce else gap / classes


def bc_loss(logits_student, logits_teacher, temperature, reduce=True):
    """Batch-level term: ``||P_t P_t^T - P_s P_s^T||_F^2 / B`` (``reduce=False``: the B x B
    entries, each divided by B)."""
    gap = _gram_gap(logits_student, logits_teacher, temperature, classes=False)
    batch = logits_teacher.shape[0]
    return gap.sum() / batch if reduce else gap / batch


def less_confident_half(values):
    """``values <= median`` (the median as numpy's 50th percentile, interpolated)."""
    return (values <= torch.quantile(values, 0.5)).float()


def mlld_loss(logits_student_weak, logits_student_strong, logits_teacher_weak,
              logits_teacher_strong, target, temperature=4.0, ce_weight=0.1, kd_weight=0.9,
              logit_stand=False, mask='fraction'):
    """The weighted terms ``{'cls', 'kd', 'cc', 'bc'}`` of one batch. ``temperature``: the
    base temperature (the others are 3, 5, 2 and 6); ``logit_stand``: LSKD on the instance
    terms; ``mask``: ``fraction`` (the authors' code) or ``sample`` (the paper's reading)."""
    return mlld_terms(logits_student_weak, logits_student_strong, logits_teacher_weak,
                      logits_teacher_strong, target, temperature, ce_weight, kd_weight,
                      normalize if logit_stand else identity, mask)


def mlld_terms(logits_student_weak, logits_student_strong, logits_teacher_weak,
               logits_teacher_strong, target, temperature, ce_weight, kd_weight, transform,
               mask):
    """``mlld_loss`` with ``transform`` (a logit KL's, from the run's modifiers) applied to
    both logits of every instance term."""
    s_weak, s_strong = logits_student_weak.float(), logits_student_strong.float()
    t_weak, t_strong = logits_teacher_weak.float(), logits_teacher_strong.float()
    temperatures = (temperature,) + EXTRA_TEMPERATURES
    p_t = F.softmax(t_weak.detach(), dim=1)
    sample_mask = less_confident_half(p_t.max(1).values)
    class_mask = less_confident_half(p_t.sum(0))

    def masked(values, weights):
        if mask == 'fraction':  # the term times the fraction the mask selects
            return values.mean() * weights.mean()
        return (values * weights).mean()  # weights along the last dimension

    def kd(a, b, T):
        return kl_per_sample(a, b, T, transform)

    reduce = mask == 'fraction'
    loss_kd = sum(masked(kd(s_weak, t_weak, T), sample_mask) for T in temperatures)
    loss_cc = sum(masked(cc_loss(s_weak, t_weak, T, reduce), class_mask) for T in temperatures)
    loss_bc = sum(masked(bc_loss(s_weak, t_weak, T, reduce), sample_mask) for T in temperatures)
    strong = len(temperatures) - STRONG_FROM_WEAK
    loss_kd = loss_kd + sum(kd(s_strong, t_strong, T).mean() for T in temperatures[:strong])
    loss_kd = loss_kd + sum(kd(s_weak, t_weak, T).mean() for T in temperatures[strong:])
    return {'cls': ce_weight * (F.cross_entropy(s_weak, target)
                                + F.cross_entropy(s_strong, target)),
            'kd': kd_weight * loss_kd, 'cc': kd_weight * loss_cc, 'bc': kd_weight * loss_bc}


@register_method('mlld')
class MLLD(Distiller):
    about = About('MLLD (Jin et al., CVPR 2023)', 'logits of a weak and a strong view')
    # the authors' configs: 480 epochs (960 for resnet32x4 -> ShuffleV1/V2), lr 0.025 (0.01
    # for MobileNetV2 and ShuffleNet students); the decay stays at 150, 180, 210
    a_term_is_kd = False  # its -a term is its own
    needs = Needs(weights=(0.1, 0.9, 0.0), batch=BatchSpec(views=WeakStrongViews()),
                    student_reads=frozenset({LOGITS}), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised('mlld'), pair_table=('mlld', 'recipe'))
    options = (Option('--mlld_mask', choices=MASKS, default='fraction',
                      help='MLLD: fraction: each masked term times the fraction its mask '
                           'selects (the authors\' code, their numbers); sample: the masks '
                           'select samples and classes (the paper)'),)

    def describe(self):
        return (f'a weak and a strong view of each image; instance, batch and class terms at '
                f'{self.kl.describe()} and at {", ".join(f"{t:g}" for t in EXTRA_TEMPERATURES)}; '
                f'masks: {self.config.options.mlld_mask}')

    def losses(self, s, t, batch):
        """``s``, ``t``: the networks' outputs on the weak and on the strong view."""
        (s_weak, s_strong), (t_weak, t_strong) = s, t
        return s_weak.logits, mlld_terms(
            s_weak.logits, s_strong.logits, t_weak.logits, t_strong.logits, batch.target,
            self.kl.temperature(), self.gamma, self.alpha, self.kl.transform.apply,
            self.config.options.mlld_mask)
