"""The methods reference of docs/methods.md, written from the registry: every ``--distill`` name
with its paper, what it reads, what it trains, its default weights (``Needs.weights``) and its
options with their defaults (its ``Option``s). The rest of that file is prose, kept as it is;
``tests/distiller_zoo/test_methods_reference.py`` fails when the written part is stale.

    python scripts/methods_reference.py          # rewrite it
    python scripts/methods_reference.py --check  # exit 1 if it is stale
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from distiller_zoo import METHODS, PRESETS  # noqa: E402

PATH = os.path.join(REPO, 'docs', 'methods.md')
BEGIN = '<!-- methods reference: written by scripts/methods_reference.py from the registry -->'
END = '<!-- end of the methods reference -->'


def weights(method):
    """``-r -a -b`` as the registry has them (``, -d w`` for a fourth; ``W`` for a weight
    without a default, which the run must give)."""
    values = ['W' if w is None else f'{w:g}' for w in method.needs.weights]
    return ' '.join(values[:3]) + (f', `-d` {values[3]}' if len(values) > 3 else '')


def default(option):
    if option.pair_default is not None:
        return 'per pair'
    if option.kwargs.get('action') == 'store_true':
        return 'off'
    value = option.default
    return '-' if value is None else f'{value:g}' if isinstance(value, float) else str(value)


def names(method, name):
    aliases = [n for n in method.names if n != name]
    return f'`{name}`' + (f' ({", ".join(f"`{a}`" for a in aliases)})' if aliases else '')


def reference():
    """The written part: a row per ``--distill`` name, then each method's options."""
    lines = ['| `--distill` (alias) | method | reads | trains beside the student | init stage | '
             'default `-r -a -b` |', '| --- | --- | --- | --- | --- | --- |']
    options = []
    for name, method in METHODS.items():
        preset = PRESETS.get(name)
        if preset is None and name != method.names[0] or not method.__module__.startswith(
                'distiller_zoo.'):
            continue  # an alias (on its method's row), or a method registered elsewhere
        about = preset.about if preset else method.about
        if preset:
            switches = ' '.join(f'`--{k}`' for k in preset.modifiers)
            row = [f'`{name}`', f'{about.paper} (= `{preset.method}` {switches})']
        else:
            row = [names(method, name), about.paper]
        row += [about.reads, about.adds, about.init, weights(method)]
        lines.append('| ' + ' | '.join(row) + ' |')
        if preset is None and method.options:
            options.append(f'- `{name}`: ' + ', '.join(
                f'`{o.flag}` {default(o)}' for o in method.options))
    return '\n'.join(lines + ['', 'Each method\'s options and their defaults ("per pair": the '
                              'authors\' value for the pair, from `distiller_zoo/per_pair/`):',
                              ''] + options)


def written(text):
    """``text`` with its written part replaced by the registry's."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + '\n' + reference() + '\n' + text[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write the methods reference of '
                                                 'docs/methods.md from the registry.')
    parser.add_argument('--check', action='store_true', help='exit 1 if it is stale')
    args = parser.parse_args(argv)
    with open(PATH) as f:
        text = f.read()
    if args.check:
        stale = written(text) != text
        if stale:
            print(f'{PATH} is stale: run python scripts/methods_reference.py', file=sys.stderr)
        return int(stale)
    new = written(text)  # made before the file is opened for writing, which empties it
    with open(PATH, 'w') as f:
        f.write(new)
    return 0


if __name__ == '__main__':
    sys.exit(main())
