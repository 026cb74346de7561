"""Summarise distillation runs as a RepDistiller-style table (markdown).

    python scripts/summarize.py save/student_model [--metric last|best] [--plot curves.png]

Runs (folders with a ``summary.json``) are trials of one experiment when everything that
defines it agrees: data set, teacher, student, method and every option but the trial, the seed
and the circumstantial ones (paths, workers, speed options; runs that differ in those are
noted). Trials are averaged (mean +- std). Methods are rows, teacher -> student pairs are
columns, with the teacher's accuracy and the student trained alone on top (from the sibling
``models`` folder of teacher/baseline runs, or ``--baselines``). A method run with options that
differ within a column gets a row per setting, labelled with the options that differ.
"""
import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distiller_zoo import METHODS, PRESETS  # noqa: E402
from helper.components import COMPONENTS, upgraded  # noqa: E402
from helper.logger import read_metrics, read_summary  # noqa: E402

# RepDistiller's row order; other methods follow alphabetically.
ROW_ORDER = ['kd', 'hint', 'attention', 'similarity', 'correlation', 'vid', 'rkd', 'pkt',
             'abound', 'factor', 'fsp', 'nst', 'crd', 'crd+kd', 'srrl', 'simkd', 'srd', 'srd_dist',
             'dist', 'dkd', 'reviewkd', 'semckd', 'dml', 'icd', 'icd+kd', 'rrd', 'rrd+kd', 'mlkd']
LABELS = {'kd': 'KD', 'hint': 'FitNet', 'attention': 'AT', 'similarity': 'SP',
          'correlation': 'CC', 'vid': 'VID', 'rkd': 'RKD', 'pkt': 'PKT', 'abound': 'AB',
          'factor': 'FT', 'fsp': 'FSP', 'nst': 'NST', 'kdsvd': 'KD-SVD', 'crd': 'CRD',
          'crd+kd': 'CRD+KD', 'simkd': 'SimKD', 'srrl': 'SRRL', 'srd': 'SRD',
          'srd_dist': 'SRDwithDIST', 'dist': 'DIST', 'dkd': 'DKD', 'reviewkd': 'ReviewKD',
          'semckd': 'SemCKD', 'dml': 'DML', 'icd': 'DCD', 'icd+kd': 'DCD+KD', 'rrd': 'RRD',
          'rrd+kd': 'RRD+KD', 'mlkd': 'MLKD', 'ctkd': 'CTKD', 'mlld': 'MLLD', 'ofd': 'OFD'}


def ordered_methods(methods):
    """RepDistiller's row order (a modified method after its plain one), then the other
    methods alphabetically."""
    def key(method):
        base = method.split('+')[0]
        known = base in ROW_ORDER or method in ROW_ORDER
        return (not known, ROW_ORDER.index(method if method in ROW_ORDER else base)
                if known else 0, base, method)
    return sorted(methods, key=key)


# Options that do not define an experiment: trials of one experiment may differ in them.
NOT_DEFINING = {'trial', 'seed', 'resume', 'gpu_id', 'num_workers', 'print_freq', 'tb_freq',
                'dist_url', 'multiprocessing_distributed', 'data_folder', 'save_dir', 'save_freq',
                'n_data', 'div', 'wandb'}
# ... of which these may change the numbers a little; trials that differ in them are noted.
SETTINGS = {'path_t', 'path_s', 'loader', 'dali', 'amp', 'channels_last', 'compile',
            'sgd_impl', 'sync_bn'}
# Already the table's columns, or the method's name.
SHOWN = {'dataset', 'model', 'model_s', 'model_t', 'distill'}


def read_runs(folder):
    """Every finished run under ``folder``; a summary.json that does not parse (a run writing
    it, or a damaged file) is skipped with a note."""
    runs = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name, 'summary.json')
        if not os.path.isfile(path):
            continue
        summary = read_summary(path)
        if summary is None or not isinstance(summary.get('args'), dict):
            print(f'note: skipped {path}: not a complete summary.json', file=sys.stderr)
            continue
        summary['folder'] = os.path.join(folder, name)
        runs.append(summary)
    return runs


def experiment(r):
    """The options that define run ``r``'s experiment beyond its column and method (a linear
    probe's include its student's, prefixed ``student_``), and its settings."""
    args = r['args']
    defining = {k: v for k, v in args.items() if k not in NOT_DEFINING | SETTINGS | SHOWN}
    defining.update({f'student_{k}': v for k, v in r.get('source_args', {}).items()
                     if k not in NOT_DEFINING | SETTINGS | SHOWN})
    if 'probed' in r:
        defining['probed'] = r['probed']
    settings = {k: v for k, v in args.items() if k in SETTINGS}
    return defining, settings


