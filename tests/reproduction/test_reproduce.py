"""Tables as data, the reproduction runner (local queue and submitit's local executor), the
report, W&B logging and the GPU check's plan."""
import csv
import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_student
from helper import resolver
from distiller_zoo import get_method
from core.checkpoint import load_checkpoint
from reproduction.tables import STUDENT, TEACHER, Table, TableError, _parse, _values
from scripts import gpu_check, reproduce
from conftest import REPO

TABLES = sorted(glob.glob(os.path.join(REPO, 'tables', '*.toml')))


# -- the shipped tables ------------------------------------------------------------------------
def option_dest(parser, flag):
    return parser._option_string_actions[flag].dest


def without(argv, parser, dest):
    """``argv`` without every occurrence of the option ``dest`` (and its value)."""
    out, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        action = parser._option_string_actions.get(word)
        if action is not None and action.dest == dest:
            skip = action.nargs != 0
            continue
        out.append(word)
    return out


@pytest.mark.parametrize('path', TABLES, ids=lambda p: os.path.basename(p))
def test_table_flags_are_the_defaults_the_code_applies(path):
    """One source of truth in practice: every flag of a cell, except those that define its
    row's variant, is what the training script applies when it is left out, and the recipe
    (epochs, lr, batch) is what the script resolves, so no recipe flag is ever passed."""
    table = Table(path)
    assert table.cells
    for cell in table.cells:
        if cell.row == TEACHER:
            continue
        script, argv = table.cell_argv(cell, 1, './save', './data')
        assert table.recipe_flags(cell, script, argv[:argv.index('--trial') + 2]) == [], \
            cell.where
        if cell.row == STUDENT:
            continue
        name = cell.flags[cell.flags.index('--distill') + 1]
        parser, method = resolver.build_parser(name), get_method(name)

        def resolved(opt):  # what the method uses: -d is -a; per-pair defaults filled in
            values = method.resolved_options(_values(opt), cell.teacher, cell.student)
            return {**values, 'div': values['alpha'] if values.get('delta') is None
                    else values['delta']}
        full = resolved(_parse(script, argv))
        options = parser._option_string_actions
        exempt = {option_dest(parser, w) for w in cell.variant if w in options}
        for word in cell.flags:
            if word not in options or word == '--distill':  # values, the method
                continue
            dest = option_dest(parser, word)
            if dest in exempt:
                continue
            reduced = resolved(_parse(script, without(argv, parser, dest)))
            assert reduced[dest] == full[dest], (cell.where, word)


