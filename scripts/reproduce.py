"""Reproduce a published table: expand it into runs, run them (local GPUs or CPU processes, or
SLURM through submitit), and report the measured figures beside the published ones.

    python scripts/reproduce.py tables/repdistiller_same.toml --gpus 0,1,2,3 --runs_per_gpu 2
    python scripts/reproduce.py tables/repdistiller_same.toml --report

Running the same command again skips finished runs and resumes interrupted ones.
"""
import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.files import try_lock, write_text_atomic  # noqa: E402
from core.util import UserError, non_negative_int, positive_int  # noqa: E402
from reproduction.jobs import (BLOCKED, DONE, FAILED, STALE, STOPPED, LocalExecutor,  # noqa: E402
                               State, SubmititExecutor, command, statuses)
from reproduction.report import csv_text, markdown, measure  # noqa: E402
from reproduction.tables import Table, recorded_differences, state_folder  # noqa: E402

EXECUTORS = ('local', 'slurm', 'submitit_local')


def gpu_list(text):
    """``--gpus``: comma-separated GPU indices ('' for none)."""
    gpus = [g.strip() for g in text.split(',') if g.strip()]
    if not all(g.isdigit() for g in gpus):
        raise argparse.ArgumentTypeError(f'{text!r} is not a comma-separated list of GPU '
                                         f'indices, e.g. 0,1,2,3')
    return gpus