def method_key(args):
    """Canonical method name; a method whose recipe has no KL term, run with one, is '+kd';
    then the modifiers it ran with ('dkd+LS+CTKD+DOT')."""
    method = METHODS.get(args['distill'])
    if method is None:
        return args['distill']
    name = args['distill'] if args['distill'] in PRESETS else method.names[0]
    with_kl = args.get("alpha", 0) > 0 and method.needs.weights[1] == 0
    name = f'{name}+kd' if name != 'kd' and with_kl else name
    record = SimpleNamespace(**upgraded(args))  # the components' labels, as papers add them
    return name + ''.join(f'+{c.label}' for c in COMPONENTS if c.labelled(record))


def own_options(args):
    """The options of the run's method whose values differ from their defaults."""
    method = METHODS.get(args['distill'])
    return {o.dest for o in (method.options if method else ())
            if o.dest in args and args[o.dest] != o.default}


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return ''
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def _value(value):
    return '-' if value is None else str(value)


def row_labels(runs):
    """``{id(run): row key}``: the method, plus the defining options that take more than one
    value among its runs of one column (``'SimKD (factor=3)'``). Options that differ only
    between columns (a student's learning rate) do not split rows."""
    by_cell = defaultdict(list)
    for r in runs:
        by_cell[(method_key(r['args']), column(r))].append(r)
    varying = defaultdict(set)
    for (method, _), cell in by_cell.items():
        options = [experiment(r)[0] for r in cell]
        for key in set().union(*options):
            if len({json.dumps(o.get(key), sort_keys=True) for o in options}) > 1:
                varying[method].add(key)
    labels = {}
    for r in runs:
        method = method_key(r['args'])
        options = experiment(r)[0]
        keys = sorted(varying[method] | own_options(r['args']))
        shown = ', '.join(f'{k}={_value(options.get(k))}' for k in keys)
        labels[id(r)] = (method, shown)
    return labels


def column(r):
    return r['args'].get('dataset'), r['teacher'], r['student']


def label(row):
    method, shown = row
    base, *modifiers = method.split('+')
    if f'{base}+kd' in LABELS and modifiers[:1] == ['kd']:
        base, modifiers = f'{base}+kd', modifiers[1:]
    return (LABELS.get(base, base) + ''.join(f'+{m}' for m in modifiers)
            + (f' ({shown})' if shown else ''))


def build_table(runs, baselines, metric):
    """Return (header, rows) with rows as lists of cell strings."""
    acc = f'{metric}_acc'
    datasets = {r['args']['dataset'] for r in runs}
    cells = defaultdict(list)
    teacher_acc = defaultdict(list)
    columns = set()
    rows_of = row_labels(runs)
    for r in runs:
        col = column(r)
        columns.add(col)
        cells[(rows_of[id(r)], col)].append(r[acc])
        teacher_acc[col].append(r.get('teacher_acc'))
    alone = defaultdict(list)
    for b in baselines:
        alone[(b['args']['dataset'], b['model'])].append(b[acc])

    columns = sorted(columns)
    header = ['method'] + [f'{t} -> {s}' + (f' ({d})' if len(datasets) > 1 else '')
                           for d, t, s in columns]
    # Every run of a column measured the same teacher file, so distinct values are distinct files.
    rows = [['teacher'] + [mean_std(sorted(set(teacher_acc[c]) - {None})) for c in columns],
            ['student'] + [mean_std(alone[(d, s)]) for d, t, s in columns]]
    keys = {row for row, _ in cells}
    for m in ordered_methods({method for method, _ in keys}):
        for row in sorted(k for k in keys if k[0] == m):
            rows.append([label(row)] + [mean_std(cells[(row, c)]) for c in columns])
    return header, rows


def markdown(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join(['---'] * len(header)) + ' |']
    lines += ['| ' + ' | '.join(cell or '-' for cell in row) + ' |' for row in rows]
    return '\n'.join(lines)


LINE_STYLES = ['-', '--', '-.', ':']


