"""Running a table's runs (``reproduction.tables.Run``): on local GPUs or CPU processes, or as
SLURM jobs through submitit, idempotently.

A run is done once its ``done_file`` exists (a run's summary.json, a teacher's weights) and the
options its folder records are those its command asks for now; a finished run made with other
options (the table or ``--extra`` changed) is stale: listed, and run again only when the user
says so. A run that is not done starts with ``--resume auto`` when its folder holds a
``ckpt_last.pth`` (it continues where it stopped), else fresh. What the runner knows besides
the run folders (each run's log, its last exit status, the SLURM job that holds it) is kept in
``state.json`` under ``<save_dir>/reproduce/<table>/``, written atomically. Runs are started in
sessions of their own, so a Ctrl-C in the terminal reaches the runner alone, which asks each
run once to stop (SIGTERM: it saves its state).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from core.checkpoint import LAST
from core.files import write_text_atomic
from core.util import UserError
from .tables import file_stem, recorded_differences

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE, RUNNING, QUEUED, FAILED, BLOCKED = 'done', 'running', 'queued', 'failed', 'blocked'
STOPPED, STALE = 'stopped', 'stale'
STOPPED_EXIT = 130  # a run that saved its state on a stop request
SLURM_ACTIVE = {'PENDING', 'RUNNING', 'REQUEUED', 'CONFIGURING', 'COMPLETING', 'RESIZING',
                'SUSPENDED', 'UNKNOWN'}


def command(run, python=sys.executable, as_written=False):
    """The command lines of a run, as it would start now (``--resume auto`` once it has a
    checkpoint to continue from), its run file written; ``as_written``: the command line a
    run file stands for instead, nothing written (what a dry run shows)."""
    resume = os.path.isfile(os.path.join(run.run_dir, LAST))
    commands = run.commands
    if as_written and run.run_file:
        commands = [run.argv]
    elif run.run_file:
        run.write_run_file()
    return [[python] + argv + (['--resume', 'auto'] if resume and i == len(commands) - 1
                               else []) for i, argv in enumerate(commands)]


def log_name(run):
    return file_stem(run.id) + '.log'


class State:
    """``state.json``: per run id, its attempts, last exit status, log and SLURM job."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, 'state.json')
        self.logs = os.path.join(folder, 'logs')
        try:
            with open(self.path) as f:
                self.runs = json.load(f)
        except (OSError, ValueError):
            self.runs = {}

    def log(self, run):
        return os.path.join(self.logs, log_name(run))

    def get(self, run):
        return self.runs.setdefault(run.id, {})

    def save(self):
        os.makedirs(self.folder, exist_ok=True)
        write_text_atomic(self.path, json.dumps(self.runs, indent=1, sort_keys=True))


def statuses(runs, state, active=lambda run: False):
    """Each run's status: done, stale (finished with other options than its command's now),
    running (``active``: a job holds it), stopped (it saved its state on a stop), failed (its
    last attempt failed, or ended without its result), blocked (a run it needs failed or is
    stale) or queued."""
    by_id = {run.id: run for run in runs}
    status = {}
    for run in runs:
        code = state.get(run).get('exit')
        if active(run):
            status[run.id] = RUNNING
        elif recorded_differences(run):
            status[run.id] = STALE
        elif os.path.isfile(run.done_file):
            status[run.id] = DONE
        elif code == STOPPED_EXIT:
            status[run.id] = STOPPED
        elif code is not None:  # exit 0 without the result is a failure too: never relaunched
            status[run.id] = FAILED
        else:
            status[run.id] = QUEUED
    changed = True
    while changed:  # what a failed or blocked run would have fed cannot start
        changed = False
        for run in runs:
            if status[run.id] == QUEUED and any(
                    status.get(need) in (FAILED, BLOCKED, STALE) for need in run.needs
                    if need in by_id):
                status[run.id] = BLOCKED
                changed = True
    return status


def ready(run, status):
    return status[run.id] == QUEUED and all(status.get(n, DONE) == DONE for n in run.needs)


def progress_line(status):
    counts = Counter(status.values())
    line = ' | '.join(f'{counts.get(k, 0)} {k}' for k in (DONE, RUNNING, QUEUED, FAILED, BLOCKED))
    extra = [f'{counts[k]} {k}' for k in (STOPPED, STALE) if counts.get(k)]
    return ' | '.join([line] + extra)


def failure(run, state):
    """Why a failed run failed, in words."""
    code = state.get(run).get('exit')
    if code == 0:
        return f'exited 0 but wrote no {run.done_file}'
    return f'exit {code}'


