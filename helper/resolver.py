"""The one resolver of a distillation run: a train_student.py command line (RepDistiller's
flags and every method's, modifier's and plug-in's) becomes its ``RunConfig``. The method's
defaults, the authors' recipe for the pair and the modifiers' settings fill in what the command
line leaves, and every check of the options is made here, each refusal one line
(``UserError``). ``resolve`` prints nothing: the notes it would give (a default applied, an
option ignored) come back to the caller beside the configuration. The folder a run writes and
the pair check without data belong here too, so that the runner and the scripts need only this
module, never the entry point."""
import argparse
import functools
import os

import torch

from distiller_zoo import METHODS, PRESETS, get_method
from distiller_zoo.modifiers import FLAGS
from distiller_zoo.options import KD_T, method_options
from distiller_zoo.sources import FrozenTeacher
from core.log import collecting_notes, note
from core.util import UserError, non_negative_float, run_label
from models import get_model
from .components import COMPONENTS, TEACHER_PLUGINS
from .distillation import build_distiller, for_teacher
from .options import (RECIPES, add_model_argument, apply_recipe, base_parser, finish_options,
                      given_dests)
from .run_config import RunConfig
from .run_file import expand_config
from .teachers import is_teacher_file, teacher_architecture

# What defines a distillation run besides its method, architectures and data set (and the
# method's own options and the components' defining ones): resuming with one changed is refused.
WEIGHTS = ('gamma', 'alpha', 'beta', 'delta', 'kd_T')


def defining_options(method):
    """The options a resumed run of ``method`` must keep."""
    return (WEIGHTS + tuple(o.dest for o in method.options)
            + tuple(dest for c in COMPONENTS for dest in c.defining))


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
    ``given`` (the words of a command line), --help lists a component's further options only
    once its switch is given, as it lists a method's."""
    parser = base_parser('Distil a teacher into a student.')
    parser.usage = ('%(prog)s [--config RUN/config.toml] --path_t TEACHER [...] --model_s NAME '
                    '--distill NAME [options]')
    parser.add_argument('--config', metavar='FILE', default=None,
                        help='a run folder\'s config.toml, its options overridden by flags')
    parser.add_argument('--path_t', type=str, nargs='+', default=None, metavar='TEACHER',
                        help='teacher checkpoint, torchvision:NAME or timm:NAME; several: '
                             'their logits\' mean (--teacher_weights W ...)')
    add_model_argument(parser, '--model_s', 'resnet8', 'student architecture')
    add_model_argument(parser, '--model_t', None, 'a teacher file\'s architecture if it '
                       'records none; dml: the new peer\'s')
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
    preset = PRESETS.get(distill)  # the options it implies are listed as if given
    words = None if given is None else list(given) + (
        [f'--{dest}' for dest in preset.modifiers] if preset else [])
    for component in COMPONENTS:
        component.add_options(parser, words, distill)
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


def asks_help(argv):
    return any(word in ('-h', '--help') for word in argv)


@functools.lru_cache(maxsize=None)
def parsing_parser(distill, methods, for_given):
    """The parser of ``distill``'s command lines, built once per method (and per state of the
    method registry): ``build_parser`` costs more than the parse, and a table resolves
    hundreds of cells. ``for_given``: a second one, for ``given_dests``, which suppresses
    its defaults."""
    return build_parser(distill)


def command_line_parser(argv, for_given=False):
    """The parser of ``argv``; --help builds its own, which lists what the words switch on."""
    distill = given_distill(argv)
    if asks_help(argv):
        return build_parser(distill, argv)
    return parsing_parser(distill, tuple(METHODS), for_given)


def given_options(argv):
    """The destinations of the options a command line gives (not left to their defaults)."""
    return given_dests(command_line_parser(argv, for_given=True), argv)


