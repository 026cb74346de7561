"""Shared stores, run folders, resume and leftovers: what concurrent, repeated or interrupted
runs may and may not do to each other (issue 19)."""
import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval_student
import helper.ckd
import helper.teacher_cache
import train_student
import transfer_student
from conftest import REPO, student_argv, write_cifar100
from core.checkpoint import load_checkpoint
from core.files import try_lock
from models import get_model
from scripts import summarize
from runs import metric_records, run_folder, signal_after

FAST = ['--batch_size', '16', '--num_workers', '0', '--seed', '11', '--save_freq', '1',
        '--model_s', 'resnet8']


def argv(tiny, save, *extra, distill='kd', epochs=2):
    return student_argv(*tiny[:2], save, '--epochs', str(epochs), *FAST, *extra,
                        distill=distill)


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    return err


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# -- 1. one store, built once, whoever asks for it ------------------------------------------------
@pytest.mark.processes
def test_two_concurrent_runs_build_one_store_and_train_alike(tmp_path):
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=512, n_test=16)  # a build long enough for the runs to overlap
    teacher = tmp_path / 'resnet8_vanilla' / 'ckpt.pth'
    teacher.parent.mkdir()
    torch.save({'model': get_model('resnet8', 100).state_dict()}, teacher)
    save = str(tmp_path / 'save')

    def start(trial):
        cmd = [sys.executable, 'train_student.py', '--path_t', str(teacher), '--data_folder',
               data, '--save_dir', save, '--epochs', '2', '--teacher_cache', '2', '--trial',
               trial] + FAST
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    runs = [start('a'), start('b')]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    out = ''.join(o for o, _ in outputs)
    assert out.count('teacher cache: running the teacher') == 1  # the other waited or reused
    stores = os.path.join(save, 'teacher_cache')
    assert [n for n in os.listdir(stores) if not n.endswith('.lock')] and not [
        n for n in os.listdir(stores) if '.partial' in n]
    weights = [load_checkpoint(os.path.join(save, 'student_model', run, 'resnet8_last.pth'))
               for run in sorted(os.listdir(os.path.join(save, 'student_model')))]
    assert all(torch.equal(weights[0]['model'][k], weights[1]['model'][k])
               for k in weights[0]['model'])


@pytest.mark.processes
def test_a_run_waits_for_a_store_another_process_is_building(tiny, tmp_path):
    save = str(tmp_path / 'save')
    key = helper.teacher_cache.store_folder(
        train_student.parse_option(argv(tiny, save, '--teacher_cache', '2')), 11,
        helper.ckd.data_digest(*_train_arrays(tiny[0])))
    os.makedirs(os.path.dirname(key))
    lock = try_lock(f'{key}.lock')  # another process is building
    cmd = [sys.executable, 'train_student.py'] + argv(tiny, save, '--teacher_cache', '2')
    run = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in run.stdout:
        lines.append(line)
        if 'waiting for it' in line:
            lock.release()  # the other build ends (without a store): this run builds it
            break
    rest, _ = run.communicate(timeout=300)
    assert run.returncode == 0 and 'another run is building' in ''.join(lines)
    assert 'teacher cache: running the teacher' in rest


def _train_arrays(data):
    from dataset import DATASETS
    train = DATASETS['cifar100'].splits(data, ('train',))[0]
    return train.images, train.targets


# -- 2. the store is keyed by the data ------------------------------------------------------------
def test_the_store_is_keyed_by_the_training_data(tiny, tmp_path, capsys):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, '--teacher_cache', '2', '--trial', 'a')) == 0
    other = str(tmp_path / 'other')  # the same size, other images
    write_cifar100(other, n_train=48, n_test=16, seed=1)
    flags = argv(tiny, save, '--teacher_cache', '2', '--trial', 'b')
    flags[flags.index('--data_folder') + 1] = other
    assert train_student.main(flags) == 0
    assert capsys.readouterr().out.count('teacher cache: running the teacher') == 2
    stores = [n for n in os.listdir(os.path.join(save, 'teacher_cache')) if '.' not in n]
    assert len(stores) == 2


def test_a_store_of_other_shapes_is_one_line(tiny, tmp_path, capsys):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, '--teacher_cache', '2', '--trial', 'a')) == 0
    (store,) = [os.path.join(save, 'teacher_cache', n)
                for n in os.listdir(os.path.join(save, 'teacher_cache'))]
    np.save(os.path.join(store, 'logits.npy'), np.zeros((2, 40, 100), np.float32))
    capsys.readouterr()
    assert train_student.main(argv(tiny, save, '--teacher_cache', '2', '--trial', 'b')) == 2
    assert 'delete the folder to build it again' in one_line_error(capsys)
    assert listing(os.path.join(save, 'student_model')) == [os.path.basename(
        run_folder(save))]  # the refused run left no folder


