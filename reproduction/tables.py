"""Published tables as data (``tables/*.toml``) and the runs that measure them.

A table names its source, its data set, the statistic its figures are (the ``last`` or the
``best`` epoch's, the ``mean`` of several runs or a ``single`` run), the teacher/student pairs
(its columns; a teacher ``torchvision:NAME`` is published weights, as is ``timm:NAME`` where
``published_teachers = true``: read by name, never trained; with ``probes``, a linear probe of
each run on those data sets is the column instead; with ``metrics = ["top1", "top5"]``, each
pair has a column per accuracy, measured by the same runs; ``top1_error`` and ``top5_error`` are
the error rates), the common recipe, and rows. A row is the teacher (``teacher``), the student
trained alone (``student``) or a method: ``flags`` as the authors' scripts write them (a
``--distill`` first), ``variant`` the flags among them that make the row differ from the
method's defaults (CRD+KD's ``-a 1``), and ``published``, one figure per column: ``"N/A"`` where
the source has none (the cell is not run), ``"unpublished"`` where it is run and measured
without a figure to compare. A row may override ``statistic``, ``aggregate`` (``mean``,
``median`` or ``single``), ``source`` and the recipe; ``pair_flags`` adds flags for some pairs
(``{"vgg13:vgg8" = "--kd_T 3"}``, after the row's: they replace its values);
``pair_statistic`` gives some pairs' figures their own statistic (a row that quotes one source
for some cells and another for the rest: ``{"resnet56:resnet20" = "last"}``);
``scratch_peer = true`` trains DML's peer from scratch (``--model_t``) instead of reading a
teacher. ``snapshot`` names a copy of the source's table,
or a list of copies (markdown, beside the tables), that the table's figures are checked against
(a row's ``snapshot_label`` where the source labels it otherwise; ``snapshot_columns``: the
first that many columns, where the table takes the others from elsewhere;
``snapshot_transposed``: the source's columns are the table's rows, in order, and its rows the
metrics; ``snapshot_left_out``: the source's rows the table does not run, each named with why in
the table's comments).

``Table.runs(trials)`` expands a table into the runs that measure it, teachers first, then the
students alone, then the distillation runs (and the probes), each with the runs it needs. A
distillation run is started from a run file (``helper.run_file``) that the runner writes under
its state folder: the options the cell's command line resolves to.
"""
import functools
import json
import math
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Optional

import train_teacher
import transfer_student
from distiller_zoo import METHODS
from core.util import UserError
from helper import resolver
from helper.logger import read_summary
from helper.options import declared_options
from helper.teachers import PUBLISHED_TEACHERS, teacher_architecture
from helper.run_file import FILE_NAME, write_run_file
from helper.run_folder import CIRCUMSTANTIAL
from models import check_model_name, is_timm_name, trains_at_small_lr

# What the runner needs of each script: its pure resolver (argv -> (options, notes)), its
# parser (the flags it takes) and the folder its runs write.
ENTRY_POINTS = {'train_teacher.py': train_teacher, 'train_student.py': resolver,
                'transfer_student.py': transfer_student}

TEACHER, STUDENT = 'teacher', 'student'
STATISTICS = ('last', 'best')
# the test accuracies a run records per epoch (metrics.jsonl), or their error rates (100 - it)
METRICS = ('top1', 'top5', 'top1_error', 'top5_error')
AGGREGATES = ('mean', 'median', 'single')
SMALL_STUDENT_LR = 'learning_rate_small_students'  # recipe key for MobileNetV2 / ShuffleNets
NAMED_RECIPE = 'recipe'  # recipe key: a paper's recipe (--recipe NAME), given to every script
TABLE_KEYS = {'title', 'source', 'note', 'dataset', 'statistic', 'aggregate', 'trials',
              'teacher_epochs', 'fixed_seeds', 'fetch_teachers', 'probes', 'probe_checkpoint',
              'recipe', 'pairs', 'rows', 'snapshot', 'snapshot_columns', 'snapshot_transposed',
              'snapshot_left_out', 'metrics', 'published_teachers'}
