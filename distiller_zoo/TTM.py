"""TTM and WTTM (Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching",
ICLR 2024; zkxufo/TTM): the student, at temperature 1, matches the teacher's distribution raised
to a power gamma (``--ttm_l``) and renormalised, i.e. the teacher at temperature 1/gamma, without
the T^2 factor (TTM); WTTM weighs each sample's KL by ``sum_c p_t^gamma``, larger for a flatter
teacher. Either is also the ``-a`` term of any other method (``--add ttm|wttm``), as the authors
combine CRD with WTTM."""
import torch.nn as nn

from core.component import Component, value
from core.util import UserError, positive_float
from .base import METHODS, About, LOGITS, Distiller, Needs, register_method
from .LSKD import Standardised
from .modifiers import modifier_value, transformed_teacher, transformed_teacher_kl
from .options import Option

# The -a term's options, common to every method (train_student.py shows them beside -a).
ADD = Option('--add', choices=['kd', 'ttm', 'wttm', 'tekap'], default='kd',
             help='-a term: KD, TTM/WTTM (--ttm_l), TeKAP')
TTM_L = Option('--ttm_l', type=positive_float, default=0.1,
               help='TTM/WTTM: the power gamma of the teacher\'s probabilities (its temperature '
                    'is 1/gamma; the authors\' README: 0.1 for TTM, 0.2 for WTTM beside CRD)')


class ATerm(Component):
    """``--add ttm|wttm``: the -a term of a method whose -a term is the KD term becomes TTM's or
    WTTM's divergence; ``--ttm_l`` is read there, or by ``--distill ttm|wttm``."""
    options = (ADD, TTM_L)

    def enabled(self, opt):
        return added(opt) != 'kd'

    def add_options(self, parser, given, distill):
        ADD.add_to(parser)
        TTM_L.add_to(parser, hidden=given is not None and '--add' not in given
                     and not (distill in METHODS and METHODS[distill].reads_ttm_l))

    def check_given(self, opt, method):
        pass  # --ttm_l is checked once the method's own reading is known

    def check_resolved(self, opt, method):
        if self.enabled(opt):
            add = added(opt)
            if not method.a_term_is_kd:
                raise UserError(f'--add {add}: the -a term of --distill {opt.distill} is '
                                f'its own, not the KD term; leave --add out')
            if not opt.alpha:
                raise UserError(f'--add {add} makes the -a term {add.upper()}, of '
                                f'weight 0 here: give -a W (the TTM authors: --add wttm -a 4 '
                                f'with CRD)')
        reads_ttm_l = added(opt) in ('ttm', 'wttm') or method.reads_ttm_l
        if opt.ttm_l != TTM_L.default and not reads_ttm_l:
            raise UserError('--ttm_l is the power of TTM and WTTM: give it with --distill '
                            'ttm|wttm|abkd_ttm or --add ttm|wttm, or leave it out')

    def method_fields(self, opt):
        return {'add': added(opt), 'ttm_l': value(opt, TTM_L)}


def added(opt):
    """The run's -a term: a preset's (``--distill tekap``), else ``--add``'s."""
    return modifier_value(opt, ADD.dest) or ADD.default


A_TERM = ATerm()


class TTM(nn.Module):
    """The authors' loss module: ``forward(y_s, y_t)``, TTM with power ``l``."""

    def __init__(self, l):
        super().__init__()
        self.l = l

    def forward(self, y_s, y_t):
        return transformed_teacher_kl(y_s, y_t, 1.0, self.l)


class WTTM(TTM):
    """The authors' loss module: ``forward(y_s, y_t)``, WTTM with power ``l``."""

    def forward(self, y_s, y_t):
        return transformed_teacher_kl(y_s, y_t, 1.0, self.l, weighted=True)


@register_method('ttm')
class TransformedTeacherMatching(Distiller):
    about = About('TTM (Zheng & Yang, ICLR 2024)', 'logits')
    # 1 x CE + b x TTM; the README's vgg13 -> vgg8 command: --ttm_l 0.1 -r 1 -b 45 -a 0
    needs = Needs(weights=(1.0, 0.0, 45.0), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised(weight='beta'))
    logit_kl_weights = ('alpha', 'beta')
    weighted = False
    reads_ttm_l = True  # its own term's power

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.ttm = self.logit_kl(1.0, transformed_teacher(config.ttm_l, self.weighted))

    def describe(self):
        return self.ttm.describe()

    def kd_loss(self, s, t, batch):
        return self.ttm(s.logits, t.logits)


@register_method('wttm')
class WeightedTransformedTeacherMatching(TransformedTeacherMatching):
    about = About('WTTM (Zheng & Yang, ICLR 2024)', 'logits')
    # 1 x CE + b x WTTM; the authors publish no WTTM-alone command: -b 4 is the weight their
    # README gives WTTM beside CRD (--add wttm --ttm_l 0.2 -a 4)
    needs = Needs(weights=(1.0, 0.0, 4.0), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised(weight='beta'))
    weighted = True