def test_dry_run_gives_the_lines_of_run_cifar_distill_sh(capsys):
    env = dict(os.environ, PYTHON='echo')
    script = subprocess.run(['bash', os.path.join(REPO, 'scripts', 'run_cifar_distill.sh')],
                            capture_output=True, text=True, env=env, check=True).stdout
    expected = script.splitlines()[:13]  # RepDistiller's methods, KD to CRD
    assert reproduce.main([os.path.join(REPO, 'tables', 'repdistiller_same.toml'), '--dry_run',
                           '--pairs', 'resnet32x4:resnet8x4', '--trials', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ('python scripts/fetch_teachers.py resnet32x4 || python train_teacher.py '
                        '--model resnet32x4')
    assert lines[1] == 'python train_teacher.py --model resnet8x4 --trial 1'
    assert [line[len('python '):] for line in lines[2:]] == expected

    assert reproduce.main([os.path.join(REPO, 'tables', 'repdistiller_same.toml'), '--dry_run',
                           '--pairs', 'resnet32x4:resnet8x4', '--trials', '1',
                           '--methods', 'crd,student']) == 0
    assert capsys.readouterr().out.splitlines() == lines[:2] + [lines[-1]]


GOOD = '''
title = "tiny"
source = "made up"
dataset = "synthetic"
trials = 2
teacher_epochs = 1
fixed_seeds = true
[recipe]
epochs = 1
batch_size = 256
[[pairs]]
teacher = "resnet8"
student = "resnet8"
[rows.teacher]
published = [50.0]
[rows.kd]
flags = "--distill kd -r 0.1 -a 0.9 -b 0"
published = [40.0]
[rows.dkd]
flags = "--distill dkd"
published = [30.0]
'''


def write_table(tmp_path, text, name='tiny'):
    path = tmp_path / f'{name}.toml'
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('change, message', [
    (('--distill dkd', '--distill dkdd'), "tiny, row 'dkd', resnet8 -> resnet8: unknown method"),
    (('student = "resnet8"', 'student = "resnet9"'),
     "row 'teacher', resnet8 -> resnet9: unknown student model 'resnet9'"),
    (('published = [30.0]\n', ''), "tiny, row 'dkd': no published figures"),
    (('published = [30.0]', 'published = []'), "row 'dkd': 0 published figures for 1 columns"),
    (('published = [30.0]', 'published = ["?"]'), 'neither a number, "N/A" nor "unpublished"'),
    (('--distill dkd', '--distill dkd --dkd_T -1'),
     "tiny, row 'dkd', resnet8 -> resnet8: the flags are refused"),
    (('--distill dkd', '--distill dkd --no_such_flag'), "row 'dkd', resnet8 -> resnet8: the "
                                                       "flags are refused"),
    (('source = "made up"', ''), "tiny: missing 'source'"),
    (('[[pairs]]', '[[pairs'), 'tiny: not valid TOML')])
def test_bad_tables_stop_with_one_line_naming_the_cell(tmp_path, capsys, change, message):
    path = write_table(tmp_path, GOOD.replace(*change))
    assert reproduce.main([path, '--dry_run']) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_bad_gpu_list_is_one_line(tmp_path, capsys):
    assert reproduce.main([write_table(tmp_path, GOOD), '--gpus', '0,one']) == 2
    err = capsys.readouterr().err.strip()
    assert "'0,one' is not a comma-separated list of GPU indices" in err, err
    assert len(err.splitlines()) == 1


# -- the report --------------------------------------------------------------------------------
def fake_summary(run, accuracy):
    os.makedirs(run.run_dir, exist_ok=True)
    with open(run.done_file, 'w') as f:
        json.dump({'last_acc': accuracy, 'best_acc': accuracy + 1, 'teacher_acc': 51.0}, f)


def test_a_named_teacher_is_read_by_its_name_and_measured_by_its_pairs_runs(tmp_path):
    text = GOOD.replace('teacher = "resnet8"', 'teacher = "torchvision:resnet18"').replace(
        'dataset = "synthetic"', 'dataset = "imagenet"')
    table = Table(write_table(tmp_path, text))
    runs = table.runs(save_dir=str(tmp_path / 'save'))
    assert not [r for r in runs if r.kind == TEACHER]  # nothing trains it
    distill = [r for r in runs if r.kind == 'distill']
    assert all(r.argv[r.argv.index('--path_t') + 1] == 'torchvision:resnet18' for r in distill)
    teacher_cell = next(c for c in table.cells if c.row == TEACHER)
    assert all(teacher_cell in r.cells for r in distill)
    table.check_pairs(runs)  # built as ResNet18 (torchvision's keys), without weights


def test_published_timm_teachers_are_read_by_name_not_trained(tmp_path):
    text = GOOD.replace('teacher = "resnet8"', 'teacher = "timm:resnet10t.c3_in1k"')
    runs = Table(write_table(tmp_path, text)).runs(save_dir=str(tmp_path / 'save'))
    assert [r.kind for r in runs if r.kind == TEACHER] == [TEACHER]  # an architecture: trained
    table = Table(write_table(tmp_path, 'published_teachers = true\n' + text))
    runs = table.runs(save_dir=str(tmp_path / 'save'))
    distill = [r for r in runs if r.kind == 'distill']
    assert not [r for r in runs if r.kind == TEACHER] and distill
    assert all(r.argv[r.argv.index('--path_t') + 1] == 'timm:resnet10t.c3_in1k' for r in distill)
    table.check_pairs(runs)  # built from timm's architecture, without its weights
    with pytest.raises(TableError, match="unknown teacher model 'timm:resnet10t.in9k'"):
        Table(write_table(tmp_path, 'published_teachers = true\n' + text.replace(
            'c3_in1k', 'in9k')))


def test_report_names_a_rows_own_statistic_and_measures_it(tmp_path, capsys):
    text = GOOD.replace('flags = "--distill dkd"', 'flags = "--distill dkd"\nstatistic = "best"')
    path = write_table(tmp_path, text)
    save = str(tmp_path / 'save')
    runs = {r.id: r for r in Table(path).runs(save_dir=save)}
    fake_summary(runs['kd:resnet8:resnet8:1'], 39.0)
    fake_summary(runs['dkd:resnet8:resnet8:1'], 35.0)  # its best epoch: 36.0
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    out = capsys.readouterr().out
    assert 'Published figures: last epoch, mean (a row whose source used another' in out
    assert '| kd | 40.00 | 39.00 (1), -1.00 missing ! |' in out, out  # 1 of 2 trials
    assert '| dkd [best epoch] | 30.00 | 36.00 (1), +6.00 missing ! |' in out


def test_a_cell_of_its_own_statistic_and_a_median_table_are_measured_so(tmp_path, capsys):
    text = (GOOD.replace('trials = 2', 'trials = 3\naggregate = "median"')
            .replace('[[pairs]]', '[[pairs]]\nteacher = "resnet14"\nstudent = "resnet8"\n'
                                  '[[pairs]]', 1)
            .replace('[50.0]', '[50.0, 51.0]').replace('[40.0]', '[40.0, 41.0]')
            .replace('published = [30.0]', 'pair_statistic = {"resnet8:resnet8" = "best"}\n'
                                           'note = "a row of two sources"\n'
                                           'published = [30.0, 31.0]')
            .replace('title = "tiny"', 'title = "tiny"\nnote = "five runs, their median"'))
    path = write_table(tmp_path, text)
    table = Table(path)
    assert {(c.row, c.teacher): c.statistic for c in table.cells if c.row == 'dkd'} == {
        ('dkd', 'resnet14'): 'last', ('dkd', 'resnet8'): 'best'}
    save = str(tmp_path / 'save')
    runs = {r.id: r for r in table.runs(save_dir=save)}
    for trial, value in zip((1, 2, 3), (39.0, 40.0, 44.0)):  # median 40, mean 41
        fake_summary(runs[f'kd:resnet14:resnet8:{trial}'], value)
        fake_summary(runs[f'dkd:resnet14:resnet8:{trial}'], value - 10)
        fake_summary(runs[f'dkd:resnet8:resnet8:{trial}'], value - 10)  # best: +1
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    out = capsys.readouterr().out
    assert 'Published figures: last epoch, median' in out
    assert '| kd | 40.00 | 40.00 +- 2.65 (3), +0.00 |' in out, out
    assert '| dkd | 30.00 | 30.00 +- 2.65 (3), +0.00 | 31.00 [best epoch] | 31.00 +- 2.65 (3), ' \
           '+0.00 |' in out
    assert 'Note: five runs, their median' in out and 'Note: dkd: a row of two sources' in out
    with open(os.path.join(save, 'reproduce', 'tiny', 'report.csv')) as f:
        rows = {(r['row'], r['teacher']): r for r in csv.DictReader(f)}
    assert (rows[('kd', 'resnet14')]['median'], rows[('kd', 'resnet14')]['mean']) == (
        '40.0000', '41.0000')
    assert rows[('dkd', 'resnet8')]['statistic'] == 'best'
    with pytest.raises(TableError, match="pair_statistic for pairs the table does not have"):
        Table(write_table(tmp_path, text.replace('"resnet8:resnet8" = "best"',
                                                 '"vgg8:resnet8" = "best"')))
    with pytest.raises(TableError, match="statistic 'first' is not one of last, best"):
        Table(write_table(tmp_path, text.replace('"resnet8:resnet8" = "best"',
                                                 '"resnet8:resnet8" = "first"')))


def test_a_student_alone_in_several_pairs_is_one_run_that_serves_each(tmp_path):
    text = (GOOD.replace('[[pairs]]', '[[pairs]]\nteacher = "resnet14"\nstudent = "resnet8"\n'
                                      '[[pairs]]', 1)
            .replace('[rows.kd]', '[rows.student]\npublished = [20.0, 20.0]\n[rows.kd]')
            .replace('[50.0]', '[50.0, 51.0]').replace('[40.0]', '[40.0, 41.0]')
            .replace('[30.0]', '[30.0, 31.0]'))
    table = Table(write_table(tmp_path, text))
    runs = [r for r in table.runs(trials=1) if r.kind == STUDENT]
    assert len(runs) == 1 and [c.teacher for c in runs[0].cells] == ['resnet14', 'resnet8']


def test_top5_columns_are_measured_by_the_same_runs_from_their_epochs(tmp_path, capsys):
    text = (GOOD.replace('trials = 2', 'trials = 1\nmetrics = ["top1", "top5"]')
            .replace('[50.0]', '[50.0, 80.0]').replace('[40.0]', '[40.0, 70.0]')
            .replace('[30.0]', '[30.0, 60.0]\nstatistic = "best"'))
    path = write_table(tmp_path, text)
    save = str(tmp_path / 'save')
    runs = {r.id: r for r in Table(path).runs(save_dir=save)}
    assert sorted(runs) == ['dkd:resnet8:resnet8:1', 'kd:resnet8:resnet8:1', 'teacher:resnet8']
    for name in ('kd', 'dkd'):
        run = runs[f'{name}:resnet8:resnet8:1']
        fake_summary(run, 39.0)
        with open(os.path.join(run.run_dir, 'summary.json')) as f:
            summary = {**json.load(f), 'teacher_top5': 81.0}
        with open(os.path.join(run.run_dir, 'summary.json'), 'w') as f:
            json.dump(summary, f)
        with open(os.path.join(run.run_dir, 'metrics.jsonl'), 'w') as f:  # best top-1: epoch 2
            for epoch, top1, top5 in ((1, 30.0, 60.0), (2, 40.0, 65.0), (3, 40.0, 66.0),
                                      (4, 39.0, 71.0)):
                f.write(json.dumps({'epoch': epoch, 'test_top1': top1, 'test_top5': top5}) + '\n')
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    out = capsys.readouterr().out
    assert '| method | resnet8 -> resnet8 published | resnet8 -> resnet8 measured | resnet8 -> ' \
           'resnet8 top5 published | resnet8 -> resnet8 top5 measured |' in out, out
    assert '| teacher | 50.00 | 51.00 (1), +1.00 | 80.00 | 81.00 (1), +1.00 |' in out
    assert '| kd | 40.00 | 39.00 (1), -1.00 ! | 70.00 | 71.00 (1), +1.00 ! |' in out
    assert '| dkd [best epoch] | 30.00 | 40.00 (1), +10.00 ! | 60.00 | 65.00 (1), +5.00 ! |' in out
    # error rates (OFD's tables): 100 minus the accuracy, of the same runs
    write_table(tmp_path, text.replace('"top1", "top5"', '"top1_error", "top5_error"'))
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    out = capsys.readouterr().out
    assert '| teacher | 50.00 | 49.00 (1), -1.00 | 80.00 | 19.00 (1), -61.00 |' in out, out
    assert '| dkd [best epoch] | 30.00 | 60.00 (1), +30.00 ! | 60.00 | 35.00 (1), -25.00 ! |' in out


def test_report_marks_what_it_should(tmp_path, capsys):
    path = write_table(tmp_path, GOOD.replace('trials = 2', 'trials = 3'))
    save = str(tmp_path / 'save')
    runs = {r.id: r for r in Table(path).runs(save_dir=save)}
    for trial, value in zip((1, 2, 3), (39.0, 40.5, 41.0)):  # 40 is inside mean +- 2 std
        fake_summary(runs[f'kd:resnet8:resnet8:{trial}'], value)
    for trial, value in zip((1, 2), (35.0, 35.2)):  # 30 is far outside
        fake_summary(runs[f'dkd:resnet8:resnet8:{trial}'], value)
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    out = capsys.readouterr().out
    assert '| teacher | 50.00 | 51.00 (1), +1.00 |' in out  # one set of weights: not marked
    assert '| kd | 40.00 | 40.17 +- 1.04 (3), +0.17 |' in out
    assert '| dkd | 30.00 | 35.10 +- 0.14 (2), +5.10 missing ! |' in out  # 2 of 3 trials
    with open(os.path.join(save, 'reproduce', 'tiny', 'report.csv')) as f:
        rows = {r['row']: r for r in csv.DictReader(f)}
    assert rows['kd']['n'] == '3' and rows['kd']['marked'] == '0'
    assert rows['dkd']['marked'] == '1' and rows['dkd']['statistic'] == 'last'
    assert float(rows['dkd']['difference']) == pytest.approx(5.1)


# -- running -----------------------------------------------------------------------------------
def runner(path, save, *flags):
    return [sys.executable, os.path.join(REPO, 'scripts', 'reproduce.py'), path, '--save_dir',
            save, '--extra', '--num_workers 0', *flags]


def wait_for(predicate, process, seconds=300):
    deadline = time.time() + seconds
    while not predicate():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.2)


# Tables whose runs train: a small CIFAR-100 tree keeps each run to a few seconds.
TRAINED = GOOD.replace('dataset = "synthetic"\n', '')


@pytest.fixture
def cifar(tmp_path):
    """A CIFAR-100 tree of 1024 training images (4 steps of the table's batch per epoch)."""
    from conftest import write_cifar100
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=1024, n_test=64)
    return data


