"""Check the toolbox on a GPU in a few minutes: every method for one short epoch on the synthetic
data set with --amp bf16 --channels_last (a few also with --compile), a two-process NCCL run
when two GPUs are visible (else one process through torchrun), the DALI loader when it is
installed, and scripts/benchmark.py. One PASS/FAIL line per check, then the throughput
figures; each check's output is in its log.

    bash scripts/gpu_check.sh            # everything
    bash scripts/gpu_check.sh --list     # what it would run (works without a GPU)
"""
import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

COMPILED = ('kd', 'dkd')  # methods also checked with --compile (slow to start)
FAST = ['--dataset', 'synthetic', '--epochs', '1', '--num_workers', '2', '--seed', '0']
SPEED = ['--amp', 'bf16', '--channels_last']


class Check(NamedTuple):
    name: str
    argv: list  # train_student.py's (run in one process with the other methods), or a command
    timeout: int = 300

    @property
    def in_process(self):
        return self.argv[0] == 'train_student.py' and self.name.startswith('method ')


def methods():
    from distiller_zoo import METHODS, PRESETS
    return [m.names[0] for m in dict.fromkeys(METHODS.values())] + list(PRESETS)


def component_checks():
    """``{label: flags}``: the command lines each component (``helper.components``) asks to be
    checked with, such as a modifier with a method or an optimizer under fp16."""
    from helper.components import COMPONENTS
    return {label: flags for component in COMPONENTS for label, flags in component.checks}


def checks(save, gpus):
    """The checks, in order (the first trains the teacher the others read)."""
    import train_teacher
    common = FAST + ['--save_dir', save]
    teacher_argv = ['train_teacher.py', '--model', 'resnet8'] + common + SPEED
    teacher = os.path.join(train_teacher.run_dir(train_teacher.parse_option(teacher_argv[1:])),
                           'resnet8_last.pth')
    found = [Check('teacher', teacher_argv)]

    def student(name, trial, *more):
        peer = ['--model_t', 'resnet8'] if name == 'dml' else ['--path_t', teacher]
        return (['train_student.py'] + peer + ['--model_s', 'resnet8', '--distill', name,
                                               '--trial', trial] + common + SPEED + list(more))
    for name in methods():
        found.append(Check(f'method {name}', student(name, 'gpu_check')))
        if name in COMPILED:
            found.append(Check(f'method {name} --compile',
                               student(name, 'compiled', '--compile'), timeout=600))
    for label, flags in component_checks().items():
        name = label.split()[0]
        found.append(Check(f'method {label}',
                           student(name, label.replace(' ', '').replace('-', '_'), *flags)))
    processes = 2 if gpus >= 2 else 1
    found.append(Check(f'torchrun, {processes} process{"es" * (processes > 1)} (NCCL)',
                       ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
                        str(processes), 'train_student.py', '--path_t', teacher, '--model_s',
                        'resnet8', '--distill', 'crd', '--trial', 'ddp'] + common + SPEED))
    if importlib.util.find_spec('nvidia.dali') is not None:
        found.append(Check('DALI loader', ['scripts/benchmark_loaders.py', '--images', '512']))
    found.append(Check('benchmark', ['scripts/benchmark.py', '--teacher', 'resnet32x4',
                                     '--student', 'resnet8x4', '--methods', 'kd,crd', '--amp',
                                     'bf16', '--channels_last'], timeout=600))
    return found


def run_in_process(found, logs):
    """The method checks, one after the other in this process (one start-up for all): a
    PASS/FAIL line each, its output in its log."""
    import train_student
    failed = 0
    for check in found:
        begin = time.time()
        log = log_path(logs, check)
        with open(log, 'w') as out, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            try:
                code = train_student.main(check.argv[1:])
            except Exception as e:  # a crash is this check's failure, not the others'
                print(repr(e))
                code = 'crash'
        failed += code != 0
        report(check, code == 0, time.time() - begin, code, log)
    return failed


def log_path(logs, check):
    return os.path.join(logs, check.name.replace(' ', '_').replace('/', '_') + '.log')


def report(check, ok, seconds, code, log):
    print(f'{"PASS" if ok else "FAIL"} {check.name} ({seconds:.0f}s)'
          + ('' if ok else f': exit {code}, log {log}'), flush=True)


def parse_option(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--list', action='store_true', help='print the checks and exit')
    parser.add_argument('--only', default=None,
                        help='only the checks whose name contains this text')
    parser.add_argument('--save_dir', default='./save/gpu_check',
                        help='where the checks write their runs and logs')
    return parser.parse_args(argv)


def cuda_devices():
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def main(argv=None):
    opt = parse_option(argv)
    opt.save_dir = os.path.abspath(opt.save_dir)  # the same for in-process and child checks
    gpus = cuda_devices()
    found = [c for c in checks(opt.save_dir, gpus) if opt.only is None or opt.only in c.name]
    if opt.list:
        for check in found:
            print(f'{check.name}: python {" ".join(check.argv)}')
        return 0
    if gpus == 0:
        print('gpu_check: no CUDA GPU is visible here (CPU only), so there is nothing to check; '
              'run it on a GPU machine (--list shows the checks)', file=sys.stderr)
        return 2
    logs = os.path.join(opt.save_dir, 'logs')
    os.makedirs(logs, exist_ok=True)
    failed, started = 0, time.time()
    methods_done = False
    for check in found:
        if check.in_process:
            if not methods_done:
                failed += run_in_process([c for c in found if c.in_process], logs)
                methods_done = True
            continue
        log = log_path(logs, check)
        begin = time.time()
        with open(log, 'w') as out:
            try:
                code = subprocess.run([sys.executable] + check.argv, cwd=REPO, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=check.timeout).returncode
            except subprocess.TimeoutExpired:
                code = 'timeout'
        failed += code != 0
        report(check, code == 0, time.time() - begin, code, log)
        if check.name == 'benchmark' and code == 0:
            with open(log) as f:
                print(f.read(), flush=True)
    print(f'gpu_check: {len(found) - failed} passed, {failed} failed in '
          f'{time.time() - started:.0f}s', flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