def parse_option(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.error = lambda message: (_ for _ in ()).throw(
        UserError(f'{message} (--help lists the options)'))
    parser.add_argument('table', help='a table file (tables/*.toml)')
    parser.add_argument('--rows', '--methods', dest='rows', default=None,
                        help='only these rows (methods, teacher, student), comma-separated '
                             '(e.g. kd,crd,student)')
    parser.add_argument('--pairs', default=None,
                        help='only these pairs, comma-separated TEACHER:STUDENT')
    parser.add_argument('--trials', type=positive_int, default=None,
                        help='runs per cell (default: the table\'s)')
    parser.add_argument('--save_dir', default='./save', help='passed to every run')
    parser.add_argument('--data_folder', default='./data', help='passed to every run')
    parser.add_argument('--extra', default='',
                        help='more flags, each for every script that takes it, e.g. "--amp bf16 '
                             '--num_workers 4" (all runs), "--kd_T 8" (distillation runs)')
    parser.add_argument('--extra_teacher', default='',
                        help='more flags for train_teacher.py only (teachers, students alone)')
    parser.add_argument('--extra_student', default='',
                        help='more flags for train_student.py only (distillation runs)')
    parser.add_argument('--rerun_stale', action='store_true',
                        help='run again the finished runs whose recorded options differ from '
                             'what the table and --extra now ask (their folders are moved aside '
                             'to <folder>.stale-N); without it they are listed and kept')
    parser.add_argument('--dry_run', action='store_true',
                        help='print the command lines of the runs still to do, run nothing')
    parser.add_argument('--report', action='store_true',
                        help='write the measured table beside the published one (markdown and '
                             'CSV under <save_dir>/reproduce/<table>/) and print it')
    parser.add_argument('--executor', choices=EXECUTORS, default='local',
                        help='local: a queue over --gpus (or CPU processes); slurm: job arrays '
                             'through submitit; submitit_local: submitit on this machine')
    local = parser.add_argument_group('local executor')
    local.add_argument('--gpus', type=gpu_list, default=None,
                       help='GPU indices to use, comma-separated (default: every visible GPU; '
                            'none: CPU processes)')
    local.add_argument('--runs_per_gpu', type=positive_int, default=1,
                       help='runs at once on each GPU (small CIFAR students leave most of a '
                            'large GPU idle)')
    local.add_argument('--cpu_workers', type=positive_int, default=1,
                       help='runs at once without GPUs')
    slurm = parser.add_argument_group('slurm executor (submitit)')
    slurm.add_argument('--partition', default=None, help='SLURM partition')
    slurm.add_argument('--account', default=None, help='SLURM account')
    slurm.add_argument('--time', type=positive_int, default=24 * 60,
                       help='minutes per job; a run that needs longer is requeued and resumes')
    slurm.add_argument('--gpus_per_job', type=non_negative_int, default=1, help='GPUs per job')
    slurm.add_argument('--cpus_per_job', type=positive_int, default=8, help='CPUs per job')
    slurm.add_argument('--array_parallelism', type=positive_int, default=64,
                       help='jobs of an array running at once')
    slurm.add_argument('--wait', action='store_true',
                       help='wait for the jobs, submitting what becomes ready (a teacher\'s '
                            'students), instead of returning after submitting')
    opt = parser.parse_args(argv)
    import torch
    visible = torch.cuda.device_count()
    if opt.gpus is None:
        opt.gpus = [str(i) for i in range(visible)]
    elif opt.gpus and opt.executor == 'local' and not (opt.dry_run or opt.report):
        missing = [g for g in opt.gpus if int(g) >= visible]
        if missing:
            raise UserError(f'--gpus {",".join(opt.gpus)}: ' + (
                'no CUDA GPU is visible here' if not visible else
                f'only {visible} CUDA GPUs are visible here (0-{visible - 1})')
                + '; leave --gpus out to use every visible GPU, or CPU processes without one')
    return opt


def split(text):
    return shlex.split(text)


def main_run(opt):
    table = Table(opt.table)
    runs = table.runs(opt.trials, opt.save_dir, opt.data_folder, split(opt.extra),
                      rows=opt.rows.split(',') if opt.rows else None,
                      pairs=[p.strip() for p in opt.pairs.split(',')] if opt.pairs else None,
                      extra_teacher=split(opt.extra_teacher),
                      extra_student=split(opt.extra_student))
    if not runs:
        raise UserError(f'{table.name}: no cell matches --rows/--pairs')
    folder = state_folder(opt.save_dir, table.name)
    state = State(folder)
    if opt.report:
        measured = measure(table, runs, state)
        text = markdown(table, measured)
        os.makedirs(folder, exist_ok=True)
        write_text_atomic(os.path.join(folder, 'report.md'), text)
        write_text_atomic(os.path.join(folder, 'report.csv'), csv_text(measured))
        print(text + f'\nwritten: {os.path.join(folder, "report.md")} and report.csv')
        return 1 if any(m.status == FAILED for m in measured) else 0
    table.check_pairs(runs)
    if opt.dry_run:
        status = statuses(runs, state)
        for run in runs:
            if status[run.id] == STALE and not opt.rerun_stale:
                print(f'# stale, kept (--rerun_stale runs it again): {run.id}: '
                      f'{"; ".join(recorded_differences(run))}')
            elif status[run.id] != DONE:
                lines = command(run, python='python', as_written=True)
                print(' || '.join(' '.join(line) for line in lines))
        return 0
    os.makedirs(folder, exist_ok=True)
    lock = try_lock(os.path.join(folder, '.runner.lock'))
    if lock is None:
        raise UserError(f'{table.name} is being run by another invocation right now (its state: '
                        f'{folder}); wait for it to finish, or stop it first')
    try:
        return run_table(opt, table, runs, state, folder)
    finally:
        lock.release()


def run_table(opt, table, runs, state, folder):
    for record in state.runs.values():  # an earlier invocation's failures are tried again
        record['exit'] = None
    if opt.rerun_stale:
        status = statuses(runs, state)
        for run in runs:
            if status[run.id] == STALE:
                aside = move_aside(run.run_dir)
                print(f'stale: {run.id} moved aside to {aside}', flush=True)
    print(f'{table.title}: {len(runs)} runs ({opt.executor} executor); logs in '
          f'{state.logs}', flush=True)
    if opt.executor == 'local':
        executor = LocalExecutor(opt.gpus, opt.runs_per_gpu, opt.cpu_workers)
    else:
        executor = SubmititExecutor(
            folder, cluster='slurm' if opt.executor == 'slurm' else 'local',
            wait=opt.wait or opt.executor == 'submitit_local', timeout_min=opt.time,
            max_running=opt.cpu_workers if opt.executor == 'submitit_local' else None,
            slurm_partition=opt.partition, slurm_account=opt.account,
            gpus_per_node=opt.gpus_per_job, cpus_per_task=opt.cpus_per_job,
            slurm_array_parallelism=opt.array_parallelism)
    status, stopped = executor.run(runs, state)
    if stopped:
        saved = sum(1 for s in status.values() if s == STOPPED)
        failed = sum(1 for s in status.values() if s == FAILED)
        print(f'stopped: {saved} runs saved their state' + (
            f', {failed} failed (listed above)' if failed else '')
            + '; run the same command again to resume', flush=True)
        return 130
    unfinished = sum(1 for s in status.values() if s in (FAILED, BLOCKED, STALE))
    return 1 if unfinished else 0


def move_aside(run_dir):
    """Rename a run folder to the first free ``<folder>.stale-N``."""
    n = 1
    while os.path.exists(f'{run_dir}.stale-{n}'):
        n += 1
    os.rename(run_dir, f'{run_dir}.stale-{n}')
    return f'{run_dir}.stale-{n}'


def main(argv=None):
    from core.log import log_to_stdout
    log_to_stdout()  # the library's lines (a note on the data, say) reach the terminal
    try:
        return main_run(parse_option(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