# -- 3. one run per folder --------------------------------------------------------------------------
def test_a_second_run_into_a_folder_in_use_stops_at_once(tiny, tmp_path, capsys):
    save = str(tmp_path / 'save')
    flags = argv(tiny, save, '--epochs', '1')
    assert train_student.main(flags + ['--trial', 'probe']) == 0  # learn the folder's name
    folder = run_folder(save).replace('_probe', '_busy')
    os.makedirs(folder)
    holder = try_lock(os.path.join(folder, '.lock'))  # a run that started a second ago
    capsys.readouterr()
    assert train_student.main(flags + ['--trial', 'busy', '--seed', '12']) == 2
    assert 'another run is writing into' in one_line_error(capsys)
    assert listing(folder) == ['.lock']  # nothing written, nothing removed
    holder.release()
    assert train_student.main(flags + ['--trial', 'busy']) == 0  # a lock left unheld is no lock
    assert '.lock' not in listing(folder) and 'summary.json' in listing(folder)


# -- 4. experiments, not methods, are grouped -------------------------------------------------------
def summary_run(folder, name, **args):
    run = folder / name
    run.mkdir(parents=True)
    base = {'distill': 'kd', 'alpha': 0.9, 'dataset': 'cifar100', 'trial': name, 'seed': 1,
            'ckd': None, 'teacher_cache': None}
    (run / 'summary.json').write_text(json.dumps({
        'args': {**base, **args}, 'teacher': 'resnet32x4', 'student': 'resnet8x4',
        'last_acc': float(len(name)), 'best_acc': 1.0, 'teacher_acc': 79.0}))


def test_summarize_keeps_ckd_cache_and_method_options_apart(tmp_path, capsys):
    runs = tmp_path / 'student_model'
    summary_run(runs, 'kd1')
    summary_run(runs, 'kd22', seed=2, amp='bf16')  # a second trial; another amp is noted
    summary_run(runs, 'ckd', ckd='ckd')
    summary_run(runs, 'clean', ckd='clean')
    summary_run(runs, 'cache', teacher_cache=2)
    summary_run(runs, 'f2', distill='simkd', alpha=0.0, factor=2)
    summary_run(runs, 'f3', distill='simkd', alpha=0.0, factor=3)
    assert summarize.main([str(runs), '--metric', 'last']) == 0
    out = capsys.readouterr().out
    cells = [line.strip('| ').split(' | ') for line in out.splitlines() if line.startswith('| ')]
    rows = dict(cells[2:])  # after the header and its rule
    assert rows['KD (ckd=-, teacher_cache=-)'] == '3.50 ± 0.71'  # kd1 and kd22: two trials
    assert rows['KD (ckd=ckd, teacher_cache=-)'] == '3.00'
    assert rows['KD (ckd=clean, teacher_cache=-)'] == '5.00'
    assert rows['KD (ckd=-, teacher_cache=2)'] == '5.00'
    assert rows['SimKD (factor=2)'] == '2.00' and rows['SimKD (factor=3)'] == '2.00'
    assert '7 runs, 6 groups' in out
    assert 'differ in --amp: -, bf16' in out


def test_summarize_survives_half_written_files(tmp_path, capsys):
    runs = tmp_path / 'student_model'
    summary_run(runs, 'good')
    (runs / 'good' / 'metrics.jsonl').write_text('{"epoch": 1, "test_top1": 5.0}\n{"epo')
    (runs / 'writing').mkdir()
    (runs / 'writing' / 'summary.json').write_text('{"args": {"distill": "kd"')
    assert summarize.main([str(runs), '--plot', str(tmp_path / 'p.png')]) == 0
    captured = capsys.readouterr()
    assert 'skipped' in captured.err and 'Traceback' not in captured.err
    assert '1 runs, 1 groups' in captured.out
    assert summarize.main([str(runs), '--plot', str(tmp_path / 'missing' / 'p.png')]) == 2
    assert 'does not exist' in one_line_error(capsys)


