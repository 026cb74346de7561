"""Whole runs in tests: a signal during the n-th step, a run's folder, metrics and final state,
a run straight through beside the same run stopped and resumed, and runs under torchrun."""
import json
import os
import signal
import subprocess
import sys

import torch

import helper.loops
import train_student
from conftest import REPO, student_argv
from core.checkpoint import load_checkpoint

# The runs' common flags: small batches, no loader processes, a fixed seed, every checkpoint.
FAST = ['--batch_size', '16', '--num_workers', '0', '--seed', '3', '--save_freq', '1']


def signal_after(monkeypatch, n_updates, sig=signal.SIGTERM):
    """Deliver a real signal to this process during the n-th step-statistics update."""
    calls = {'n': 0}
    original = helper.loops.EpochStats.update

    def update(self, *args, **kwargs):
        calls['n'] += 1
        if calls['n'] == n_updates:
            os.kill(os.getpid(), sig)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(helper.loops.EpochStats, 'update', update)


def run_folder(save):
    folder = os.path.join(save, 'student_model')
    return os.path.join(folder, os.listdir(folder)[0])


def metric_records(save):
    """metrics.jsonl of the run under ``save``, without its timings."""
    with open(os.path.join(run_folder(save), 'metrics.jsonl')) as f:
        return [{k: v for k, v in json.loads(line).items()
                 if k not in ('epoch_seconds', 'images_per_second')} for line in f]


def final_state(save):
    folder = os.path.join(save, 'student_model')
    run = os.path.join(folder, os.listdir(folder)[0])
    last_weights = next(n for n in os.listdir(run)
                        if n.endswith('_last.pth') and n != 'ckpt_last.pth')
    ckpt = load_checkpoint(os.path.join(run, last_weights))
    last = load_checkpoint(os.path.join(run, 'ckpt_last.pth'))
    return ckpt['model'], last.get('method_state', {}), last['optimizer'], last.get('peer', {})


def torchrun(tmp_path, script, args, dump):
    os.makedirs(dump, exist_ok=True)
    env = dict(os.environ, KD_TEST_DUMP=dump, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
           '2', os.path.join(REPO, 'tests', 'ddp_worker.py'), script] + args
    result = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Grad strides do not match' not in result.stderr  # DDP's noise on CPU processes
    return result


def same_weights(dump):
    a = torch.load(os.path.join(dump, 'rank0.pt'))
    b = torch.load(os.path.join(dump, 'rank1.pt'))
    params = [k for k in a if 'running' not in k and 'num_batches' not in k]
    return all(torch.equal(a[k], b[k]) for k in params)


def run_argv(tiny, save, distill, extra=()):
    return student_argv(*tiny[:2], save, '--epochs', '3', '--init_epochs', '2', '--nce_k', '30',
                        *FAST, *extra, distill=distill)


def straight_and_resumed(tiny, monkeypatch, capsys, distill, flags, stop_at, tag):
    """A run straight through, and the same run stopped by a signal at the ``stop_at``-th step
    update and resumed; checks they end in the same state with the same figures and returns
    their save folders."""
    root = tiny[2]
    straight = str(root / f'straight_{tag}')
    assert train_student.main(run_argv(tiny, straight, distill, flags)) == 0

    resumed = str(root / f'resumed_{tag}')
    signal_after(monkeypatch, stop_at)
    assert train_student.main(run_argv(tiny, resumed, distill, flags)) == 130
    err = capsys.readouterr().err
    assert 'SIGTERM: stopping after this step' in err and '--resume auto' in err
    monkeypatch.undo()
    assert train_student.main(run_argv(tiny, resumed, distill,
                                           flags + ['--resume', 'auto'])) == 0
    assert 'resuming' in capsys.readouterr().out

    for a, b in zip(final_state(straight), final_state(resumed)):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
    # The interrupted epoch's figures cover all its steps, before and after the stop.
    assert metric_records(straight) == metric_records(resumed)
    return straight, resumed
