"""The one resolver of a distillation run: a train_student.py command line (RepDistiller's
flags and every method's, modifier's and plug-in's) becomes its ``RunConfig``. The method's
defaults, the authors' recipe for the pair and the modifiers' settings fill in what the command
line leaves, and every check of the options is made here, each refusal one line
(``UserError``). ``resolve`` prints nothing: the notes it would give (a default applied, an
option ignored) come back to the caller beside the configuration. The folder a run writes and
the pair check without data belong here too, so that the runner and the scripts need only this
module, never the entry point."""
import argparse
import dataclasses
import os

import torch

from distiller_zoo import LSKD, METHODS, PRESETS, get_method
from distiller_zoo.base import LOGITS
from distiller_zoo.modifiers import LEARNED_T, LOGIT_STAND, MODIFIERS, learns_temperature
from distiller_zoo.options import Option, add_switched_group, method_options
from distiller_zoo.sources import FrozenTeacher
from distiller_zoo.TTM import A_TERM_OPTIONS, ADD, TTM_L
from core.log import collecting_notes, note
from core.util import UserError, non_negative_float, positive_float, run_label
from models import get_model, is_timm_name
from .distillation import build_distiller
from .dot import OPTIONS as DOT_OPTIONS
from .options import (RECIPES, add_model_argument, add_recipe_options, apply_recipe,
                      base_parser, finish_options, given_dests)
from .plugins import add_plugin_options
from .run_config import RunConfig
from .teachers import is_teacher_file, teacher_architecture

# What defines a distillation run besides its method, architectures and data set: resuming
# with any of these changed, the method's own options, a modifier's or a plug-in's, is refused.
WEIGHTS = (('gamma', 'alpha', 'beta', 'delta', 'kd_T', 'teacher_weights')
           + tuple(o.dest for o in A_TERM_OPTIONS))
KD_T = Option('--kd_T', type=positive_float, default=4, help='temperature of the KD loss')
MODIFIER_DESTS = tuple(o.dest for m in MODIFIERS for o in m.options) + tuple(
    o.dest for o in DOT_OPTIONS)


def method_list():
    """``kd, hint (fitnet), ...``: every --distill name, aliases in brackets."""
    methods = [m.names[0] + (f' ({", ".join(m.names[1:])})' if len(m.names) > 1 else '')
               for m in dict.fromkeys(METHODS.values())]
    presets = [f'{p.name} (= {p.method} ' + ' '.join(f'--{k}' if v is True else f'--{k} {v}'
                                                     for k, v in p.modifiers.items()) + ')'
               for p in PRESETS.values()]
    return ', '.join(methods + presets)


