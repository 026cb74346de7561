"""Exact resume, graceful stops, safe checkpoint writes and clear errors."""
import errno
import os
import signal
import subprocess
import sys

import pytest
import torch

import train_student
import train_teacher
from runs import (FAST, final_state, run_argv, run_folder, signal_after,
                  straight_and_resumed)
from core.checkpoint import load_checkpoint, save_checkpoint
from conftest import REPO



# Stops: mid-epoch (KD), between epochs (CRD: an epoch makes 4 train and 2 test updates, so the
# 5th falls in epoch 1's validation), and inside the init stage of a two-stage method (FSP).
@pytest.mark.parametrize('distill, stop_at, loader', [('kd', 7, 'device'), ('crd', 5, 'device'),
                                                     ('fsp', 3, 'device'), ('kd', 3, 'classic'),
                                                     ('crd', 7, 'classic'),
                                                     ('simkd', 3, 'device'),
                                                     ('dml', 3, 'device'),
                                                     ('rrd', 3, 'classic')])
def test_interrupted_and_resumed_run_is_bit_identical(tiny, monkeypatch, capsys, distill,
                                                      stop_at, loader):
    straight, resumed = straight_and_resumed(tiny, monkeypatch, capsys, distill,
                                             ['--loader', loader], stop_at, f'{distill}_{loader}')
    if distill == 'crd':
        assert 'criterion_kd.contrast.memory_v1' in final_state(resumed)[1]
    if distill == 'rrd':  # the queue (30 slots, batches of 16: it wraps) resumes exactly
        assert 'criterion_kd.queue' in final_state(resumed)[1]


def test_gkls_class_prior_resumes_exactly(tiny, monkeypatch, capsys):
    """Stopped in epoch 2 (its 2nd step), after epoch 1's teacher distributions became the
    class prior the pair weights read (GI on): the prior and epoch 2's sums so far resume."""
    straight, resumed = straight_and_resumed(
        tiny, monkeypatch, capsys, 'gkl', ['--ikl_gi', '1', '--gkl_gamma', '0.5',
                                           '--ikl_warmup', '1'], 8, 'gkl')
    state = final_state(resumed)[1]
    assert not torch.allclose(state['prior.prior'], torch.full_like(state['prior.prior'], 0.01))


def test_tekaps_noise_resumes_exactly(tiny, monkeypatch, capsys):
    """Stopped inside an epoch: the resumed run draws TeKAP's noisy teachers as the straight
    run does (the checkpoint keeps the generator's state)."""
    straight_and_resumed(tiny, monkeypatch, capsys, 'tekap', [], 7, 'tekap')


def test_teacher_run_resumes_from_a_given_checkpoint(tiny, monkeypatch, tmp_path, capsys):
    data = tiny[0]
    argv = ['--model', 'resnet8', '--data_folder', data, '--epochs', '2'] + FAST
    assert train_teacher.main(argv + ['--save_dir', str(tmp_path / 'a')]) == 0
    signal_after(monkeypatch, 2, signal.SIGINT)
    assert train_teacher.main(argv + ['--save_dir', str(tmp_path / 'b')]) == 130
    monkeypatch.undo()
    run = 'models/resnet8_cifar100_lr_0.05_decay_0.0005_trial_0'
    last = str(tmp_path / 'b' / run / 'ckpt_last.pth')
    assert load_checkpoint(last)['step'] == 2
    assert train_teacher.main(argv + ['--save_dir', str(tmp_path / 'b'), '--resume', last]) == 0
    a = load_checkpoint(str(tmp_path / 'a' / run / 'resnet8_last.pth'))['model']
    b = load_checkpoint(str(tmp_path / 'b' / run / 'resnet8_last.pth'))['model']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_new_run_never_overwrites_an_existing_one(tiny, tmp_path, capsys):
    argv = run_argv(tiny, str(tmp_path), 'kd', ['--epochs', '1'])
    assert train_student.main(argv) == 0
    run = os.path.join(str(tmp_path), 'student_model', os.listdir(tmp_path / 'student_model')[0])
    before = open(os.path.join(run, 'resnet8_best.pth'), 'rb').read()
    assert train_student.main(argv) == 2
    assert 'already holds checkpoints' in capsys.readouterr().err
    assert open(os.path.join(run, 'resnet8_best.pth'), 'rb').read() == before


