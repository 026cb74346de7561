"""CRLD (Zhang, Liu, Cai, Ma, "Cross-View Consistency Regularisation for Knowledge
Distillation", ACM MM 2024; arcaninez/CRLD): each image comes as a weak and a strong view
(MLLD's views, ``dataset.views.WeakStrongViews``), both networks see both, and the student
matches the teacher within each view and across the views, with KL at T per sample. The
within-view pairs count where the teacher is confident on the weak view (``tau_w``), the
cross-view pairs where it is confident on the strong view (``tau_s``), as the authors' code
applies the masks (the weak mask gates the strong/strong pair too); the means are over the
whole batch. The random views of every step mean the teacher-output cache cannot serve it."""
import torch.nn.functional as F

from core.util import non_negative_float, positive_float, unit_interval
from dataset.batch import BatchSpec
from dataset.views import WeakStrongViews
from .base import About, LOGITS, Distiller, Needs, register_method
from .MLLD import kl_per_sample
from .options import Option
from .pairs import pair_settings, settings_by_pair

# {(teacher, student): (ce, wv, cv, T, tau_w, tau_s)} of the authors' CIFAR-100 configs
CRLD_SETTINGS = settings_by_pair('crld', 'crld', ('ce', 'wv', 'cv', 'T', 'tau_w', 'tau_s'))
DEFAULTS = pair_settings('crld', 'crld', None, None)


def confident(logits_teacher, threshold):
    """1 where the teacher's top probability (at T 1) is at least ``threshold``, else 0."""
    return (F.softmax(logits_teacher.detach().float(), 1).max(1).values >= threshold).float()


def crld_kd_terms(logits_student_w, logits_student_s, logits_teacher_w, logits_teacher_s,
                  temperature, tau_w, tau_s):
    """The unweighted within-view and cross-view terms ``{'wv', 'cv'}``."""
    s_w, s_s = logits_student_w.float(), logits_student_s.float()
    t_w, t_s = logits_teacher_w.detach().float(), logits_teacher_s.detach().float()

    def kd(a, b):
        return kl_per_sample(a, b, temperature)
    return {'wv': ((kd(s_w, t_w) + kd(s_s, t_s)) * confident(t_w, tau_w)).mean(),
            'cv': ((kd(s_s, t_w) + kd(s_w, t_s)) * confident(t_s, tau_s)).mean()}


def crld_losses(logits_student_w, logits_student_s, logits_teacher_w, logits_teacher_s, target,
                ce_weight=1.0, wv_weight=2.0, cv_weight=0.5, temperature=4.0, tau_w=0.9,
                tau_s=0.2):
    """The authors' weighted terms ``{'loss_ce', 'loss_kd_wv', 'loss_kd_cv'}`` of a batch."""
    terms = crld_kd_terms(logits_student_w, logits_student_s, logits_teacher_w,
                          logits_teacher_s, temperature, tau_w, tau_s)
    return {'loss_ce': ce_weight * (F.cross_entropy(logits_student_w, target)
                                    + F.cross_entropy(logits_student_s, target)),
            'loss_kd_wv': wv_weight * terms['wv'], 'loss_kd_cv': cv_weight * terms['cv']}


@register_method('crld')
class CRLD(Distiller):
    about = About('CRLD (Zhang et al., ACM MM 2024)', 'logits of a weak and a strong view')
    # r x (CE on both views) + b x (wv x within-view + cv x cross-view); -a is unused
    a_term_is_kd = False
    needs = Needs(weights=(DEFAULTS['ce'], 0.0, 1.0), batch=BatchSpec(views=WeakStrongViews()),
                  student_reads=frozenset({LOGITS}), teacher_reads=frozenset({LOGITS}))
    options = (
        Option('--crld_wv', type=non_negative_float, default=DEFAULTS['wv'],
               help='CRLD: weight of the within-view terms'),
        Option('--crld_cv', type=non_negative_float, default=DEFAULTS['cv'],
               help='CRLD: weight of the cross-view terms'),
        Option('--crld_T', type=positive_float, default=DEFAULTS['T'],
               help='CRLD: temperature of its KL terms'),
        Option('--crld_tau_w', type=unit_interval, default=DEFAULTS['tau_w'],
               help='CRLD: the teacher\'s confidence on the weak view that the within-view '
                    'terms need'),
        Option('--crld_tau_s', type=unit_interval, default=DEFAULTS['tau_s'],
               help='CRLD: the teacher\'s confidence on the strong view that the cross-view '
                    'terms need'))

    def describe(self):
        o = self.config.options
        return (f'a weak and a strong view of each image; within-view x {o.crld_wv:g} '
                f'(teacher confidence >= {o.crld_tau_w:g} on the weak view), cross-view x '
                f'{o.crld_cv:g} (>= {o.crld_tau_s:g} on the strong view), T {o.crld_T:g}')

    def losses(self, s, t, batch):
        """``s``, ``t``: the networks' outputs on the weak and on the strong view."""
        (s_weak, s_strong), (t_weak, t_strong) = s, t
        o = self.config.options
        terms = crld_kd_terms(s_weak.logits, s_strong.logits, t_weak.logits, t_strong.logits,
                              o.crld_T, o.crld_tau_w, o.crld_tau_s)
        cls = (self.criterion_cls(s_weak.logits, batch.target)
               + self.criterion_cls(s_strong.logits, batch.target))
        return s_weak.logits, {'cls': self.gamma * cls,
                               'kd_wv': self.beta * o.crld_wv * terms['wv'],
                               'kd_cv': self.beta * o.crld_cv * terms['cv']}