def build_parser(distill=None, given=None):
    """The common options, the options of ``distill`` (shown by --help), and every other
    method's options (accepted, as RepDistiller's parser accepted them, but not shown). With
    ``given`` (the words of a command line), --help lists a modifier's or a plug-in's further
    options only once its switch is given (``--ctkd --help``), as it lists a method's."""
    parser = base_parser('Distil a teacher into a student.')
    parser.usage = '%(prog)s --path_t TEACHER [...] --model_s NAME --distill NAME [options]'
    parser.add_argument('--path_t', type=str, nargs='+', default=None, metavar='TEACHER',
                        help='teacher checkpoint, torchvision:NAME or timm:NAME; several: '
                             'their logits\' mean (--teacher_weights W ...)')
    parser.add_argument('--teacher_weights', type=non_negative_float, nargs='+', default=None,
                        metavar='W', help=argparse.SUPPRESS if given is not None
                        and '--teacher_weights' not in given else
                        'with several teachers: each one\'s share of the logits (default: equal)')
    add_model_argument(parser, '--model_s', 'resnet8', 'student architecture')
    add_model_argument(parser, '--model_t', None, 'a teacher file\'s architecture if it '
                       'records none; dml: the new peer\'s')
    parser.add_argument('--pretrained', action='store_true',
                        help='timm:NAME student: start from timm\'s weights')
    parser.add_argument('--distill', type=str, default='kd', choices=sorted(METHODS),
                        metavar='NAME', help='distillation method (listed below)')
    parser.add_argument('--trial', type=run_label, default='1',
                        help='experiment id (part of the folder)')
    parser.add_argument('-r', '--gamma', '-c', '--cls', dest='gamma', type=non_negative_float,
                        default=None, help='weight of the cross-entropy loss (default: the '
                                           'method\'s)')
    parser.add_argument('-a', '--alpha', dest='alpha', type=non_negative_float, default=None,
                        help='weight of the KD (KL) loss (default: the method\'s; for mlkd, '
                             'the correlation loss)')
    parser.add_argument('-d', '--div', dest='div', type=non_negative_float, default=None,
                        help='SimKD\'s spelling of -a, except for mlkd, where it weighs the '
                             'alignment loss (default: the method\'s)')
    parser.add_argument('-b', '--beta', type=non_negative_float, default=None,
                        help='weight of the method\'s own loss (default: the method\'s)')
    KD_T.add_to(parser)
    ADD.add_to(parser)
    # --ttm_l is listed where it is read: with --add, or for --distill ttm|wttm
    TTM_L.add_to(parser, hidden=given is not None and '--add' not in given
                 and distill not in ('ttm', 'wttm'))
    add_plugin_options(parser, given)
    add_recipe_options(parser, given)
    preset = PRESETS.get(distill)
    implied = {f'--{dest}' for dest in preset.modifiers} if preset else set()
    for title, options in [(m.title, m.options) for m in MODIFIERS] + [
            ('optimizer (DOT: distillation-oriented momenta)', DOT_OPTIONS)]:
        on = given is None or any(f in given or f in implied for f in options[0].flags)
        add_switched_group(parser, title, options, on)
    chosen = METHODS[distill].options if distill in METHODS else ()
    if chosen:
        group = parser.add_argument_group(f'options of --distill {distill}')
        for option in chosen:
            option.add_to(group)
    shown = {option.dest for option in chosen}
    for option in method_options(dict.fromkeys(METHODS.values())):
        if option.dest not in shown:
            option.add_to(parser, hidden=True)
    if distill is None:
        parser.epilog = (f'methods (--distill NAME; add --help to see a method\'s own options): '
                         f'{method_list()}')
    return parser


def given_distill(argv):
    """The --distill value of a command line, None when it names none."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--distill')
    return pre.parse_known_args(argv)[0].distill


def given_options(argv):
    """The destinations of the options a command line gives (not left to their defaults)."""
    return given_dests(build_parser(given_distill(argv), argv), argv)


FLAGS = {'gamma': '-r', 'alpha': '-a', 'beta': '-b'}


def apply_run_defaults(opt, method, given, teacher):
    """The authors' recipe of the method for the pair (``run_defaults``) and, with
    ``--logit_stand``, LSKD's per-pair temperature and weight, for the options the command
    line leaves to their defaults (not in ``given``); says what it set. ``teacher``: the
    teacher's architecture (None: unknown)."""
    needed = method.recipe.pair_recipe is not None or opt.logit_stand
    if not needed:
        return
    given = set(given)
    if 'div' in given and len(method.recipe.weights) <= 3:
        given.add('alpha')  # -d is -a's other spelling
    pair = f'{teacher or "?"} -> {opt.model_s}'
    preset = PRESETS.get(opt.distill)
    column = preset.lskd_column if preset else method.recipe.lskd.column
    lskd = (f'the authors\' settings for {pair}' if LSKD.has_setting(column, teacher, opt.model_s)
            else f'the authors\' fallback values (they ran no {pair})')
    lskd_values = LSKD.run_defaults(method, column, learns_temperature(opt), teacher,
                                    opt.model_s, opt) if opt.logit_stand else {}
    for what, defaults in (
            (f'the authors\' recipe for {pair}', method.run_defaults(teacher, opt.model_s)),
            (f'--logit_stand: {lskd}', lskd_values)):
        applied = {dest: value for dest, value in defaults.items() if dest not in given}
        for dest, value in applied.items():
            setattr(opt, dest, value)
        if applied:
            note(f'--distill {opt.distill}, {what}: ' + ' '.join(
                FLAGS.get(dest, '--' + dest) + ('' if value is True else f' {value:g}')
                for dest, value in applied.items())
                + ' (give them to change them)')