def test_one_epoch_curves_are_points_on_a_sensible_axis(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    closed = []
    monkeypatch.setattr(plt, 'close', closed.append)
    runs = tmp_path / 'student_model'
    summary_run(runs, 'one')
    (runs / 'one' / 'metrics.jsonl').write_text('{"epoch": 1, "test_top1": 5.0}\n')
    summarize.plot_curves(summarize.read_runs(str(runs)), str(tmp_path / 'p.png'))
    (ax,) = [ax for ax in closed[0].axes if ax.get_visible()]
    assert ax.get_xlim() == (0.5, 1.5)
    assert [line.get_marker() for line in ax.get_lines()] == ['o']


def test_folder_names_tell_method_options_and_probed_checkpoints_apart(tiny, tmp_path):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, '-f', '4', distill='simkd', epochs=1)) == 0
    assert run_folder(save).endswith('_r:0.0_a:0.0_b:1.0_1_factor:4')
    student = os.path.join(run_folder(save), 'resnet8_best.pth')
    stl = str(tmp_path / 'stl')
    from conftest import write_stl10
    write_stl10(stl, n_train=16, n_test=8)
    assert transfer_student.main(['--path_s', student, '--dataset', 'stl10', '--data_folder',
                                  stl, '--save_dir', save, '--epochs', '1', '--num_workers',
                                  '0', '--batch_size', '8']) == 0
    (probe,) = os.listdir(os.path.join(save, 'transfer'))
    assert probe.endswith('_factor:4_best_to_stl10_trial_1')
    summary = json.load(open(os.path.join(save, 'transfer', probe, 'summary.json')))
    assert summary['probed'] == 'best' and summary['source_args']['factor'] == 4


# -- 5. resume refuses another experiment ------------------------------------------------------------
def interrupted(tiny, monkeypatch, save, *extra, distill='kd'):
    signal_after(monkeypatch, 4)  # teacher validation 2, then epoch 1's second step
    assert train_student.main(argv(tiny, save, *extra, distill=distill)) == 130
    monkeypatch.undo()
    return os.path.join(run_folder(save), 'ckpt_last.pth')


def test_resume_refuses_a_replaced_teacher_file(tiny, monkeypatch, tmp_path, capsys):
    data, teacher, _ = tiny
    save = str(tmp_path / 'save')
    interrupted(tiny, monkeypatch, save)
    replaced = tmp_path / 'resnet8_vanilla' / 'ckpt.pth'
    replaced.parent.mkdir()
    torch.save({'model': get_model('resnet8', 100).state_dict()}, replaced)
    flags = argv(tiny, save, '--resume', 'auto')
    flags[flags.index('--path_t') + 1] = str(replaced)
    capsys.readouterr()
    assert train_student.main(flags) == 2
    err = one_line_error(capsys)
    assert 'belongs to another experiment' in err and 'the teacher is sha256' in err


def test_resume_refuses_changed_ckd_rounds(tiny, monkeypatch, tmp_path, capsys):
    save = str(tmp_path / 'save')
    last = interrupted(tiny, monkeypatch, save, '--ckd', 'ckd', '--ckd_rounds', '2',
                       '--ckd_delta', '50')
    capsys.readouterr()
    assert train_student.main(argv(tiny, save, '--ckd', 'ckd', '--ckd_rounds', '2',
                                   '--ckd_delta', '25', '--resume', last)) == 2
    assert '--ckd_delta is 25 here, 50 in the checkpoint' in one_line_error(capsys)


def test_a_dml_peer_from_scratch_and_from_a_file_never_share_a_run(tiny, monkeypatch, tmp_path,
                                                                   capsys):
    data, teacher, _ = tiny
    save = str(tmp_path / 'save')
    last = interrupted(tiny, monkeypatch, save, distill='dml')
    scratch = ['--distill', 'dml', '--model_t', 'resnet8', '--data_folder', data, '--save_dir',
               save, '--epochs', '2'] + FAST
    capsys.readouterr()
    assert train_student.main(scratch + ['--resume', last]) == 2
    assert 'the teacher is none (trained from scratch) here' in one_line_error(capsys)
    assert train_student.main(scratch + ['--resume', 'auto']) == 0  # a folder of its own
    assert len(os.listdir(os.path.join(save, 'student_model'))) == 2
    assert any(n.startswith('S:resnet8_T:resnet8_scratch_')
               for n in os.listdir(os.path.join(save, 'student_model')))