def final_weights(run):
    return load_checkpoint(os.path.join(run.run_dir, 'resnet8_last.pth'))['model']


@pytest.mark.processes
def test_local_runs_resume_after_a_kill_and_a_second_call_runs_nothing(tmp_path, monkeypatch,
                                                                       capsys, cifar):
    # One thread per run, here and in the runs, so that float sums agree bit for bit.
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    # the teacher and one student: a run started as a process costs seconds
    one_student = TRAINED.replace('trials = 2', 'trials = 1').split('[rows.dkd]')[0]
    path = write_table(tmp_path, one_student.replace('[rows.kd]',
                                                     '[rows.kd]\nrecipe = {epochs = 2}'))
    save = str(tmp_path / 'save')
    runs = {r.id: r for r in Table(path).runs(save_dir=save, data_folder=cifar,
                                                 extra=['--num_workers', '0'])}
    first = runs['kd:resnet8:resnet8:1']
    log = os.path.join(save, 'reproduce', 'tiny', 'logs', 'kd_resnet8_resnet8_1.log')
    process = subprocess.Popen(runner(path, save, '--data_folder', cifar), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: os.path.isfile(log) and 'epoch   1/2' in open(log).read(), process)
    process.send_signal(signal.SIGTERM)  # in the second epoch
    out = process.communicate(timeout=300)[0]
    assert process.returncode == 130, out
    assert 'run the same command again to resume' in out
    assert not os.path.isfile(first.done_file)

    # the runner itself in this process from here on: only the runs are processes
    assert reproduce.main(runner(path, save, '--data_folder', cifar, '--cpu_workers', '2')[2:]) \
        == 0
    again = capsys.readouterr().out
    assert 'reproduce: 2 done | 0 running | 0 queued | 0 failed | 0 blocked' in again, again
    text = open(log).read()
    assert '--resume auto' in text and 'resuming' in text, text
    # The run starts from the run file the runner wrote, which stands for the cell's command.
    run_file = first.commands[0][-1]
    assert f'train_student.py --config {run_file}' in text and os.path.isfile(run_file)
    assert resolver.resolve(['--config', run_file])[0] == resolver.resolve(first.argv[1:])[0]

    # The interrupted run ends as one that ran straight through.
    straight = str(tmp_path / 'straight')
    argv = [w if w != save else straight for w in first.argv[1:]]
    argv[argv.index('--path_t') + 1] = runs['teacher:resnet8'].done_file
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_student.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    reference = load_checkpoint(glob.glob(os.path.join(
        straight, 'student_model', '*', 'resnet8_last.pth'))[0])['model']
    resumed = final_weights(first)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)

    logs_before = {p: os.path.getsize(p) for p in glob.glob(os.path.join(save, 'reproduce',
                                                                          'tiny', 'logs', '*'))}
    assert reproduce.main(runner(path, save, '--data_folder', cifar)[2:]) == 0
    assert 'reproduce: 2 done' in capsys.readouterr().out
    assert {p: os.path.getsize(p) for p in logs_before} == logs_before  # nothing ran
    assert reproduce.main(runner(path, save, '--data_folder', cifar, '--dry_run')[2:]) == 0
    assert capsys.readouterr().out == ''  # nothing left to do
    assert reproduce.main(runner(path, save, '--report')[2:]) == 0
    report = capsys.readouterr().out
    assert '| kd | 40.00 |' in report and '(1)' in report