def read_command_line(argv):
    """What a command line says: its options, every default filled in, and the names of those
    it gives itself. Reads no file."""
    argv = list(argv)
    opt = build_parser(given_distill(argv), argv).parse_args(argv)
    teachers = opt.path_t or []  # one teacher keeps RepDistiller's single --path_t value
    opt.path_t, opt.more_teachers = (teachers[0] if teachers else None), teachers[1:]
    return opt, given_options(argv)


def resolve_options(opt, given, model_t):
    """The one ``RunConfig`` of parsed options ``opt`` (every default filled in), the names of
    those the command line gave (``given``) and the teacher's architecture ``model_t`` (None:
    unknown): the method's defaults, the authors' recipe for the pair and the modifiers'
    settings fill in what the command line leaves, and every check of the options is made
    here, each refusal one line (``UserError``). Reads no file."""
    opt = argparse.Namespace(**vars(opt))
    apply_recipe(opt, given)
    given = set(given) | set(RECIPES[opt.recipe])  # the recipe's values stand as given
    method = get_method(opt.distill)
    own = {option.dest for option in method.options}
    for option in method_options(dict.fromkeys(METHODS.values())):
        value = getattr(opt, option.dest)
        if option.dest not in own and value != option.default:
            note(f'--distill {opt.distill} does not use {option.flags[-1]} '
                 f'(given {value})')
    check_modifier_options(opt, method)
    apply_run_defaults(opt, method, given, model_t)
    # A method with a fourth weight (MLKD) takes it from -d; for the others -d is -a.
    weights = method.recipe.weights
    opt.delta = opt.div if len(weights) > 3 else None
    if opt.div is not None and opt.delta is None:
        if opt.alpha is not None and opt.alpha != opt.div:
            raise UserError('-a and -d (--div) both set the KL weight; give one of them')
        opt.alpha = opt.div
    for name, default in zip(('gamma', 'alpha', 'beta', 'delta'), weights):
        if getattr(opt, name) is None:
            setattr(opt, name, default)
    check_modifiers_act(opt, method)
    check_a_term(opt, method)
    if opt.path_t is None and (not method.recipe.teacher_trains or opt.model_t is None):
        raise UserError('--path_t (the teacher checkpoint) is required' + (
            '' if not method.recipe.teacher_trains else f'; --distill {opt.distill} can '
            f'instead start the second network from scratch with --model_t NAME'))
    if opt.path_t is not None and opt.model_t is not None and (
            not is_teacher_file(opt.path_t) or opt.more_teachers):
        raise UserError('--model_t names the architecture of one teacher file (or a dml peer '
                        'from scratch); a named teacher or several teachers know their own')
    if opt.pretrained and not is_timm_name(opt.model_s):
        raise UserError(f'--pretrained takes timm\'s weights of a timm:NAME student, not of '
                        f'{opt.model_s}')
    check_teachers(opt, method)
    config = RunConfig.of(finish_options(opt, opt.model_s), model_t, method)
    for plugin in config.plugins:
        plugin.check(config, method)
    method.check_options(config.method)
    return config


def check_teachers(opt, method):
    """Refuse, in one line, several teachers where a method trains its second network, and
    weights that do not fit them; say where a method reads more than logits of several."""
    count = 1 + len(opt.more_teachers)
    if count > 1 and method.recipe.teacher_trains:
        raise UserError(f'--distill {opt.distill} trains its second network beside the student: '
                        f'give one --path_t')
    if opt.teacher_weights is not None:
        if count == 1:
            raise UserError('--teacher_weights weighs several teachers (--path_t A B ...)')
        if len(opt.teacher_weights) != count or not sum(opt.teacher_weights):
            raise UserError(f'--teacher_weights needs one weight per teacher ({count}), not all '
                            f'0; got {len(opt.teacher_weights)}')
    if count > 1 and method.recipe.teacher_reads - {LOGITS}:
        note(f'--distill {opt.distill} reads more than the teachers\' logits: it reads that '
             f'from the first teacher ({opt.path_t}); the logits are the teachers\' weighted '
             f'mean')


