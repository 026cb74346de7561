"""The measured table beside the published one (``scripts/reproduce.py --report``).

For each cell: the published figure, the measured mean and sample standard deviation over the
finished trials (n) of the statistic the source reports (the last or the best epoch's top-1, or
what a table's ``metrics`` name: top-5, or an error rate; the teacher's accuracy as the
distillation runs measured it) or, where the source gives the median of its runs, their median
and std, their difference, and the cell's status: done, or what keeps it from being done
(failed, with its log; stopped; stale: finished with other options; missing: not run yet). A
cell is marked (``!``) when the published figure lies outside the measured mean (median) +- 2
std, or fewer than 2 trials finished (except the teacher's row: one set of weights, measured
once). The table's note and its rows' notes follow the table.
"""
import csv
import io
import os
import statistics
from dataclasses import dataclass
from typing import Optional

from helper.logger import read_metrics, read_summary
from .jobs import DONE, FAILED, STALE, STOPPED, statuses
from .tables import TEACHER

MARK = '!'


@dataclass
class Measured:
    cell: object
    values: list
    run_statuses: tuple = ()  # (status, log) of each of its runs

    @property
    def n(self):
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(self.values) if self.n >= 2 else None

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.values) if self.values else None

    @property
    def center(self) -> Optional[float]:
        """What the source's figure is of its runs: their median, or their mean (one run's
        figure is its own mean)."""
        return self.median if self.cell.aggregate == 'median' else self.mean

    @property
    def difference(self):
        if self.center is None or self.cell.published is None:
            return None
        return self.center - self.cell.published

    @property
    def status(self):
        """done, failed, stopped, stale or missing (the first that any of its runs is)."""
        found = {status for status, _ in self.run_statuses}
        for status in (FAILED, STOPPED, STALE):
            if status in found:
                return status
        return DONE if found <= {DONE} and self.values else 'missing'

    @property
    def logs(self):
        return [log for status, log in self.run_statuses if status == FAILED and log]

    @property
    def marked(self):
        published = self.cell.published
        if published is None or not self.values:
            return published is not None and self.cell.row != TEACHER
        if self.n < 2:
            return self.cell.row != TEACHER
        return abs(published - self.center) > 2 * self.std


def measure(table, runs, state):
    """``Measured`` per cell of the table, from the runs' summaries (a stale run's figure is
    left out) and their statuses (``state``: the runner's record of their exits and logs)."""
    status = statuses(runs, state)
    values = {id(cell): [] for cell in table.cells}
    run_statuses = {id(cell): [] for cell in table.cells}
    for run in runs:
        for cell in run.cells:
            run_statuses[id(cell)].append((status[run.id], state.get(run).get('log')))
            if cell.row == TEACHER and not cell.probe or status[run.id] == STALE:
                # the teacher's accuracy as every distillation run of the pair measured it once
                continue
            summary = read_summary(run.done_file)
            figure = None if summary is None else run_figure(cell, summary, run.run_dir)
            if figure is not None:
                values[id(cell)].append(figure)
    for cell in table.cells:
        if cell.row == TEACHER and not cell.probe:
            values[id(cell)] = _teacher_accuracy(cell, runs)
            if values[id(cell)]:  # measured by the students' runs, whatever the teacher run's
                run_statuses[id(cell)] = [(DONE, None)]
    return [Measured(cell, values[id(cell)], tuple(run_statuses[id(cell)]))
            for cell in table.cells if any(cell in run.cells for run in runs)]


def run_figure(cell, summary, run_dir):
    """The cell's figure of a finished run: its summary's top-1, or the top-5 of its
    per-epoch records (the last epoch's, or that of the epoch whose top-1 was best: the first
    such, as its best weights are); an error rate is 100 minus the accuracy."""
    accuracy = cell.metric.removesuffix('_error')
    if accuracy == 'top1':
        value = summary[f'{cell.statistic}_acc']
    else:
        records = [r for r in read_metrics(os.path.join(run_dir, 'metrics.jsonl'))
                   if f'test_{accuracy}' in r]
        if not records:
            return None
        chosen = records[-1] if cell.statistic == 'last' else max(
            records, key=lambda r: r['test_top1'])
        value = chosen[f'test_{accuracy}']
    return error_or_accuracy(cell, value)


def error_or_accuracy(cell, accuracy):
    return 100.0 - accuracy if cell.metric.endswith('_error') else accuracy