PAIR_KEYS = {'teacher', 'student'}
ROW_KEYS = {'flags', 'variant', 'published', 'label', 'statistic', 'aggregate', 'source',
            'recipe', 'pair_flags', 'pair_statistic', 'scratch_peer', 'note',
            'snapshot_label'}
DEFAULT_SAVE, DEFAULT_DATA = './save', './data'
FETCHED_EPOCHS = 240  # the epoch count in the fetched teachers' file names


class TableError(UserError):
    pass


@dataclass(frozen=True)
class Cell:
    """One published figure: a row (``teacher``, ``student`` or a method) on one pair (and
    probe data set), with the recipe and what the figure is."""
    table: str
    row: str
    label: str
    teacher: str
    student: str
    flags: tuple
    variant: tuple
    recipe: dict
    published: Optional[float]
    statistic: str
    aggregate: str
    source: str
    probe: Optional[str] = None
    measured: bool = True  # run and measured (False: the source has no figure; not run)
    scratch_peer: bool = False
    metric: str = 'top1'

    @property
    def where(self):
        column = f'{self.teacher} -> {self.student}' + (f' on {self.probe}' if self.probe else '')
        return f"{self.table}, row '{self.row}', {column}"


def file_stem(run_id):
    """A run's id as a file name (its log, its run file)."""
    return run_id.replace(':', '_').replace('/', '_')


def state_folder(save_dir, table_name):
    """Where the runner keeps what it knows of a table's runs besides their folders."""
    return os.path.join(save_dir, 'reproduce', table_name)


@dataclass
class Run:
    """One training command (or, for a teacher, commands tried in turn: fetch, else train),
    the runs it needs finished first, and where it writes. ``run_file``: ``(folder, options)``
    of the run file a distillation run starts from (its command names the file, written when
    it starts); ``argv`` is the command line the run stands for, as the authors' scripts write
    it."""
    id: str
    kind: str  # teacher, student, distill or probe
    commands: list  # argv lists, script first (tried in order until one succeeds)
    run_dir: str
    done_file: str  # exists once the run has finished
    needs: tuple = ()
    cells: list = field(default_factory=list)
    run_file: tuple = ()
    asked: Optional[list] = None

    @property
    def argv(self):
        return self.asked or self.commands[-1]

    def write_run_file(self):
        folder, options = self.run_file
        os.makedirs(folder, exist_ok=True)
        write_run_file(folder, options, resolver.build_parser(), self.argv[0])


def _published(value, where):
    """``(figure, measured)`` of a published entry."""
    if isinstance(value, str) and value.strip().upper() == 'N/A':
        return None, False
    if isinstance(value, str) and value.strip().lower() == 'unpublished':
        return None, True
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value), True
    raise TableError(f'{where}: published figure {value!r} is neither a number, "N/A" nor '
                     f'"unpublished"')


def named_teacher(name, published_timm=False):
    """Whether a table's teacher is published weights read by name (``torchvision:<name>``,
    ImageNet's; ``timm:<name>``, timm's own, in a table of ``published_teachers``), which no
    run trains: distillation runs read it straight."""
    return name.startswith('torchvision:') or published_timm and name.startswith('timm:')


SEPARATOR = set('|:- ')  # the characters of a markdown table's header separator line
GAIN = re.compile(r'\s*\([+-][\d.]+\)$')  # a gain in brackets after a figure: "76.30(+2.23)"
FIGURE = re.compile(r'[\d.]+')


def _table_lines(path):
    """The table lines of a snapshot (its comment left out)."""
    return [line.strip() for line in open(path) if line.strip().startswith('|')]


def _cells(line):
    return [c.strip() for c in line.strip('|').split('|')]