def check_modifier_options(opt, method):
    """Refuse, in one line, options given a value that would change nothing (before any
    default is applied, a value other than the option's default was given): a modifier's
    options without the modifier, DOT's without --optimizer dot, and a fixed temperature where
    it is learned. A default value written out (the authors' CTKD script gives --kd_T 4) is
    taken."""
    def changed(option):
        return getattr(opt, option.dest) != option.default
    learned = learns_temperature(opt)
    for modifier, on in ((LOGIT_STAND, opt.logit_stand), (LEARNED_T, learned)):
        for option in modifier.options:
            if changed(option) and not on and option.flag != modifier.flag:
                raise UserError(f'{option.flag} is an option of {modifier.flag}, which this '
                                f'command does not give: add {modifier.flag} or leave it out')
    for option in DOT_OPTIONS[1:]:
        if changed(option) and opt.optimizer != 'dot':
            raise UserError(f'{option.flag} is an option of --optimizer dot: add '
                            f'--optimizer dot or leave it out')
    if learned:
        name = '--ctkd' if opt.ctkd else f'--distill {opt.distill}'
        for option in (KD_T, LSKD.OPTIONS[1]):
            if changed(option):
                raise UserError(f'with {name} the temperature is learned, so {option.flag} '
                                f'is not read: leave it out (--ctkd_t_start and --ctkd_t_end set '
                                f'its range)')
    if opt.optimizer == 'dot' and opt.nesterov:
        raise UserError('--nesterov is an option of SGD\'s momentum, which --optimizer dot '
                        'replaces with its two momenta: leave one of them out')
    if opt.optimizer == 'dot' and opt.dot_delta >= min(opt.momentum, 1 - opt.momentum):
        raise UserError(f'--dot_delta {opt.dot_delta} must be below --momentum and 1 - '
                        f'--momentum (DOT\'s momenta are --momentum -/+ delta)')


def check_a_term(opt, method):
    """Refuse, in one line, ``--add`` where the -a term is not the KD term or has weight 0,
    and ``--ttm_l`` where no TTM reads it."""
    if opt.add != 'kd':
        if not method.a_term_is_kd:
            raise UserError(f'--add {opt.add}: the -a term of --distill {opt.distill} is its '
                            f'own, not the KD term; leave --add out')
        if not opt.alpha:
            raise UserError(f'--add {opt.add} makes the -a term {opt.add.upper()}, of weight 0 '
                            f'here: give -a W (the TTM authors: --add wttm -a 4 with CRD)')
    reads_ttm_l = opt.add != 'kd' or method.names[0] in ('ttm', 'wttm')
    if opt.ttm_l != TTM_L.default and not reads_ttm_l:
        raise UserError('--ttm_l is the power of TTM and WTTM: give it with --distill ttm|wttm '
                        'or --add ttm|wttm, or leave it out')


def check_modifiers_act(opt, method):
    """Refuse, in one line, a modifier of logit KLs that the run does not weigh in: none in the
    method, or each of weight 0."""
    modifiers = [flag for flag, on in (('--logit_stand', opt.logit_stand),
                                       ('--ctkd', learns_temperature(opt))) if on]
    if not modifiers:
        return
    what = ' and '.join(modifiers)
    if not method.logit_kl_weights:
        raise UserError(f'--distill {opt.distill} has no logit KL for {what} to modify')
    if not any(getattr(opt, weight) > 0 for weight in method.logit_kl_weights):
        terms = ' and '.join(FLAGS[w] for w in method.logit_kl_weights)
        raise UserError(f'--distill {opt.distill}: {what} would change nothing: the logit KL '
                        f'of the method is its {terms} term, of weight 0 here (give '
                        f'{FLAGS[method.logit_kl_weights[0]]} W to add it)')