def test_a_probe_resumed_from_another_backbone_is_refused(tiny, monkeypatch, tmp_path, capsys):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, epochs=1)) == 0
    run = run_folder(save)
    from conftest import write_stl10
    stl = str(tmp_path / 'stl')
    write_stl10(stl, n_train=16, n_test=8)
    probe = ['--dataset', 'stl10', '--data_folder', stl, '--save_dir', save, '--epochs', '2',
             '--num_workers', '0', '--batch_size', '8']
    signal_after(monkeypatch, 1)
    assert transfer_student.main(['--path_s', os.path.join(run, 'resnet8_best.pth')]
                                 + probe) == 130
    monkeypatch.undo()
    (folder,) = os.listdir(os.path.join(save, 'transfer'))
    last = os.path.join(save, 'transfer', folder, 'ckpt_last.pth')
    capsys.readouterr()
    assert transfer_student.main(['--path_s', os.path.join(run, 'ckpt_epoch_1.pth'),
                                  '--resume', last] + probe) == 2
    assert 'the probed checkpoint (--path_s) is sha256' in one_line_error(capsys)


# -- 6, 9, 12. full disks, stops and failures leave nothing half-made ------------------------------
def test_too_little_space_for_the_store_is_said_before_building(tiny, tmp_path, monkeypatch,
                                                                capsys):
    import shutil
    usage = shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: usage._replace(free=1000))
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, '--teacher_cache', '2')) == 2
    assert 'only 0.0 MiB are free' in one_line_error(capsys)
    assert listing(os.path.join(save, 'teacher_cache')) == []
    assert listing(os.path.join(save, 'student_model')) == []
    assert listing(os.path.join(save, 'student_tensorboards')) == []


def test_a_disk_filling_up_during_the_build_is_one_line(tiny, tmp_path, monkeypatch, capsys):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'posix_fallocate', full)
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, '--teacher_cache', '2')) == 2
    assert 'the disk filled up while the teacher cache was built' in one_line_error(capsys)
    assert listing(os.path.join(save, 'teacher_cache')) == []
    assert listing(os.path.join(save, 'student_model')) == []


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_build_keeps_nothing_and_says_so(tiny, tmp_path, monkeypatch, capsys,
                                                            sig):
    original = helper.teacher_cache.teacher_outputs
    calls = {'n': 0}

    def outputs(*args):
        calls['n'] += 1
        if calls['n'] == 2:  # the first round (the first call sizes the store)
            os.kill(os.getpid(), sig)
        return original(*args)
    monkeypatch.setattr(helper.teacher_cache, 'teacher_outputs', outputs)
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, '--teacher_cache', '2')) == 130
    err = capsys.readouterr().err
    assert 'stopped while building the teacher cache; nothing of it is kept' in err
    assert 'checkpoints are kept' not in err and 'run the same command again' in err
    assert listing(os.path.join(save, 'teacher_cache')) == []
    assert listing(os.path.join(save, 'student_model')) == []


def test_a_run_failing_in_its_first_epoch_leaves_no_folders(tiny, tmp_path, monkeypatch,
                                                             capsys):
    from distiller_zoo.modifiers import LogitKL
    original = LogitKL.__call__  # the -a term's KL
    monkeypatch.setattr(LogitKL, '__call__',
                        lambda self, y_s, y_t: original(self, y_s, y_t) * float('nan'))
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save)) == 2
    err = one_line_error(capsys)
    assert 'no checkpoint had been written yet' in err and 'last good' not in err
    assert listing(os.path.join(save, 'student_model')) == []
    assert listing(os.path.join(save, 'student_tensorboards')) == []


def test_resuming_after_a_full_disk_records_each_epoch_once(tiny, tmp_path, monkeypatch,
                                                             capsys):
    import core.checkpoint
    original, calls = torch.save, {'n': 0}

    def save_on_full_disk(obj, f):
        calls['n'] += 1
        if calls['n'] in (4, 5):  # epoch 2's best, then its ckpt_epoch_2: the disk is full
            raise OSError(errno.ENOSPC, 'No space left on device')
        return original(obj, f)
    monkeypatch.setattr(core.checkpoint.torch, 'save', save_on_full_disk)
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, epochs=3)) == 2
    monkeypatch.undo()
    assert train_student.main(argv(tiny, save, '--resume', 'auto', epochs=3)) == 0
    assert [r['epoch'] for r in metric_records(save)] == [1, 2, 3]


# -- 7, 8, 10, 13. checks before any work, one line each --------------------------------------------
@pytest.mark.parametrize('flags, message', [
    (['--seed', '4294967296'], 'argument --seed: must be an integer from 0 to 4294967295'),
    (['--trial', '../../../escaped'], 'must not contain a path separator'),
    (['--trial', 'a/b'], 'must not contain a path separator'),
    (['--dataset', 'imagenet', '--ckd', 'ckd'], '--ckd works on 32x32 data sets'),
    (['--dataset', 'imagenet', '--teacher_cache', '2'], '--teacher_cache works on 32x32'),
    (['--teacher_cache', '100000'], 'give at most --teacher_cache 2'),
    (['--distill', 'rrd', '--nce_k', '1'], 'makes its loss exactly 0'),
])
def test_impossible_inputs_stop_before_any_work(tiny, tmp_path, capsys, flags, message):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save) + flags) == 2
    assert message in one_line_error(capsys)
    assert not os.path.exists(save)