@pytest.mark.processes
def test_submitit_local_executor_runs_a_table(tmp_path, cifar, capsys):
    path = write_table(tmp_path, TRAINED.replace('trials = 2', 'trials = 1'))
    save = str(tmp_path / 'save')
    assert reproduce.main(runner(path, save, '--data_folder', cifar, '--executor',
                                 'submitit_local', '--cpu_workers', '2')[2:]) == 0
    out = capsys.readouterr().out
    # the teacher's job first, then its two students' as one array (at most --cpu_workers)
    assert 'submitted 1 runs (local job' in out
    assert 'submitted 2 runs (local job' in out
    assert '2 running' not in out.split('submitted 2 runs')[0]
    runs = Table(path).runs(save_dir=save, data_folder=cifar, extra=['--num_workers', '0'])
    assert len(runs) == 3 and all(os.path.isfile(r.done_file) for r in runs)
    state = json.load(open(os.path.join(save, 'reproduce', 'tiny', 'state.json')))
    assert {r['exit'] for r in state.values()} == {0}


@pytest.mark.processes
def test_a_failing_run_is_reported_with_its_log(tmp_path, capsys):
    path = write_table(tmp_path, GOOD.replace('trials = 2', 'trials = 1')
                       .replace('[rows.kd]', '[rows.kd]\nrecipe = {epochs = 1}'))
    save = str(tmp_path / 'save')
    runs = Table(path).runs(save_dir=save)
    # a teacher file that is not a checkpoint: the distillation runs fail, and say where
    teacher = runs[0].done_file
    os.makedirs(os.path.dirname(teacher), exist_ok=True)
    open(teacher, 'w').write('not a checkpoint')
    assert reproduce.main(runner(path, save, '--cpu_workers', '2')[2:]) == 1
    out = capsys.readouterr().out
    assert '1 done | 0 running | 0 queued | 2 failed' in out  # the (bad) teacher
    assert 'failed: kd:resnet8:resnet8:1 (exit 2):' in out
    assert 'kd_resnet8_resnet8_1.log' in out