def modifier_options(options):
    """The modifiers' options (and the -a term's and the optimizer's) that differ from their
    defaults, of a run's ``options`` record."""
    modifiers = ([o for m in MODIFIERS for o in m.options] + list(A_TERM_OPTIONS)
                 + list(DOT_OPTIONS))
    return {o.dest: options[o.dest] for o in modifiers if options[o.dest] != o.default}


def weights_name(config):
    weights = config.method.weights
    return '_'.join(f'{key}:{value}' for key, value in zip('rabd', weights))


def run_name(config, model_t):
    """RepDistiller's folder name, plus what else tells runs apart: the fourth weight, the
    method's options that differ from their defaults, the modifiers and the plug-ins. A DML
    peer trained from scratch is named as such."""
    teacher = model_t if config.teacher.path else f'{model_t}_scratch'
    method = get_method(config.distill)
    options = ''.join(f'_{name}:{value}'
                      for name, value in method.changed_options(config.method.options).items())
    options += ''.join(f'_{name}' if value is True else f'_{name}:{value}'
                       for name, value in modifier_options(config.options).items())
    given_weights = config.options.get('teacher_weights')
    if given_weights:  # several teachers' shares, as given
        options += '_teacher_weights:' + ','.join(f'{w:g}' for w in given_weights)
    options += ''.join(f'_{name}' if value is True else f'_{name}:{value}'
                       for name, value in input_options(config.options).items())
    return (f'S:{config.model_s}_T:{teacher}_{config.data.dataset}_{config.distill}_'
            f'{weights_name(config)}_{config.trial}' + options + plugin_suffixes(config))


def input_options(options):
    """What changes the networks' inputs, start or recipe (``--img_size``, ``--pretrained``,
    ``--recipe``), where given, of a run's ``options`` record."""
    values = {dest: options[dest] for dest in ('img_size', 'pretrained') if options.get(dest)}
    if options.get('recipe', 'repdistiller') != 'repdistiller':
        values['recipe'] = options['recipe']
    return values


def plugin_suffixes(config):
    return ''.join(plugin.suffix(config.features) for plugin in config.plugins)


def older_run_names(config, model_t):
    """The folder name versions before 2026-11-29 gave the run: RepDistiller's, without the
    fourth weight, the method's own options or the modifiers."""
    gamma, alpha, beta = config.method.weights[:3]
    return [f'S:{config.model_s}_T:{model_t}_{config.data.dataset}_{config.distill}_r:{gamma}'
            f'_a:{alpha}_b:{beta}_{config.trial}' + plugin_suffixes(config)
            ] if config.teacher.path else []


def run_dir(config):
    """The folder a run with this ``RunConfig`` writes (scripts/reproduce.py looks there)."""
    return os.path.join(config.output.save_dir, 'student_model',
                        run_name(config, config.teacher.arch))


def check_pair(config, model_t, n_data=50000):
    """Refuse (one line) a pair the method cannot serve, as a run would at start, without data
    or weights: the networks and the method are built on the meta device."""
    method, source = get_method(config.distill), config.source
    with torch.device('meta'):
        teacher = get_model(model_t, source.num_classes, config.data.dataset, source.input_size)
        student = get_model(config.model_s, source.num_classes, config.data.dataset,
                            source.input_size)
        method_config = dataclasses.replace(config.method, model_t=model_t, n_data=n_data)
        build_distiller(method, student, FrozenTeacher(teacher), method_config)


def resolve(argv):
    """``(RunConfig, notes)`` of a train_student.py command line: ``resolve_options`` with the
    teacher's architecture, which the teacher's name or folder name gives (else its
    checkpoint's entries, weights unread); ``notes``, the lines a run prints about them."""
    with collecting_notes() as notes:
        opt, given = read_command_line(argv)
        config = resolve_options(opt, given, teacher_architecture(opt.path_t, opt.model_t))
    return config, notes