def snapshot_rows(path):
    """``{label: [figure, ...]}`` of a snapshot of a source's markdown table(s): header rows
    skipped, bold marks, links after a label and a gain in brackets after a figure dropped, a
    link read as its text, a dash as "N/A", a ``Teacher <br> Student`` row split into its two
    rows, the rows of successive tables with one label joined in order (their columns
    continue). A table of one line per pair (its header begins ``Student | Teacher``,
    ``Teacher | Student``, ``Setup | Teacher`` or ``Model | Teacher``) is read column by
    column; one of a line per method (its header begins ``Network | Method``) by method."""
    lines = _table_lines(path)
    header = _cells(lines[0])
    if header[:2] in (['Student', 'Teacher'], ['Teacher', 'Student']):
        return _snapshot_of_pairs(lines, header)
    if header[:2] in (['Setup', 'Teacher'], ['Model', 'Teacher'], ['Network', 'Method']):
        return _snapshot_of_settings(lines)
    rows = {}
    for i, line in enumerate(lines):
        if set(line) <= SEPARATOR or (i + 1 < len(lines) and set(lines[i + 1]) <= SEPARATOR):
            continue
        cells = [c.replace('**', '') for c in _cells(line)]
        cells[0] = re.sub(r'\s*\[\[.*$', '', cells[0])  # the links after a method's name
        label, *values = [re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', c) for c in cells]
        if not values:  # a heading inside the table, one cell (TTM's "*Feature-based*")
            continue
        values = ['N/A' if v in ('-', '\\-') else GAIN.sub('', v) for v in values]
        parts = [p.strip() for p in label.split('<br>')]
        for k, part in enumerate(parts):
            rows.setdefault(part, []).extend(
                v.split('<br>')[k].strip() if len(parts) > 1 else v for v in values)
    return rows


def snapshot_columns(path):
    """``[(label, [figure, ...]), ...]`` of a snapshot whose columns are the table's rows, in
    order (CTKD's ImageNet table: a column per method, a row per metric); a label is its header
    cell up to a ``<br>``, the first column (the metric's name) is left out, and so is a gain
    in brackets after a figure."""
    header, *rows = [[GAIN.sub('', c.replace('**', '')) for c in _cells(line)][1:]
                     for line in _table_lines(path) if not set(line) <= SEPARATOR]
    return [(label.split('<br>')[0].strip(), [row[k] for row in rows])
            for k, label in enumerate(header)]


def _snapshot_of_settings(lines):
    """OFD's and NKD's tables: one line per pair (``Setup | Teacher |`` or ``Model | Teacher |``,
    then a column per method: the columns that hold figures, ``Improvement``, the difference of
    two, left out) or per method of a pair (``Network | Method |`` then a column per metric;
    the pairs' tables follow each other); ``%``, ``__`` and a gain in brackets dropped."""
    rows = {}
    for line in lines:
        if set(line) <= SEPARATOR:
            continue
        cells = [GAIN.sub('', c.replace('__', '').rstrip('%').strip()) for c in _cells(line)]
        if cells[0] in ('Setup', 'Model', 'Network'):
            header = cells
        elif header[0] == 'Network':
            rows.setdefault(cells[1], []).extend(cells[2:])
        else:
            for name, cell in zip(header, cells):
                if FIGURE.fullmatch(cell) and name != 'Improvement':
                    rows.setdefault(name, []).append(cell)
    return rows


def _snapshot_of_pairs(lines, header):
    """A table of one line per pair (DIST_KD's, TTM's ImageNet table): ``Student (figure) |
    Teacher (figure) |`` (or the two the other way round) then a column per method (a spread
    after ``±``, bold and underline marks dropped, ``n/a`` as "N/A"); the columns that hold no
    figure (model names, links) are left out."""
    roles = header[:2]
    rows = {role: [] for role in roles}
    for line in lines[2:]:
        cells = [re.sub(r'<[^>]*>|\*', '', c).strip() for c in _cells(line)]
        for role, cell in zip(roles, cells):
            rows[role].append(re.search(r'\(([\d.]+)\)', cell).group(1))
        for name, cell in zip(header[2:], cells[2:]):
            figure = cell.split('±')[0].strip()
            if FIGURE.fullmatch(figure) or figure == 'n/a':
                rows.setdefault(name.replace('*', ''), []).append(
                    'N/A' if figure == 'n/a' else figure)
    return rows


def recipe_keys():
    """What a recipe may set: the training options that every training script takes (by their
    names: ``epochs``, ``learning_rate``, ``lr_decay_epochs``, ...), and the learning rate of
    the small students."""
    options = declared_options(train_teacher.build_parser()).values()
    return {o.dest for o in options if o.shown and o.dest != 'help'} - {'model', 'trial'} | {
        SMALL_STUDENT_LR}


def check_keys(values, known, where, path):
    """One line naming the first key of ``values`` that is not in ``known``."""
    if not isinstance(values, dict):
        raise TableError(f'{where}: expected a table of keys, got {values!r} ({path})')
    for key in values:
        if key not in known:
            raise TableError(f'{path}: unknown key {key!r} in {where} (known: '
                             f'{", ".join(sorted(known))})')


def _choice(value, choices, what, where):
    if value not in choices:
        raise TableError(f'{where}: {what} {value!r} is not one of {", ".join(choices)}')
    return value


class Table:
    """A table file, checked: every cell's models, method and flags must be ones the training
    scripts accept (a bad cell stops with one line that names it)."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        try:
            with open(path, 'rb') as f:
                data = tomllib.load(f)
        except OSError as e:
            raise TableError(f'cannot read table {path}: {e.strerror}') from None
        except tomllib.TOMLDecodeError as e:
            raise TableError(f'{self.name}: not valid TOML ({e})') from None
        where = self.name
        check_keys(data, TABLE_KEYS, 'the table', path)
        recipe = recipe_keys()
        check_keys(data.get('recipe', {}), recipe, '[recipe]', path)
        for pair in data.get('pairs', []):
            check_keys(pair, PAIR_KEYS, '[[pairs]]', path)
        for key, row in data.get('rows', {}).items():
            check_keys(row, ROW_KEYS, f'[rows.{key}]', path)
            check_keys(row.get('recipe', {}), recipe, f'[rows.{key}] recipe', path)
        try:
            self.title = data.get('title', self.name)
            self.source = data['source']
            self.note = data.get('note', '')
            self.dataset = data.get('dataset', 'cifar100')
            self.statistic = _choice(data.get('statistic', 'last'), STATISTICS, 'statistic', where)
            self.aggregate = _choice(data.get('aggregate', 'mean'), AGGREGATES, 'aggregate', where)
            self.trials = int(data.get('trials', 1))
            self.teacher_epochs = int(data.get('teacher_epochs', FETCHED_EPOCHS))
            self.fixed_seeds = bool(data.get('fixed_seeds', False))
            self.fetch_teachers = bool(data.get('fetch_teachers', True))
            self.probes = list(data.get('probes', [None]))
            self.metrics = [_choice(m, METRICS, 'metric', where)
                            for m in data.get('metrics', ['top1'])]
            self.probe_checkpoint = data.get('probe_checkpoint', 'last')
            self.published_teachers = bool(data.get('published_teachers', False))
            self.recipe = dict(data.get('recipe', {}))
            self.pairs = [(p['teacher'], p['student']) for p in data['pairs']]
            rows = data['rows']
        except KeyError as e:
            raise TableError(f'{where}: missing {e.args[0]!r}') from None
        except (TypeError, ValueError) as e:
            raise TableError(f'{where}: {e}') from None
        self.row_notes = {row.get('label', key): row['note'] for key, row in rows.items()
                          if row.get('note')}
        self.cells = [cell for key, row in rows.items() for cell in self._row_cells(key, row)]
        for cell in self.cells:
            check_cell(self, cell)

    def named_teacher(self, name):
        return named_teacher(name, self.published_teachers)

    @property
    def columns(self):
        return [(t, s, probe, metric) for t, s in self.pairs for probe in self.probes
                for metric in self.metrics]

    def _row_cells(self, key, row):
        where = f"{self.name}, row '{key}'"
        if 'published' not in row:
            raise TableError(f'{where}: no published figures')
        published = row['published']
        if not isinstance(published, list) or len(published) != len(self.columns):
            raise TableError(f'{where}: {len(published) if isinstance(published, list) else 0} '
                             f'published figures for {len(self.columns)} columns')
        flags = tuple(row.get('flags', '').split())
        variant = tuple(row.get('variant', '').split())
        if key not in (TEACHER, STUDENT) and '--distill' not in flags:
            raise TableError(f'{where}: flags must name the method (--distill NAME)')
        recipe = {**self.recipe, **row.get('recipe', {})}
        statistic = _choice(row.get('statistic', self.statistic), STATISTICS, 'statistic', where)
        aggregate = _choice(row.get('aggregate', self.aggregate), AGGREGATES, 'aggregate', where)
        pair_flags = row.get('pair_flags', {})
        pair_statistic = row.get('pair_statistic', {})
        for what, given in (('pair_flags', pair_flags), ('pair_statistic', pair_statistic)):
            unknown = set(given) - {f'{t}:{s}' for t, s in self.pairs}
            if unknown:
                raise TableError(f'{where}: {what} for pairs the table does not have: '
                                 f'{", ".join(sorted(unknown))}')
        for (teacher, student, probe, metric), value in zip(self.columns, published):
            figure, measured = _published(value, f'{where}, {teacher} -> {student}')
            pair = f'{teacher}:{student}'
            cell_flags = flags + tuple(pair_flags.get(pair, '').split())
            cell_statistic = _choice(pair_statistic.get(pair, statistic), STATISTICS,
                                     'statistic', f'{where}, {teacher} -> {student}')
            yield Cell(self.name, key, row.get('label', key), teacher, student, cell_flags,
                       variant, recipe, figure, cell_statistic, aggregate,
                       row.get('source', self.source), probe, measured,
                       bool(row.get('scratch_peer', False)), metric)

    # -- runs ------------------------------------------------------------------------------
    def teacher_path(self, teacher, save_dir, extra=()):
        """Where distillation runs read the teacher: RepDistiller's path on CIFAR-100 (where
        fetched and trained teachers are published, named by the epochs the teacher's command
        trains), else the teacher run's last weights; a named teacher is read by its name."""
        if self.named_teacher(teacher):
            return teacher
        run = _parse('train_teacher.py',
                     self.teacher_argv(teacher, save_dir, DEFAULT_DATA) + list(extra))
        if self.dataset == 'cifar100':
            return os.path.join(save_dir, 'models', f'{teacher}_vanilla',
                                f'ckpt_epoch_{run.epochs}.pth')
        return os.path.join(run_dir_of('train_teacher.py', run), f'{teacher}_last.pth')

    def common(self, save_dir, data_folder, recipe=None):
        """The data set, the named training recipe (``recipe = NAME`` in the table's recipe,
        or in a row's: a paper's, ``--recipe``) and the folders, where they are not the
        scripts' defaults."""
        recipe = self.recipe if recipe is None else recipe
        dataset = ['--dataset', self.dataset] if self.dataset != 'cifar100' else []
        named = ['--recipe', recipe[NAMED_RECIPE]] if NAMED_RECIPE in recipe else []
        return dataset + named + _folders(save_dir, data_folder)

    def teacher_argv(self, teacher, save_dir, data_folder):
        common = self.common(save_dir, data_folder)
        default = _parse('train_teacher.py', ['--model', teacher] + common).epochs
        epochs = [] if self.teacher_epochs == default else ['--epochs', str(self.teacher_epochs)]
        return ['train_teacher.py', '--model', teacher] + epochs + common

    def recipe_flags(self, cell, script, base):
        """The recipe's values that the script would not apply by itself."""
        opt = _parse(script, base)
        flags = []
        for key in dict.fromkeys(k for k in cell.recipe if k not in (SMALL_STUDENT_LR,
                                                                    NAMED_RECIPE)):
            flag, wanted = f'--{key}', recipe_value(cell, key)
            if flag in cell.flags:  # the cell's own value comes first
                continue
            given = [flag, _format(wanted)]
            if _values(_parse(script, list(base) + given))[key] != _values(opt)[key]:
                flags += given
        return flags

    def cell_argv(self, cell, trial, save_dir, data_folder, teacher_extra=()):
        """``(script, argv)`` of one trial of a cell (without the probe); ``teacher_extra``:
        the flags the teacher's run is given, which name its file."""
        common = self.common(save_dir, data_folder, cell.recipe)
        seed = ['--seed', str(trial)] if self.fixed_seeds else []
        if cell.row == STUDENT:
            base = ['--model', cell.student, '--trial', str(trial)] + list(cell.flags) + common
            script = 'train_teacher.py'
        else:
            distill = list(cell.flags)
            name = distill.pop(distill.index('--distill') + 1)
            distill.remove('--distill')
            teacher = (['--model_t', cell.teacher] if cell.scratch_peer
                       else ['--path_t', self.teacher_path(cell.teacher, save_dir,
                                                           teacher_extra)])
            base = (teacher + ['--distill', name, '--model_s', cell.student] + distill
                    + ['--trial', str(trial)] + common)
            script = 'train_student.py'
        return script, base + self.recipe_flags(cell, script, base) + seed

    def runs(self, trials=None, save_dir=DEFAULT_SAVE, data_folder=DEFAULT_DATA, extra=(),
             rows=None, pairs=None, extra_teacher=(), extra_student=()):
        """The runs that measure the table (``rows``/``pairs``: only those), in order.
        ``extra``: flags for every script that takes them; ``extra_teacher`` /
        ``extra_student``: for train_teacher.py (teachers, students alone) / train_student.py
        (distillation) only."""
        trials = trials or self.trials
        extras = route_extra(extra)
        extras['train_teacher.py'] += route_extra(extra_teacher, ('train_teacher.py',))[
            'train_teacher.py']
        extras['train_student.py'] += route_extra(extra_student, ('train_student.py',))[
            'train_student.py']
        self.check_selection(rows, pairs)
        cells = [c for c in self.cells if c.measured
                 and (rows is None or c.row in rows)
                 and (pairs is None or f'{c.teacher}:{c.student}' in pairs)]
        runs = {}

        def add(run, cell):
            run = runs.setdefault(run.id, run)
            if cell is not None and cell not in run.cells:
                run.cells.append(cell)
            return run

        teachers = {}
        teacher_extra = extras['train_teacher.py']
        for cell in cells:
            if cell.teacher in teachers or cell.scratch_peer or self.named_teacher(cell.teacher):
                continue
            argv = self.teacher_argv(cell.teacher, save_dir, data_folder) + teacher_extra
            commands = [argv]
            parsed = _parse('train_teacher.py', argv)
            if self.fetch_teachers and self.dataset == 'cifar100' and \
                    parsed.epochs == FETCHED_EPOCHS and cell.teacher in PUBLISHED_TEACHERS:
                fetch = ['scripts/fetch_teachers.py', cell.teacher] + (
                    ['--save_dir', save_dir] if save_dir != DEFAULT_SAVE else [])
                commands = [fetch, argv]
            teachers[cell.teacher] = Run(
                f'teacher:{cell.teacher}', TEACHER, commands,
                run_dir_of('train_teacher.py', parsed),
                self.teacher_path(cell.teacher, save_dir, teacher_extra))
        ordered = {STUDENT: [], 'distill': [], 'probe': []}
        named = []  # the teacher rows of named teachers: measured by their pairs' runs
        for cell in cells:
            if self.named_teacher(cell.teacher) and cell.row == TEACHER and not cell.probe:
                named.append(cell)
                continue
            teacher = None if cell.scratch_peer or self.named_teacher(cell.teacher) else add(
                teachers[cell.teacher], cell if cell.row == TEACHER and not cell.probe else None)
            for trial in range(1, trials + 1):
                if cell.row == TEACHER:
                    source = teacher
                else:
                    script, argv = self.cell_argv(cell, trial, save_dir, data_folder,
                                                  teacher_extra)
                    argv = [script] + argv + extras[script]
                    kind = STUDENT if cell.row == STUDENT else 'distill'
                    parsed = _parse(script, argv)
                    folder = run_dir_of(script, parsed)
                    # one run per folder: a student alone serves each pair it is in
                    source = next((r for r in ordered[kind] if r.run_dir == folder), None) or \
                        self.cell_run(f'{cell.row}:{cell.teacher}:{cell.student}:{trial}', kind,
                                      argv, parsed, folder, save_dir,
                                      () if teacher is None or kind == STUDENT else (teacher.id,))
                    source = add(source, None if cell.probe else cell)
                    if source not in ordered[kind]:
                        ordered[kind].append(source)
                if cell.probe:
                    probe = add(self.probe_run(cell, source, trial, save_dir, data_folder,
                                               extras['transfer_student.py']), cell)
                    if probe not in ordered['probe']:
                        ordered['probe'].append(probe)
        for cell in named:
            for run in ordered['distill']:
                if (run.cells[0].teacher, run.cells[0].student) == (cell.teacher, cell.student):
                    add(run, cell)
        return list(teachers.values()) + [r for kind in ordered.values() for r in kind]

    def cell_run(self, id, kind, argv, parsed, folder, save_dir, needs):
        """The run of one trial of a cell: a distillation run from its run file, a student
        alone from its command line."""
        fields = dict(kind=kind, run_dir=folder, done_file=os.path.join(folder, 'summary.json'),
                      needs=needs)
        if kind == STUDENT:
            return Run(id, commands=[argv], **fields)
        files = os.path.abspath(os.path.join(state_folder(save_dir, self.name), 'runs',
                                             file_stem(id)))
        return Run(id, commands=[[argv[0], '--config', os.path.join(files, FILE_NAME)]],
                   run_file=(files, _values(parsed)), asked=argv, **fields)

    def check_pairs(self, runs):
        """One line naming the first distillation cell whose method cannot serve its pair, found
        the way train_student.py finds it at start (the networks built without data), before
        any teacher trains."""
        checked = set()  # the trials of a cell build the same networks: once
        for run in runs:
            if run.kind != 'distill':
                continue
            config = _parse('train_student.py', run.argv)
            # a run measured through its probes has no cell of its own: its teacher file names it
            model_t = run.cells[0].teacher if run.cells else teacher_architecture(
                config.teacher.path, config.teacher.named)
            if self.named_teacher(model_t):
                model_t = teacher_architecture(model_t)
            key = (model_t,) + tuple((k, repr(v)) for k, v in sorted(config.options.items())
                                     if k not in ('trial', 'seed'))
            if key in checked:
                continue
            checked.add(key)
            try:
                resolver.check_pair(config, model_t)
            except UserError as e:
                where = run.cells[0].where if run.cells else run.id
                raise TableError(f'{where}: {e}') from None

    def check_selection(self, rows, pairs):
        """One line for a ``--rows`` or ``--pairs`` name that matches nothing in the table."""
        for what, given, known in (
                ('--rows', rows, {c.row for c in self.cells}),
                ('--pairs', pairs, {f'{t}:{s}' for t, s in self.pairs})):
            for name in given or ():
                if name not in known:
                    raise TableError(f'{self.name}: {what} {name!r} matches nothing in the table '
                                     f'(it has: {", ".join(sorted(known))})')

    def probe_run(self, cell, source, trial, save_dir, data_folder, extra):
        if source.kind == TEACHER:
            path, arch = source.done_file, cell.teacher
        else:
            arch = cell.student
            path = os.path.join(source.run_dir, f'{arch}_{self.probe_checkpoint}.pth')
        argv = (['transfer_student.py', '--path_s', path, '--model_s', arch, '--dataset',
                 cell.probe, '--trial', str(trial)]
                + _folders(save_dir, data_folder)
                + (['--seed', str(trial)] if self.fixed_seeds else []) + list(extra))
        folder = run_dir_of('transfer_student.py', _parse('transfer_student.py', argv))
        return Run(f'probe:{cell.row}:{cell.teacher}:{cell.student}:{cell.probe}:{trial}',
                   'probe', [argv], folder, os.path.join(folder, 'summary.json'),
                   needs=(source.id,))