def test_non_finite_loss_names_term_epoch_and_step(tiny, tmp_path, monkeypatch, capsys):
    from distiller_zoo.modifiers import LogitKL
    calls = {'n': 0}
    original = LogitKL.__call__

    def kl(self, y_s, y_t):  # the -a term's KL
        calls['n'] += 1
        value = original(self, y_s, y_t)
        return value * float('nan') if calls['n'] == 6 else value  # 2nd epoch, 2nd step
    monkeypatch.setattr(LogitKL, '__call__', kl)
    assert train_student.main(run_argv(tiny, str(tmp_path), 'kd')) == 2
    err = capsys.readouterr().err
    assert 'non-finite at train epoch 2, step 1 (term: div)' in err  # exact step, checked lazily
    run = os.path.join(str(tmp_path), 'student_model', os.listdir(tmp_path / 'student_model')[0])
    assert load_checkpoint(os.path.join(run, 'ckpt_last.pth'))['epoch'] == 2  # epoch 1 kept


def test_max_grad_norm_clips(tiny, tmp_path, monkeypatch):
    norms = []
    original = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return original(params, max_norm, *args, **kwargs)
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', clip)
    argv = run_argv(tiny, str(tmp_path), 'kd', ['--epochs', '1', '--max_grad_norm', '0.5'])
    assert train_student.main(argv) == 0
    assert norms == [0.5] * 4


def test_kill_during_checkpoint_write_keeps_previous_file(tmp_path):
    path = tmp_path / 'ckpt_last.pth'
    save_checkpoint({'model': {'w': torch.ones(3)}, 'epoch': 1}, str(path))
    child = f'''
import os, signal, torch
from core.checkpoint import save_checkpoint
def dying_save(obj, f):
    f.write(b'PK partial zip header, then the process dies')
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
save_checkpoint({{'model': {{'w': torch.zeros(3)}}, 'epoch': 2}}, {str(path)!r})
'''
    result = subprocess.run([sys.executable, '-c', child], cwd=REPO, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(str(path))
    assert ckpt['epoch'] == 1 and torch.equal(ckpt['model']['w'], torch.ones(3))


def test_not_a_checkpoint_and_truncated_files(tmp_path):
    from core.util import UserError
    plain = tmp_path / 'tensor.pth'
    torch.save(torch.ones(2), plain)
    with pytest.raises(UserError, match="not a model checkpoint"):
        load_checkpoint(str(plain))
    good = tmp_path / 'good.pth'
    save_checkpoint({'model': {'w': torch.ones(1000)}}, str(good))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(UserError, match='truncated, corrupt'):
        load_checkpoint(str(truncated))


def test_unsafe_pickle_is_refused(tmp_path):
    from core.util import UserError

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))
    path = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'x': Evil()}, path)
    with pytest.raises(UserError, match='cannot read checkpoint'):
        load_checkpoint(str(path))


