"""The components a distillation run may turn on beside its method (``core.component``), in
the order they apply and name the run's folder: registering one is a line here."""
from core.component import Component, folder_part, value
from core.log import note
from core.util import UserError, non_negative_float
from distiller_zoo.base import LOGITS
from distiller_zoo.LSKD import LOGIT_STAND
from distiller_zoo.options import Option
from distiller_zoo.temperature import LEARNED_T
from distiller_zoo.TTM import A_TERM
from models import is_timm_name
from .ckd import CodedTeacherInputs
from .dot import DOT
from .options import NAMED_RECIPE
from .teacher_cache import TeacherOutputCache
from .teachers import TeacherPlugin


class SeveralTeachers(Component):
    """``--path_t A B ...``: the teachers' logits averaged, by ``--teacher_weights``."""
    options = (Option('--teacher_weights', type=non_negative_float, nargs='+', default=None,
                      metavar='W', help='with several teachers: each one\'s share of the logits '
                                        '(default: equal)'),)

    def add_options(self, parser, given, distill):
        self.options[0].add_to(parser, hidden=given is not None
                               and '--teacher_weights' not in given)

    def check_resolved(self, opt, method):
        count = 1 + len(opt.more_teachers)
        if count > 1 and method.needs.teacher_trains:
            raise UserError(f'--distill {opt.distill} trains its second network beside the '
                            f'student: give one --path_t')
        if opt.teacher_weights is not None:
            if count == 1:
                raise UserError('--teacher_weights weighs several teachers (--path_t A B ...)')
            if len(opt.teacher_weights) != count or not sum(opt.teacher_weights):
                raise UserError(f'--teacher_weights needs one weight per teacher ({count}), '
                                f'not all 0; got {len(opt.teacher_weights)}')
        if count > 1 and method.needs.teacher_reads - {LOGITS}:
            note(f'--distill {opt.distill} reads more than the teachers\' logits: it reads that '
                 f'from the first teacher ({opt.path_t}); the logits are the teachers\' '
                 f'weighted mean')

    def suffix(self, opt):
        weights = value(opt, self.options[0])
        return '_teacher_weights:' + ','.join(f'{w:g}' for w in weights) if weights else ''


class StudentInputs(Component):
    """What changes the networks' inputs or the student's start: ``--img_size`` (a common
    option) and ``--pretrained`` (timm's weights for a timm student)."""
    options = (Option('--pretrained', action='store_true',
                      help='timm:NAME student: start from timm\'s weights'),)

    @property
    def defining(self):
        return ()  # both are part of the folder's name

    def add_options(self, parser, given, distill):
        self.options[0].add_to(parser)

    def check_given(self, opt, method):
        if opt.pretrained and not is_timm_name(opt.model_s):
            raise UserError(f'--pretrained takes timm\'s weights of a timm:NAME student, not '
                            f'of {opt.model_s}')

    def suffix(self, opt):
        return folder_part({dest: getattr(opt, dest) for dest in ('img_size', 'pretrained')
                            if getattr(opt, dest, None)})


COMPONENTS = (LOGIT_STAND, LEARNED_T, A_TERM, DOT, SeveralTeachers(), StudentInputs(),
              NAMED_RECIPE, CodedTeacherInputs(), TeacherOutputCache())
TEACHER_PLUGINS = tuple(c for c in COMPONENTS if isinstance(c, TeacherPlugin))


def upgraded(record):
    """A run's stored options (a dict) as this version names them (``Component.upgrade``)."""
    for component in COMPONENTS:
        record = component.upgrade(record)
    return record