def recorded_differences(run):
    """How a finished run's recorded options differ from those its command now asks for
    (``('--epochs 1 (now 2)', ...)``); empty when they agree or nothing is recorded (a
    fetched teacher). Options that do not change what a run computes are left out."""
    path = os.path.join(run.run_dir, 'summary.json')
    try:
        stat = os.stat(path)
    except OSError:
        return ()
    return _differences(path, stat.st_mtime_ns, stat.st_size, tuple(run.argv))


@functools.lru_cache(maxsize=4096)
def _differences(path, mtime_ns, size, argv):
    """``recorded_differences`` of a summary as it is on disk (read once while unchanged: the
    runner asks for every run's status several times a second)."""
    summary = read_summary(path)
    if summary is None or not isinstance(summary.get('args'), dict):
        return ()
    script = os.path.basename(argv[0])
    wanted = _values(_parse(script, argv))
    recorded = summary['args']
    return tuple(f'--{key} {_shown(recorded[key])} (now {_shown(value)})'
                 for key, value in wanted.items()
                 if key in recorded and key not in CIRCUMSTANTIAL and value is not None
                 and _plain(recorded[key]) != _plain(value))


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _shown(value):
    return _format(value) if isinstance(value, (list, tuple, float)) else str(value)


def _folders(save_dir, data_folder):
    return ((['--save_dir', save_dir] if save_dir != DEFAULT_SAVE else [])
            + (['--data_folder', data_folder] if data_folder != DEFAULT_DATA else []))