def method_styles(methods):
    """A distinct (colour, line style) for every method, the same in every panel."""
    import matplotlib
    colours = matplotlib.colormaps['tab10'].colors
    return {m: (colours[i % len(colours)], LINE_STYLES[i // len(colours) % len(LINE_STYLES)])
            for i, m in enumerate(methods)}


def plot_curves(runs, out):
    """One panel per data set and teacher -> student pair, one line per method: test top-1 by
    epoch (mean over trials). Returns ``{panel title: {method label: (colour, line style)}}``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = defaultdict(lambda: defaultdict(list))
    rows_of = row_labels(runs)
    for r in runs:
        path = os.path.join(r['folder'], 'metrics.jsonl')
        if not os.path.isfile(path):
            continue
        by_epoch = {record['epoch']: record['test_top1']  # a replayed epoch: keep the last
                    for record in read_metrics(path)}
        if by_epoch:
            curves[column(r)][label(rows_of[id(r)])].append(by_epoch)
    panels = sorted(curves)
    methods = {m for panel in curves.values() for m in panel}
    styles = method_styles(sorted(methods))
    cols = min(len(panels), 3) or 1
    rows = -(-len(panels) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.5 * rows), squeeze=False)
    drawn = {}
    for ax, (dataset, teacher, student) in zip(axes.flat, panels):
        title = f'{teacher} -> {student} ({dataset})'
        drawn[title] = {}
        last_epoch = 1
        for method in styles:
            trials = curves[(dataset, teacher, student)].get(method)
            if not trials:
                continue
            epochs = sorted(set.intersection(*(set(t) for t in trials)))
            colour, style = styles[method]
            ax.plot(epochs, [statistics.mean(t[e] for t in trials) for e in epochs],
                    label=method, color=colour, linestyle=style,
                    marker='o' if len(epochs) == 1 else None)  # one epoch: a point, not a line
            drawn[title][method] = (colour, style)
            last_epoch = max(last_epoch, max(epochs, default=1))
        ax.set_title(title)
        ax.set_xlabel('epoch')
        ax.set_ylabel('test top-1 (%)')
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))  # beside
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def run_group(r):
    """What the trials of one experiment share: the column, the method and every defining
    option."""
    return column(r), method_key(r['args']), json.dumps(experiment(r)[0], sort_keys=True,
                                                         default=str)


def disagreements(runs):
    """Notes on groups whose trials differ in a setting (speed options, teacher file)."""
    groups = defaultdict(list)
    for r in runs:
        groups[run_group(r)].append(experiment(r)[1])
    rows_of = {run_group(r): label(row_labels(runs)[id(r)]) for r in runs}
    notes = []
    for group, settings in groups.items():
        (dataset, teacher, student), _, _ = group
        for key in sorted(set().union(*settings)):
            values = sorted({_value(s.get(key)) for s in settings})
            if len(values) > 1:
                notes.append(f'note: the {rows_of[group]} trials of {teacher} -> {student} '
                             f'({dataset}) differ in --{key}: {", ".join(values)}')
    return notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', help='folder of student runs, e.g. save/student_model')
    parser.add_argument('--baselines', default=None,
                        help='folder of runs of train_teacher.py (default: <folder>/../models)')
    parser.add_argument('--metric', choices=['last', 'best', 'both'], default='both',
                        help='which epoch\'s accuracy; RepDistiller reports the last')
    parser.add_argument('--plot', default=None, metavar='PNG', help='write test-accuracy curves')
    args = parser.parse_args(argv)
    plot_folder = os.path.dirname(os.path.abspath(args.plot)) if args.plot else None
    if plot_folder and not os.path.isdir(plot_folder):
        print(f"error: cannot write the plot: the folder '{plot_folder}' does not exist",
              file=sys.stderr)
        return 2

    runs = read_runs(args.folder)
    if not runs:
        print(f"error: no finished runs (folders with summary.json) in '{args.folder}'",
              file=sys.stderr)
        return 2
    baselines = read_runs(args.baselines or os.path.join(os.path.dirname(
        os.path.abspath(args.folder)), 'models'))
    metrics = ['last', 'best'] if args.metric == 'both' else [args.metric]
    for metric in metrics:
        print(f'\nTop-1 accuracy (%), {metric} epoch, mean ± std over trials\n')
        print(markdown(*build_table(runs, baselines, metric)))
    trials = defaultdict(int)
    for r in runs:
        trials[run_group(r)] += 1
    print(f'\n{len(runs)} runs, {len(trials)} groups, {min(trials.values())}-'
          f'{max(trials.values())} trials per group')
    for note in disagreements(runs):
        print(note)
    if args.plot:
        plot_curves(runs, args.plot)
        print(f'curves written to {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