# -- W&B and the GPU check ---------------------------------------------------------------------
def test_wandb_logs_offline_without_a_network(tmp_path, monkeypatch):
    from conftest import write_cifar100
    import train_teacher
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=32, n_test=16)
    argv = ['--model', 'resnet8', '--data_folder', data, '--save_dir', str(tmp_path / 'save'),
            '--epochs', '2', '--batch_size', '16', '--num_workers', '0', '--wandb']
    assert train_teacher.main(argv) == 0
    run = tmp_path / 'save' / 'models' / 'resnet8_cifar100_lr_0.05_decay_0.0005_trial_0'
    offline = glob.glob(str(run / 'wandb' / 'offline-run-*'))
    assert len(offline) == 1 and glob.glob(os.path.join(offline[0], '*.wandb'))
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['args']['wandb'] is True


@pytest.mark.processes
def test_wandb_is_imported_only_when_asked(tmp_path):
    code = ('import sys, train_student; train_student.parse_option(["--path_t", "x.pth"]); '
            'print("wandb" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == 'False', out.stderr


def test_gpu_check_lists_every_method_and_stops_clearly_without_a_gpu(capsys, monkeypatch):
    from distiller_zoo import METHODS
    monkeypatch.setattr(gpu_check, 'cuda_devices', lambda: 0)
    assert gpu_check.main(['--list']) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(':')[0] for line in lines]
    for method in dict.fromkeys(METHODS.values()):
        assert f'method {method.names[0]}' in names
    assert 'method kd --compile' in names and 'benchmark' in names
    for modified in ('kd --logit_stand', 'kd --ctkd', 'dkd --ctkd', 'kd --optimizer dot',
                     'kd --optimizer dot --amp fp16'):
        assert f'method {modified}' in names
    assert 'torchrun, 1 process (NCCL)' in names  # one GPU or none: one process
    for line in lines:
        assert '--amp bf16 --channels_last' in line or line.startswith(('benchmark', 'DALI'))
    assert gpu_check.main([]) == 2
    assert 'no CUDA GPU is visible' in capsys.readouterr().err
    monkeypatch.setattr(gpu_check, 'cuda_devices', lambda: 2)
    assert gpu_check.main(['--list', '--only', 'torchrun']) == 0
    out = capsys.readouterr().out
    assert out.startswith('torchrun, 2 processes (NCCL)') and '--nproc_per_node 2' in out
    assert shlex.split(out.split(': ', 1)[1])[0] == 'python'