def test_unwritable_save_dir(tiny, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    argv = ['--model', 'resnet8', '--data_folder', tiny[0], '--save_dir', str(blocker)] + FAST
    assert train_teacher.main(argv) == 2
    assert 'choose a writable --save_dir' in capsys.readouterr().err


# -- resuming the right run, and only it ---------------------------------------------------------
def interrupted_run(tiny, monkeypatch, save, distill='kd', extra=()):
    """A run under ``save`` stopped by SIGTERM in its second epoch; returns its ckpt_last.pth."""
    signal_after(monkeypatch, 6)
    assert train_student.main(run_argv(tiny, save, distill, list(extra))) == 130
    monkeypatch.undo()
    return os.path.join(run_folder(save), 'ckpt_last.pth')


def snapshot(folder):
    return {name: open(os.path.join(folder, name), 'rb').read() for name in os.listdir(folder)}


def test_resume_path_into_a_finished_run_is_refused(tiny, monkeypatch, tmp_path, capsys):
    save = str(tmp_path)
    assert train_student.main(run_argv(tiny, save, 'kd', ['--trial', 'fresh'])) == 0
    fresh = run_folder(save)
    before = snapshot(fresh)
    other = interrupted_run(tiny, monkeypatch, str(tmp_path / 'other'), extra=['--trial', 'x'])
    argv = run_argv(tiny, save, 'kd', ['--trial', 'fresh', '--resume', other])
    assert train_student.main(argv) == 2
    assert 'already holds checkpoints of another run' in capsys.readouterr().err
    assert snapshot(fresh) == before


def test_resume_checks_method_and_notes_changed_options(tiny, monkeypatch, tmp_path, capsys):
    last = interrupted_run(tiny, monkeypatch, str(tmp_path / 'kd'))
    capsys.readouterr()
    at = str(tmp_path / 'at')
    assert train_student.main(run_argv(tiny, at, 'at', ['--resume', last])) == 2
    err = capsys.readouterr().err
    assert '--distill is at here, kd in the checkpoint' in err
    assert not os.path.exists(at)  # refused before anything was created

    argv = run_argv(tiny, str(tmp_path / 'kd'), 'kd', ['--resume', 'auto', '--seed', '99',
                                                            '--learning_rate', '0.5'])
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'note: --seed is 99 here, 3 in the checkpoint; using 3' in out
    assert 'note: --learning_rate is 0.5 here, 0.05 in the checkpoint; using 0.5' in out
    assert load_checkpoint(last)['opt']['seed'] == 3


def test_resume_auto_without_a_run_and_on_a_finished_run(tiny, tmp_path, capsys):
    save = str(tmp_path)
    argv = run_argv(tiny, save, 'kd', ['--epochs', '1', '--resume', 'auto'])
    assert train_student.main(argv) == 0
    assert 'found no earlier run' in capsys.readouterr().out
    before = snapshot(run_folder(save))
    assert train_student.main(argv) == 0
    assert 'already finished its 1 epochs; nothing to do' in capsys.readouterr().out
    assert snapshot(run_folder(save)) == before


# -- a full disk ----------------------------------------------------------------------------------
def test_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_temp_file(
        tiny, monkeypatch, tmp_path, capsys):
    import core.checkpoint
    original, calls = torch.save, {'n': 0}

    def save_on_full_disk(obj, f):
        calls['n'] += 1
        if calls['n'] < 4:  # epoch 1: best, ckpt_epoch_1, ckpt_last; then the disk is full
            return original(obj, f)
        f.write(b'PK partial')
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(core.checkpoint.torch, 'save', save_on_full_disk)
    assert train_student.main(run_argv(tiny, str(tmp_path), 'kd')) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: the disk is full')
    run = run_folder(str(tmp_path))
    assert f"'{os.path.join(run, 'ckpt_last.pth')}' (the newest checkpoint) is intact" in err
    assert not [name for name in os.listdir(run) if name.endswith('.tmp')]
    monkeypatch.undo()
    assert load_checkpoint(os.path.join(run, 'ckpt_last.pth'))['epoch'] == 2


def test_torch_write_failure_on_a_full_disk(tmp_path):
    from core.util import UserError
    import core.checkpoint

    def failing_save(obj, f):
        raise RuntimeError('[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed '
                           'writing file data/0: file write failed')
    path = str(tmp_path / 'new.pth')
    original = core.checkpoint.torch.save
    core.checkpoint.torch.save = failing_save
    try:
        with pytest.raises(UserError, match='disk is full.*no checkpoint was written before'):
            save_checkpoint({'model': {}}, path)
    finally:
        core.checkpoint.torch.save = original
    assert os.listdir(tmp_path) == []


# -- bad inputs create nothing ----------------------------------------------------------------------
@pytest.mark.parametrize('flags, message', [
    (['--distill', 'fsp', '--model_s', 'vgg8'], 'differ in number'),
    (['--distill', 'hint', '--hint_layer', '4'], '--hint_layer 4 is not a feature map'),
    (['--data_folder', 'MISSING'], 'downloading it failed'),
])
def test_rejected_runs_leave_no_folders(tiny, tmp_path, capsys, flags, message):
    flags = [str(tmp_path / 'nodata') if f == 'MISSING' else f for f in flags]
    save = str(tmp_path / 'save')
    argv = run_argv(tiny, save, 'kd')
    for i in range(0, len(flags), 2):  # the flag's value replaces the default one
        if flags[i] in argv:
            argv[argv.index(flags[i]) + 1] = flags[i + 1]
        else:
            argv += flags[i:i + 2]
    assert train_student.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err and err.count('\n') == 1
    assert not os.path.exists(save) and not os.path.exists(tmp_path / 'nodata')
