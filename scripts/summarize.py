"""Summarise distillation runs as a RepDistiller-style table (markdown).

    python scripts/summarize.py save/student_model [--metric last|best] [--plot curves.png]

Runs (folders with a ``summary.json``) are grouped by data set, teacher, student and method;
trials are averaged (mean +- std). Methods are rows, teacher -> student pairs are columns, with
the teacher's accuracy and the student trained alone on top (from the sibling ``models``
folder of teacher/baseline runs, or ``--baselines``).
"""
import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distiller_zoo import METHODS  # noqa: E402

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
          'rrd+kd': 'RRD+KD', 'mlkd': 'MLKD'}


def ordered_methods(methods):
    """RepDistiller's row order, then the other methods alphabetically."""
    return [m for m in ROW_ORDER if m in methods] + sorted(set(methods) - set(ROW_ORDER))


def read_runs(folder):
    runs = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name, 'summary.json')
        if os.path.isfile(path):
            with open(path) as f:
                summary = json.load(f)
            summary['folder'] = os.path.join(folder, name)
            runs.append(summary)
    return runs


def method_key(args):
    """Canonical method name; a method whose recipe has no KL term, run with one, is '+kd'."""
    method = METHODS.get(args['distill'])
    if method is None:
        return args['distill']
    name = method.names[0]
    with_kl = args.get('alpha', 0) > 0 and method.default_weights[1] == 0
    return f'{name}+kd' if name != 'kd' and with_kl else name


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return ''
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def build_table(runs, baselines, metric):
    """Return (header, rows) with rows as lists of cell strings."""
    acc = f'{metric}_acc'
    datasets = {r['args']['dataset'] for r in runs}
    cells = defaultdict(list)
    teacher_acc = defaultdict(list)
    columns = set()
    for r in runs:
        col = (r['args']['dataset'], r['teacher'], r['student'])
        columns.add(col)
        cells[(method_key(r['args']), col)].append(r[acc])
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
    for m in ordered_methods({m for m, _ in cells}):
        rows.append([LABELS.get(m, m)] + [mean_std(cells[(m, c)]) for c in columns])
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
    for r in runs:
        path = os.path.join(r['folder'], 'metrics.jsonl')
        if not os.path.isfile(path):
            continue
        by_epoch = {}
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                by_epoch[record['epoch']] = record['test_top1']  # a replayed epoch: keep the last
        curves[run_group(r)[:3]][method_key(r['args'])].append(by_epoch)
    panels = sorted(curves)
    methods = {m for panel in curves.values() for m in panel}
    styles = method_styles(ordered_methods(methods))
    cols = min(len(panels), 3) or 1
    rows = -(-len(panels) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.5 * rows), squeeze=False)
    drawn = {}
    for ax, (dataset, teacher, student) in zip(axes.flat, panels):
        title = f'{teacher} -> {student} ({dataset})'
        drawn[title] = {}
        for method in styles:
            trials = curves[(dataset, teacher, student)].get(method)
            if not trials:
                continue
            epochs = sorted(set.intersection(*(set(t) for t in trials)))
            colour, style = styles[method]
            label = LABELS.get(method, method)
            ax.plot(epochs, [statistics.mean(t[e] for t in trials) for e in epochs],
                    label=label, color=colour, linestyle=style)
            drawn[title][label] = (colour, style)
        ax.set_title(title)
        ax.set_xlabel('epoch')
        ax.set_ylabel('test top-1 (%)')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))  # beside
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def run_group(r):
    """(data set, teacher, student, method): the runs of one group are trials of each other."""
    return r['args'].get('dataset'), r['teacher'], r['student'], method_key(r['args'])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', help='folder of student runs, e.g. save/student_model')
    parser.add_argument('--baselines', default=None,
                        help='folder of runs of train_teacher.py (default: <folder>/../models)')
    parser.add_argument('--metric', choices=['last', 'best', 'both'], default='both',
                        help='which epoch\'s accuracy; RepDistiller reports the last')
    parser.add_argument('--plot', default=None, metavar='PNG', help='write test-accuracy curves')
    args = parser.parse_args(argv)

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
    if args.plot:
        plot_curves(runs, args.plot)
        print(f'curves written to {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
