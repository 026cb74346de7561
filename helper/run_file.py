"""A run as a file: ``config.toml`` in every run folder holds the options the run resolved to
(the values it used, its seed included), one ``dest = value`` line each, where they differ from
the parser's defaults. ``--config FILE`` reads one back as the command line it stands for, with
any flags after it overriding, so the same parser types and checks it and a folder's file run
again reproduces the run."""
import json
import math
import os
import tomllib

from core.files import write_text_atomic
from core.util import UserError
from .options import declared_options

FILE_NAME = 'config.toml'
# What a file does not carry: where to resume from is the new run's to say.
NOT_WRITTEN = {'resume', 'config'}


def by_dest(parser):
    """``{dest: (flag, DeclaredOption)}``: each destination's ``--dest`` flag, else its longest
    (an alias such as ``--optimizer`` for ``--opt`` takes fewer values)."""
    flags = {}
    for flag, option in declared_options(parser).items():
        if option.takes_value or option.default is False:  # not --help
            flags.setdefault(option.dest, []).append((flag, option))
    return {dest: max(found, key=lambda item: (item[0] == '--' + dest, len(item[0])))
            for dest, found in flags.items()}


def is_default(value, default):
    """Whether a resolved value is the option's default (decay epochs are parsed from their
    default's string)."""
    if isinstance(value, (list, tuple)) and isinstance(default, str):
        return ','.join(str(v) for v in value) == default
    return value == default or value is None or value is False


def toml_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ('inf' if value > 0 else '-inf')
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(toml_value(v) for v in value) + ']'
    return json.dumps(str(value))  # a TOML basic string


def run_file_text(options, parser, script):
    """The TOML text of a run's resolved ``options`` (a dict; ``more_teachers`` joins
    ``path_t``)."""
    options = dict(options)
    if options.get('more_teachers'):
        options['path_t'] = [options['path_t']] + list(options['more_teachers'])
    lines = [f'# The options this run resolved to; run it again with: python {script} '
             f'--config {FILE_NAME} [flags]']
    for dest, (flag, option) in by_dest(parser).items():
        value = options.get(dest)
        if dest not in NOT_WRITTEN and not is_default(value, option.default):
            lines.append(f'{dest} = {toml_value(value)}')
    return '\n'.join(lines) + '\n'


def write_run_file(folder, options, parser, script):
    write_text_atomic(os.path.join(folder, FILE_NAME), run_file_text(options, parser, script))


def command_line(path, parser):
    """The words a run file stands for; one line for a file that cannot be read."""
    try:
        with open(path, 'rb') as f:
            values = tomllib.load(f)
    except OSError as e:
        raise UserError(f'--config {path}: {e.strerror}') from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f'--config {path} is not a TOML file: {e}') from None
    table = by_dest(parser)
    words = []
    for dest, value in values.items():
        if dest not in table:
            raise UserError(f"--config {path}: '{dest}' is no option of this script "
                            f"(--help lists them)")
        flag, option = table[dest]
        if value is True or value is False:
            words += [flag] if value else []
        elif isinstance(value, list):
            items = [str(v) for v in value]
            words += [flag] + items if option.several else [flag, ','.join(items)]
        else:
            words += [flag, str(value)]
    return words


def expand_config(argv, make_parser):
    """``argv`` with ``--config FILE`` replaced by the file's words, which every other flag
    overrides (``make_parser()``: the script's parser, built only for a file)."""
    argv = list(argv)
    if '--config' not in argv:
        return argv
    at = argv.index('--config')
    if at + 1 >= len(argv):
        raise UserError('--config needs a file (a run folder\'s config.toml)')
    return command_line(argv[at + 1], make_parser()) + argv[:at] + argv[at + 2:]