def recipe_value(cell, key):
    """The recipe's value of ``key`` for the cell (the small-student learning rate for
    MobileNetV2 and ShuffleNet students)."""
    if key == 'learning_rate' and trains_at_small_lr(cell.student) and SMALL_STUDENT_LR in \
            cell.recipe:
        return cell.recipe[SMALL_STUDENT_LR]
    return cell.recipe.get(key)


def _format(value):
    if isinstance(value, (list, tuple)):
        return ','.join(_format(v) for v in value)
    return f'{value:g}' if isinstance(value, float) else str(value)


def _parse(script, argv):
    """The script's resolved options for ``argv`` (its first word may be the script); the
    notes a run would print of them are the run's, not the runner's."""
    argv = tuple(argv[1:] if argv and argv[0] == script else argv)
    return _parse_cached(script, argv)


@functools.lru_cache(maxsize=4096)
def _parse_cached(script, argv):
    try:
        options, _ = ENTRY_POINTS[script].resolve(list(argv))
    except UserError as e:
        raise UserError(f'{script} refuses {shlex.join(argv)}: {e}') from None
    return options


def _values(parsed):
    """The option values of what a script's ``parse_option`` returns: train_student.py's
    ``RunConfig`` records them; the other scripts return them."""
    return parsed.options if hasattr(parsed, 'method') else vars(parsed)