# -- defects a new user hit ------------------------------------------------------------------
@pytest.mark.parametrize('change, key, where', [
    (('statistic = "last"', 'statstic = "best"'), 'statstic', 'the table'),
    (('\nepochs = 1\n', '\nepoch = 1\n'), 'epoch', '[recipe]'),
    (('published = [30.0]', 'published = [30.0]\npair_flag = {"resnet8:resnet8" = "--kd_T 3"}'),
     'pair_flag', '[rows.dkd]'),
    (('published = [30.0]', 'published = [30.0]\nrecipe = {learning_rat = 0.01}'),
     'learning_rat', '[rows.dkd] recipe'),
    (('student = "resnet8"', 'student = "resnet8"\nstudnet = "x"'), 'studnet', '[[pairs]]')])
def test_unknown_table_keys_are_one_line_naming_the_key_and_the_file(tmp_path, capsys, change,
                                                                     key, where):
    path = write_table(tmp_path, GOOD.replace('title = "tiny"', 'title = "tiny"\nstatistic = '
                                              '"last"').replace(*change))
    assert reproduce.main([path, '--dry_run']) == 2
    err = capsys.readouterr().err.strip()
    assert f"{path}: unknown key {key!r} in {where}" in err and len(err.splitlines()) == 1, err


def test_every_training_option_of_a_recipe_reaches_the_runs(tmp_path, capsys):
    path = write_table(tmp_path, GOOD.replace('\nepochs = 1\n', '\nepochs = 1\nlr_decay_epochs '
                                              '= "1,2"\nweight_decay = 1e-4\n'))
    assert reproduce.main([path, '--dry_run', '--rows', 'kd', '--trials', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert '--lr_decay_epochs 1,2 --weight_decay 0.0001' in lines[-1], lines


@pytest.mark.parametrize('flags, message', [
    (['--rows', 'kd,ofdd'], "--rows 'ofdd' matches nothing in the table"),
    (['--pairs', 'resnet8:resnet8, resnet8:resnet9'],
     "--pairs 'resnet8:resnet9' matches nothing"),
    (['--extra', '--no_such_flag 3'], "'--no_such_flag' is an option of none of "
                                      "train_teacher.py, train_student.py, transfer_student.py"),
    (['--extra_teacher', '--kd_T 8'], "'--kd_T' is an option of none of train_teacher.py"),
    (['--extra', '--kd_T -8'], 'train_student.py refuses'),
    (['--gpus', '0,1'], '--gpus 0,1: no CUDA GPU is visible here'),
    (['--executor', 'slurm'], "--executor slurm needs SLURM's sbatch")])
def test_bad_selections_flags_and_executors_are_one_line(tmp_path, capsys, flags, message):
    if '--gpus' in flags and torch.cuda.device_count() >= 2:
        pytest.skip('two GPUs are visible')
    save = str(tmp_path / 'save')
    assert reproduce.main([write_table(tmp_path, GOOD), '--save_dir', save] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not os.path.exists(os.path.join(save, 'models'))  # nothing ran


def test_extra_flags_go_to_the_scripts_that_take_them(tmp_path, capsys):
    cifar = GOOD.replace('dataset = "synthetic"\n', '')  # teachers at RepDistiller's path
    path = write_table(tmp_path, cifar.replace('trials = 2', 'trials = 1'))
    assert reproduce.main([path, '--dry_run', '--extra', '--kd_T 8 --epochs 3',
                           '--extra_student', '--nce_k 30']) == 0
    teacher, *students = capsys.readouterr().out.splitlines()
    assert '--epochs 3' in teacher and '--kd_T' not in teacher and '--nce_k' not in teacher
    for line in students:
        assert '--kd_T 8' in line and '--epochs 3' in line and '--nce_k 30' in line, line
        # the students read the teacher the teacher's command writes (3 epochs), not the table's
        assert 'ckpt_epoch_3.pth' in line, line


def test_dry_run_checks_that_each_method_serves_its_pair_before_any_teacher_trains(tmp_path,
                                                                                   capsys):
    table = GOOD.replace('teacher = "resnet8"', 'teacher = "ShuffleV1"').replace(
        '[rows.dkd]\nflags = "--distill dkd"', '[rows.dkd]\nflags = "--distill ofd"')
    save = str(tmp_path / 'save')
    for flags in (['--dry_run'], []):
        assert reproduce.main([write_table(tmp_path, table), '--save_dir', save] + flags) == 2
        err = capsys.readouterr().err.strip()
        assert "row 'dkd', ShuffleV1 -> resnet8: --distill ofd cannot distil ShuffleV1 into " \
               "resnet8" in err and len(err.splitlines()) == 1, err
        assert not os.path.exists(os.path.join(save, 'models'))


def test_dry_run_of_a_table_measured_through_probes_checks_its_pairs(capsys):
    # its distillation runs have no cell of their own (their probes have): the teacher file
    # names the teacher
    assert reproduce.main([os.path.join(REPO, 'tables', 'distillers_transfer.toml'),
                           '--dry_run', '--methods', 'kd,crd']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith('python ') for line in lines)


def finish_all(runs, **changed):
    """Every run finished, its summary recording the options its command parses to (with
    ``changed`` values instead)."""
    for run in runs:
        opt = _parse(os.path.basename(run.argv[0]), run.argv)
        os.makedirs(run.run_dir, exist_ok=True)
        os.makedirs(os.path.dirname(run.done_file), exist_ok=True)
        summary = {'args': {**json.loads(json.dumps(_values(opt))), **changed}, 'last_acc': 40.0,
                   'best_acc': 41.0, 'teacher_acc': 51.0}
        with open(os.path.join(run.run_dir, 'summary.json'), 'w') as f:
            json.dump(summary, f)
        if not os.path.isfile(run.done_file):
            open(run.done_file, 'w').close()


def test_finished_runs_made_with_other_options_are_stale_not_done(tmp_path, capsys):
    path = write_table(tmp_path, GOOD.replace('trials = 2', 'trials = 1'))
    save = str(tmp_path / 'save')
    finish_all(Table(path).runs(save_dir=save))
    assert reproduce.main([path, '--save_dir', save, '--dry_run']) == 0
    assert capsys.readouterr().out == ''  # everything done
    # the table now asks for 2 epochs: the students' 1-epoch runs are stale
    write_table(tmp_path, GOOD.replace('trials = 2', 'trials = 1').replace('\nepochs = 1\n',
                                                                           '\nepochs = 2\n'))
    assert reproduce.main([path, '--save_dir', save, '--dry_run']) == 0
    out = capsys.readouterr().out
    assert out.count('# stale, kept') == 2 and '--epochs 1 (now 2)' in out, out
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    out = capsys.readouterr().out
    assert '| kd | 40.00 | - (0) stale ! |' in out, out
    assert reproduce.main(runner(path, save)[2:]) == 1  # nothing ran: stale runs wait for the user
    out = capsys.readouterr().out
    assert '1 done | 0 running | 0 queued | 0 failed | 0 blocked | 2 stale' in out
    assert 'stale: kd:resnet8:resnet8:1 finished with other options' in out
    assert '--rerun_stale' in out
    # --extra changes them too; --rerun_stale lists them to run again
    assert reproduce.main([path, '--save_dir', save, '--dry_run', '--rerun_stale']) == 0
    assert [line.count('--epochs 2') for line in capsys.readouterr().out.splitlines()] == [1, 1]


def test_a_run_that_exits_0_without_its_result_is_failed_not_relaunched(tmp_path):
    from reproduction.jobs import FAILED, State, failure, statuses
    path = write_table(tmp_path, GOOD.replace('trials = 2', 'trials = 1').replace(
        'dataset = "synthetic"\n', ''))
    runs = Table(path).runs(save_dir=str(tmp_path / 'save'), extra=['--epochs', '2'])
    teacher = runs[0]
    assert teacher.done_file.endswith(os.path.join('resnet8_vanilla', 'ckpt_epoch_2.pth'))
    state = State(str(tmp_path / 'state'))
    state.get(teacher)['exit'] = 0
    assert statuses(runs, state)[teacher.id] == FAILED
    assert failure(teacher, state) == f'exited 0 but wrote no {teacher.done_file}'


def test_report_gives_each_cell_its_status_and_log(tmp_path, capsys):
    from reproduction.jobs import State
    path = write_table(tmp_path, GOOD)
    save = str(tmp_path / 'save')
    runs = {r.id: r for r in Table(path).runs(save_dir=save)}
    for trial in (1, 2):
        fake_summary(runs[f'kd:resnet8:resnet8:{trial}'], 39.0 + trial)
    state = State(os.path.join(save, 'reproduce', 'tiny'))
    state.get(runs['dkd:resnet8:resnet8:1']).update(exit=2, log='logs/dkd_1.log')
    state.get(runs['dkd:resnet8:resnet8:2']).update(exit=130, log='logs/dkd_2.log')
    state.save()
    assert reproduce.main([path, '--save_dir', save, '--report']) == 1  # a cell failed
    out = capsys.readouterr().out
    assert '| kd | 40.00 | 40.50 +- 0.71 (2), +0.50 |' in out, out
    assert '| dkd | 30.00 | - (0) failed: logs/dkd_1.log ! |' in out
    with open(os.path.join(save, 'reproduce', 'tiny', 'report.csv')) as f:
        rows = {r['row']: r for r in csv.DictReader(f)}
    assert rows['kd']['status'] == 'done' and rows['dkd']['status'] == 'failed'
    assert rows['dkd']['logs'] == 'logs/dkd_1.log' and rows['teacher']['status'] == 'done'
    state.get(runs['dkd:resnet8:resnet8:1'])['exit'] = None
    state.save()
    assert reproduce.main([path, '--save_dir', save, '--report']) == 0
    assert '| dkd | 30.00 | - (0) stopped ! |' in capsys.readouterr().out


def test_a_second_invocation_of_a_table_touches_nothing(tmp_path, capsys):
    from core.files import try_lock
    path = write_table(tmp_path, GOOD)
    save = str(tmp_path / 'save')
    folder = os.path.join(save, 'reproduce', 'tiny')
    os.makedirs(folder)
    held = try_lock(os.path.join(folder, '.runner.lock'))  # the other invocation's
    assert reproduce.main([path, '--save_dir', save]) == 2
    held.release()
    err = capsys.readouterr().err.strip()
    assert 'tiny is being run by another invocation right now' in err
    assert len(err.splitlines()) == 1 and os.listdir(folder) == ['.runner.lock']


@pytest.mark.parametrize('executor', ['local', 'submitit_local'])
@pytest.mark.processes
def test_ctrl_c_stops_each_run_once_and_it_saves_its_state(tmp_path, executor, cifar):
    """A Ctrl-C in a terminal reaches the runner's whole process group; the runs, in sessions
    of their own, get one request to stop from the runner and save their state."""
    path = write_table(tmp_path, TRAINED.replace('teacher_epochs = 1', 'teacher_epochs = 3'))
    save = str(tmp_path / 'save')
    teacher = Table(path).runs(save_dir=save)[0]
    log = os.path.join(save, 'reproduce', 'tiny', 'logs', 'teacher_resnet8.log')
    process = subprocess.Popen(runner(path, save, '--data_folder', cifar, '--executor', executor),
                               cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    wait_for(lambda: os.path.isfile(log) and 'epoch   1/3' in open(log).read(), process)
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does
    out = process.communicate(timeout=300)[0]
    assert process.returncode == 130, out
    assert 'stopped: 1 runs saved their state' in out and 'Traceback' not in out, out
    text = open(log).read()
    assert text.count('stopping after this step') == 1 and 'state saved in' in text, text
    assert os.path.isfile(os.path.join(teacher.run_dir, 'ckpt_last.pth')), text
    assert subprocess.run(['pgrep', '-f', teacher.run_dir.split('/save/')[0]],
                          capture_output=True).stdout == b''  # no run left behind