def apply_run_defaults(opt, method, given, teacher):
    """The authors' recipe of the method for the pair (``run_defaults``) and the components'
    values for it (``Component.run_defaults``), for the options the command line leaves to
    their defaults (not in ``given``); says what it set. ``teacher``: the teacher's
    architecture (None: unknown)."""
    given = set(given)
    if 'div' in given and len(method.needs.weights) <= 3:
        given.add('alpha')  # -d is -a's other spelling
    pair = f'{teacher or "?"} -> {opt.model_s}'
    sources = [(f'the authors\' recipe for {pair}', method.run_defaults(teacher, opt.model_s)
                if method.needs.pair_table is not None else {})]
    sources += [c.run_defaults(opt, method, teacher) for c in COMPONENTS]
    for what, defaults in sources:
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
    argv = expand_config(argv, build_parser)
    opt = command_line_parser(argv).parse_args(argv)
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
    for component in COMPONENTS:
        component.check_given(opt, method)
    apply_run_defaults(opt, method, given, model_t)
    # A method with a fourth weight (MLKD) takes it from -d; for the others -d is -a.
    weights = method.needs.weights
    opt.delta = opt.div if len(weights) > 3 else None
    if opt.div is not None and opt.delta is None:
        if opt.alpha is not None and opt.alpha != opt.div:
            raise UserError('-a and -d (--div) both set the KL weight; give one of them')
        opt.alpha = opt.div
    for name, default in zip(('gamma', 'alpha', 'beta', 'delta'), weights):
        if getattr(opt, name) is None:
            setattr(opt, name, default)
    for component in COMPONENTS:
        component.check_resolved(opt, method)
    if opt.path_t is None and (not method.needs.teacher_trains or opt.model_t is None):
        raise UserError('--path_t (the teacher checkpoint) is required' + (
            '' if not method.needs.teacher_trains else f'; --distill {opt.distill} can '
            f'instead start the second network from scratch with --model_t NAME'))
    if opt.path_t is not None and opt.model_t is not None and (
            not is_teacher_file(opt.path_t) or opt.more_teachers):
        raise UserError('--model_t names the architecture of one teacher file (or a dml peer '
                        'from scratch); a named teacher or several teachers know their own')
    config = RunConfig.of(finish_options(opt, opt.model_s), model_t, method)
    for component in config.components:
        component.check(config, method)
    method.check_options(config.method)
    return config


def weights_name(config):
    weights = config.method.weights
    return '_'.join(f'{key}:{value}' for key, value in zip('rabd', weights))


def run_name(config, model_t):
    """RepDistiller's folder name, plus what else tells runs apart: the fourth weight, the
    method's options given other than their defaults (a per-pair value left to the pair is
    none), the modifiers and the plug-ins. A DML peer trained from scratch is named as such."""
    teacher = model_t if config.teacher.path else f'{model_t}_scratch'
    method = get_method(config.distill)
    options = ''.join(f'_{name}:{value}'
                      for name, value in method.changed_options(config.record).items())
    options += ''.join(component.suffix(config.record) for component in COMPONENTS)
    return (f'S:{config.model_s}_T:{teacher}_{config.data.dataset}_{config.distill}_'
            f'{weights_name(config)}_{config.trial}' + options)


def plugin_suffixes(config):
    return ''.join(plugin.suffix(config.record) for plugin in TEACHER_PLUGINS)


def describe_components(config):
    """What the run's components change, for the start of a run ('' when nothing)."""
    return '; '.join(line for line in (c.describe(config) for c in config.components) if line)


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
        method_config = for_teacher(config.method, method, model_t, n_data)
        build_distiller(method, student, FrozenTeacher(teacher), method_config)


def resolve(argv):
    """``(RunConfig, notes)`` of a train_student.py command line: ``resolve_options`` with the
    teacher's architecture, which the teacher's name or folder name gives (else its
    checkpoint's entries, weights unread); ``notes``, the lines a run prints about them."""
    with collecting_notes() as notes:
        opt, given = read_command_line(argv)
        config = resolve_options(opt, given, teacher_architecture(opt.path_t, opt.model_t))
    return config, notes