def _teacher_accuracy(cell, runs):
    """The teacher's test accuracy (one value: the same weights every time), read from a
    finished distillation run of the pair, else from the teacher's own training run."""
    for run in runs:
        if run.kind == 'distill' and run.cells and run.cells[0].teacher == cell.teacher:
            summary = read_summary(run.done_file)
            accuracy = cell.metric.removesuffix('_error')
            key = 'teacher_acc' if accuracy == 'top1' else f'teacher_{accuracy}'
            if summary is not None and summary.get(key) is not None:
                return [error_or_accuracy(cell, summary[key])]
    for run in runs:
        if run.kind == TEACHER and cell in run.cells:
            summary = read_summary(os.path.join(run.run_dir, 'summary.json'))
            figure = None if summary is None else run_figure(cell, summary, run.run_dir)
            if figure is not None:
                return [figure]
    return []


def _fmt(value, digits=2):
    return '' if value is None else f'{value:.{digits}f}'


def column_name(teacher, student, probe, metric='top1'):
    return (f'{teacher} -> {student}' + (f' ({probe})' if probe else '')
            + (f' {metric}' if metric != 'top1' else ''))


def markdown(table, measured):
    """A RepDistiller-style table: rows the table's rows, two columns per pair (published,
    measured mean +- std (n) and the difference)."""
    columns = table.columns
    by_row = {}
    for m in measured:
        by_row.setdefault((m.cell.row, m.cell.label), {})[
            (m.cell.teacher, m.cell.student, m.cell.probe, m.cell.metric)] = m
    header = ['method'] + [f'{column_name(*c)} {what}' for c in columns
                           for what in ('published', 'measured')]
    lines = [f'## {table.title}', '',
             f'Source: {table.source}. Published figures: {table.statistic} epoch, '
             f'{table.aggregate} (a row whose source used another says so in brackets, as does '
             f'a cell); measured: the same epoch\'s figure (top-1 unless the column names '
             f'another) as the published figure, mean (the median where the source gives its '
             f'runs\' median) +- std (n trials), difference, and what keeps a cell from being '
             f'done; {MARK} where the published figure lies outside that +- 2 std or n < 2.', '',
             '| ' + ' | '.join(header) + ' |',
             '| --- |' + ' ---: |' * (len(header) - 1)]
    for (_, label), cells in by_row.items():
        # the row's statistic: its cells' own where they share one, else each cell says its own
        row_statistic = {m.cell.statistic for m in cells.values()}
        row_statistic = row_statistic.pop() if len(row_statistic) == 1 else table.statistic
        first = next(iter(cells.values())).cell
        other = [what for what, mine, its in (
            (f'{row_statistic} epoch', row_statistic, table.statistic),
            (first.aggregate, first.aggregate, table.aggregate)) if mine != its]
        row = [label + (f' [{", ".join(other)}]' if other else '')]
        for column in columns:
            m = cells.get(column)
            if m is None or m.cell.published is None and not m.values:
                row += ['', '']
                continue
            measured_text = ''
            if m.values:
                spread = f' +- {_fmt(m.std)}' if m.std is not None else ''
                diff = f', {m.difference:+.2f}' if m.difference is not None else ''
                measured_text = f'{_fmt(m.center)}{spread} ({m.n}){diff}'
            elif m.cell.published is not None:
                measured_text = '- (0)'
            if m.status != DONE:
                measured_text += f' {m.status}' + (f': {", ".join(m.logs)}' if m.logs else '')
            published = _fmt(m.cell.published) + (
                f' [{m.cell.statistic} epoch]' if m.cell.statistic != row_statistic else '')
            row += [published, measured_text + (f' {MARK}' if m.marked else '')]
        lines.append('| ' + ' | '.join(row) + ' |')
    notes = [table.note] + [f'{label}: {note}' for label, note in table.row_notes.items()]
    lines += [''] + [f'Note: {note}' for note in notes if note] if any(notes) else []
    return '\n'.join(lines) + '\n'


CSV_FIELDS = ['table', 'row', 'label', 'teacher', 'student', 'probe', 'metric', 'statistic',
              'aggregate', 'published', 'source', 'mean', 'std', 'n', 'difference', 'marked',
              'status', 'logs', 'median']


def csv_text(measured):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for m in measured:
        c = m.cell
        writer.writerow([c.table, c.row, c.label, c.teacher, c.student, c.probe or '',
                         c.metric, c.statistic, c.aggregate,
                         '' if c.published is None else c.published,
                         c.source, _fmt(m.mean, 4), _fmt(m.std, 4), m.n,
                         _fmt(m.difference, 4), int(m.marked), m.status, ' '.join(m.logs),
                         _fmt(m.median, 4)])
    return out.getvalue()