def route_extra(words, scripts=tuple(ENTRY_POINTS)):
    """``--extra``'s flags by script: each flag (with its values) goes to every script among
    ``scripts`` that takes it; a flag none of them takes is one line."""
    flags = {script: declared_options(ENTRY_POINTS[script].build_parser())
             for script in scripts}
    routed = {script: [] for script in ENTRY_POINTS}
    words, i = list(words), 0
    while i < len(words):
        flag = words[i].split('=', 1)[0]
        takers = [s for s, known in flags.items() if flag in known]
        if not takers:
            raise UserError(f'{words[i]!r} is an option of none of {", ".join(scripts)}')
        takes_value = flags[takers[0]][flag].takes_value
        count = 1 if '=' in words[i] or not takes_value else 2
        for script in takers:
            routed[script] += words[i:i + count]
        i += count
    return routed


def run_dir_of(script, opt):
    return ENTRY_POINTS[script].run_dir(opt)


def check_cell(table, cell):
    """Refuse, in one line naming the cell, an unknown model or method or flags the training
    script rejects."""
    for role, name in ((TEACHER, cell.teacher), (STUDENT, cell.student)):
        if role == TEACHER and table.named_teacher(name) and not is_timm_name(name):
            if teacher_architecture(name) is None:
                raise TableError(f'{cell.where}: unknown teacher {name!r}')
            continue
        try:
            check_model_name(name)
        except KeyError as e:
            raise TableError(f'{cell.where}: unknown {role} model {name!r}: {e.args[0]}') \
                from None
    if cell.row not in (TEACHER, STUDENT):
        method = cell.flags[cell.flags.index('--distill') + 1] \
            if cell.flags.index('--distill') + 1 < len(cell.flags) else ''
        if method not in METHODS:
            raise TableError(f'{cell.where}: unknown method {method!r}')
    if cell.row == TEACHER:
        return
    try:
        script, argv = table.cell_argv(cell, 1, DEFAULT_SAVE, DEFAULT_DATA)
        _parse(script, argv)
    except UserError as e:
        raise TableError(f'{cell.where}: the flags are refused: {e}') from None