def report_failures(runs, status, state):
    for run in runs:
        if status[run.id] == FAILED:
            print(f'  failed: {run.id} ({failure(run, state)}): '
                  f'{state.get(run).get("log", state.log(run))}', flush=True)
        elif status[run.id] == STALE:
            print(f'  stale: {run.id} finished with other options than its command\'s now: '
                  f'{"; ".join(recorded_differences(run))} ({run.run_dir})', flush=True)
    if any(s == STALE for s in status.values()):
        print('stale runs are kept as they are; --rerun_stale moves their folders aside '
              '(<folder>.stale-N) and runs them again', flush=True)


def execute(run, log_path, env=None, on_start=None):
    """Run a run's commands in turn (a teacher: fetch, else train) until one succeeds, output
    to ``log_path``; returns the last exit status. ``on_start(process)`` sees each process."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    code = 1
    with open(log_path, 'a') as log:
        for argv in command(run):
            log.write(f'$ {" ".join(argv)}\n')
            log.flush()
            # a session of its own: a Ctrl-C in the terminal reaches the runner, not the run
            process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
            if on_start:
                on_start(process)
            code = process.wait()
            if code in (0, STOPPED_EXIT):
                break
    return code


class _Slot:
    """One run in progress in a thread of the local executor."""

    def __init__(self, run, device, log_path, env):
        self.run, self.device, self.process, self.code = run, device, None, None
        self.stopping = False
        self.thread = threading.Thread(target=self._work, args=(log_path, env), daemon=True)
        self.thread.start()

    def _work(self, log_path, env):
        self.code = execute(self.run, log_path, env, lambda p: setattr(self, 'process', p))

    def stop(self):
        """Ask the run once to stop (a second signal would stop it at once, losing work)."""
        if not self.stopping and self.process is not None and self.process.poll() is None:
            self.stopping = True
            self.process.send_signal(signal.SIGTERM)


class LocalExecutor:
    """A queue over slots: ``runs_per_gpu`` runs at once on each listed GPU, or
    ``cpu_workers`` CPU processes. Ctrl-C or SIGTERM stops every run (each saves its state)
    and returns; the next invocation resumes them."""

    def __init__(self, gpus, runs_per_gpu=1, cpu_workers=1):
        self.devices = [g for g in gpus for _ in range(runs_per_gpu)] if gpus \
            else [None] * cpu_workers

    def env(self, gpu):
        env = dict(os.environ)
        if gpu is not None:
            env['CUDA_VISIBLE_DEVICES'] = str(gpu)
        else:  # CPU processes share the cores
            threads = max(1, (os.cpu_count() or 1) // len(self.devices))
            env.setdefault('OMP_NUM_THREADS', str(threads))
        return env

    def run(self, runs, state):
        slots, free, stop = {}, list(self.devices), []

        def request_stop(signum, frame):
            if not stop:
                print('reproduce: stopping the runs (each saves its state)', flush=True)
            stop.append(signum)
            for slot in slots.values():
                slot.stop()
        previous = {sig: signal.signal(sig, request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        shown = None
        try:
            while True:
                for run_id, slot in list(slots.items()):
                    if slot.code is not None:
                        slot.thread.join()
                        del slots[run_id]
                        free.append(slot.device)
                        state.get(slot.run)['exit'] = slot.code
                        state.save()
                status = statuses(runs, state, lambda r: r.id in slots)
                for run in runs if not stop else ():
                    if free and ready(run, status):
                        record = state.get(run)
                        record.update(log=state.log(run), exit=None,
                                      attempts=record.get('attempts', 0) + 1)
                        state.save()
                        device = free.pop(0)
                        slots[run.id] = _Slot(run, device, state.log(run), self.env(device))
                        status[run.id] = RUNNING
                line = progress_line(status)
                if line != shown:
                    print(f'reproduce: {line}', flush=True)
                    shown = line
                if not slots and (stop or not any(ready(r, status) for r in runs)):
                    break
                time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status = statuses(runs, state)
        report_failures(runs, status, state)
        return status, bool(stop)


class RunJob:
    """What a SLURM job (through submitit) runs: one run, resumed if it has a checkpoint; it
    returns the run's exit status. A SIGTERM (the runner stopping, SLURM cancelling) is passed
    on to the run, which saves its state. On preemption or time-out submitit calls
    ``checkpoint``: the run is told to stop and the job is requeued; the requeued job resumes
    the run."""

    def __init__(self, state_folder):
        self.state_folder = state_folder
        self.process = None

    def __call__(self, run):
        signal.signal(signal.SIGTERM, lambda signum, frame: self.stop())
        return execute(run, os.path.join(self.state_folder, 'logs', log_name(run)),
                       on_start=lambda p: setattr(self, 'process', p))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def checkpoint(self, run):
        import submitit
        self.stop()
        if self.process is not None:
            try:
                self.process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return submitit.helpers.DelayedSubmission(RunJob(self.state_folder), run)


class SubmititExecutor:
    """SLURM job arrays (``cluster='slurm'``) or submitit's local executor (``'local'``, to
    try a setup on one machine, at most ``max_running`` runs at once). Each invocation submits
    the runs that are ready and not held by a job; with ``wait`` it waits for them and submits
    what becomes ready. Ctrl-C or SIGTERM stops the local jobs (each run saves its state) and
    returns; SLURM jobs keep running on the cluster."""

    def __init__(self, folder, cluster='slurm', wait=False, max_running=None, **parameters):
        import submitit
        if cluster == 'slurm' and shutil.which('sbatch') is None:
            raise UserError('--executor slurm needs SLURM\'s sbatch, which is not on this '
                            'machine\'s PATH; use --executor local (or submitit_local) here')
        self.submitit = submitit
        self.cluster, self.wait, self.max_running = cluster, wait, max_running
        self.folder = os.path.join(folder, 'submitit')
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        self.executor.update_parameters(**{k: v for k, v in parameters.items()
                                           if v is not None})
        self.jobs = {}  # run id -> job submitted by this invocation

    def active(self, state):
        def is_active(run):
            job = self.jobs.get(run.id)
            if job is not None:
                return not job.done()
            job_id = state.get(run).get('job')
            if job_id is None or self.cluster != 'slurm':
                return False
            return self.submitit.SlurmJob(folder=self.folder, job_id=job_id).state in \
                SLURM_ACTIVE
        return is_active

    def submit(self, todo):
        """The jobs of ``todo``; local job controllers start with SIGINT ignored, so that a
        Ctrl-C in the terminal reaches the runner alone (SIGTERM stops them)."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if self.cluster == 'local' \
            else None
        try:
            return self.executor.map_array(RunJob(self.folder_of_state), todo)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def stop_jobs(self):
        for job in self.jobs.values():
            process = getattr(job, '_process', None)  # a local job's controller
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def record_finished(self, runs, state):
        for run in runs:
            job = self.jobs.get(run.id)
            if job is None or not job.done() or state.get(run).get('exit') is not None:
                continue
            try:
                code = job.result()
            except Exception:  # the job itself failed (its log in the submitit folder)
                code = 1
            state.get(run)['exit'] = code if isinstance(code, int) else 1

    def run(self, runs, state):
        self.folder_of_state = state.folder
        active = self.active(state)
        stop = []

        def request_stop(signum, frame):
            if not stop and self.cluster == 'local':
                print('reproduce: stopping the jobs (each run saves its state)', flush=True)
                self.stop_jobs()
            stop.append(signum)
        previous = {sig: signal.signal(sig, request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(runs, state, active, stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status = statuses(runs, state, active)
        report_failures(runs, status, state)
        return status, bool(stop)

    def _loop(self, runs, state, active, stop):
        while True:
            status = statuses(runs, state, active)
            todo = [run for run in runs if ready(run, status)] if not stop else []
            if self.max_running is not None:
                running = sum(1 for job in self.jobs.values() if not job.done())
                todo = todo[:max(0, self.max_running - running)]
            if todo:
                jobs = self.submit(todo)
                for run, job in zip(todo, jobs):
                    self.jobs[run.id] = job
                    record = state.get(run)
                    record.update(job=job.job_id, log=os.path.join(state.logs, log_name(run)),
                                  attempts=record.get('attempts', 0) + 1, exit=None)
                state.save()
                print(f'reproduce: submitted {len(todo)} runs ({self.cluster} job '
                      f'{jobs[0].job_id.split("_")[0]})', flush=True)
            status = statuses(runs, state, active)  # the submitted runs now count as running
            print(f'reproduce: {progress_line(status)}', flush=True)
            if not self.wait:
                waiting = sum(1 for run in runs if status[run.id] == QUEUED
                              and run.id not in self.jobs)
                if waiting:
                    print(f'reproduce: {waiting} runs wait for the runs they need; run the same '
                          f'command again once those finish (or add --wait)', flush=True)
                return
            pending = [job for job in self.jobs.values() if not job.done()]
            if not pending and (not todo or stop):
                # the jobs that ended since the last wait (all of them, with short runs)
                self.record_finished(runs, state)
                state.save()
                return
            while pending and not any(job.done() for job in pending):
                time.sleep(0.5)
            self.record_finished(runs, state)
            state.save()