def test_a_short_rrd_queue_is_explained(tiny, tmp_path, capsys):
    assert train_student.main(argv(tiny, str(tmp_path), '--nce_k', '8', distill='rrd',
                                   epochs=1)) == 0
    assert 'shorter than a (global) batch (16)' in capsys.readouterr().out


def test_ckd_rounds_go_to_the_save_folder_when_the_teachers_is_read_only(tiny, tmp_path,
                                                                          monkeypatch, capsys):
    teacher_folder = os.path.dirname(os.path.abspath(tiny[1]))
    real = os.access
    monkeypatch.setattr(os, 'access', lambda path, mode: False if os.path.abspath(path) ==
                        teacher_folder else real(path, mode))
    save = str(tmp_path / 'save')  # flags of their own: no rounds of them exist yet
    assert train_student.main(argv(tiny, save, '--ckd', 'ckd', '--ckd_rounds', '1',
                                   '--ckd_delta', '100', epochs=1)) == 0
    assert "the teacher's folder is read-only" in capsys.readouterr().out
    assert [n for n in os.listdir(os.path.join(save, 'ckd_rounds')) if n.endswith('.ckd.pt')]


def test_architecture_mismatches_name_what_the_weights_are(tiny, tmp_path, capsys):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, distill='simkd', epochs=1)) == 0
    student = os.path.join(run_folder(save), 'resnet8_last.pth')
    assert eval_student.main(['--path', student, '--model', 'resnet20', '--data_folder',
                              tiny[0], '--num_workers', '0']) == 2
    err = one_line_error(capsys)
    assert 'does not match resnet20' in err and 'the weights look like resnet8' in err
    assert 'Pass the right --model' in err
    assert transfer_student.main(['--path_s', student, '--model_s', 'wrn_16_2', '--data_folder',
                                  tiny[0], '--save_dir', save]) == 2
    assert 'the weights look like resnet8' in one_line_error(capsys)


def test_eval_student_evaluates_a_dml_peer_too(tiny, tmp_path, capsys):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, distill='dml', epochs=1)) == 0
    capsys.readouterr()
    assert eval_student.main(['--path', os.path.join(run_folder(save), 'resnet8_last.pth'),
                              '--data_folder', tiny[0], '--num_workers', '0']) == 0
    out = capsys.readouterr().out
    assert out.startswith('resnet8 on cifar100 test') and '\npeer resnet8 on cifar100 test' in out


def test_resume_path_into_a_new_trial_names_the_finished_run(tiny, tmp_path, capsys):
    save = str(tmp_path / 'save')
    assert train_student.main(argv(tiny, save, epochs=1)) == 0
    last = os.path.join(run_folder(save), 'ckpt_last.pth')
    capsys.readouterr()
    assert train_student.main(argv(tiny, save, '--trial', 'new', '--resume', last,
                                   epochs=1)) == 0
    out = capsys.readouterr().out
    assert f"the run in '{os.path.dirname(last)}' already finished" in out


def test_a_cached_run_prints_no_numpy_warning(tiny, tmp_path, recwarn):
    assert train_student.main(argv(tiny, str(tmp_path), '--teacher_cache', '2')) == 0
    assert not [w for w in recwarn if 'not writable' in str(w.message)]


def test_the_teacher_file_and_the_training_set_are_hashed_once_per_start(tiny, tmp_path,
                                                                          monkeypatch):
    """A run with CKD's control and the teacher-output cache names the teacher file and the
    training set in several places; each is read through once."""
    import hashlib
    import dataset.base
    from core import files
    files._digest.cache_clear()
    reads, digests = [], []
    original_file, original_data = hashlib.file_digest, dataset.base.data_digest
    monkeypatch.setattr(hashlib, 'file_digest', lambda f, *a: reads.append(f.name) or
                        original_file(f, *a))
    monkeypatch.setattr(dataset.base, 'data_digest', lambda *a: digests.append(1) or
                        original_data(*a))
    assert train_student.main(argv(tiny, str(tmp_path / 'save'), '--teacher_cache', '1',
                                   '--ckd', 'clean', '--ckd_rounds', '1')) == 0
    assert reads.count(os.path.realpath(tiny[1])) == 1 and len(digests) == 1, (reads, digests)
