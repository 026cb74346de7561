"""A run's folders (``<save_dir>/<kind>/<name>`` and its TensorBoard folder): what to resume,
and who may write there.

``RunFolder(...)`` looks (creating nothing): a new run never writes into a folder that holds
another run's checkpoints, a finished run is left as it is, and a checkpoint to resume must
belong to the same experiment. ``with folder.claimed():`` creates the folders once every input
is checked and holds a lock on them for the run's lifetime, so a second process with the same
run name stops at once; the lock is the kernel's, so a crashed run leaves none behind (at most
an unlocked ``.lock`` file). A run
that fails before it wrote a checkpoint removes the folders it created.
"""
import contextlib
import glob
import os
import random
import shutil

from distiller_zoo import METHODS
from core import distributed
from core.checkpoint import LAST, read_checkpoint
from core.files import disk_full, try_lock
from core.util import RunFinished, RunInterrupted, UserError
from core.log import log, note

LOCK = '.lock'

# Options that name what a run is: resuming with any of them changed is refused.
IDENTITY = ('distill', 'model', 'model_s', 'model_t', 'dataset')
# Options that do not change what a run computes: they may differ on resume without a note.
CIRCUMSTANTIAL = {'resume', 'gpu_id', 'num_workers', 'print_freq', 'tb_freq', 'dist_url',
                  'multiprocessing_distributed', 'data_folder', 'save_dir', 'path_t', 'path_s',
                  'wandb', 'config'}
# What the checkpoint records beside the options, by what it is called in messages.
IDENTITY_NAMES = {'teacher': 'the teacher', 'source': 'the probed checkpoint (--path_s)'}


def _canonical(key, value):
    if key == 'distill':  # an alias names the same method
        return METHODS[value].names[0] if value in METHODS else value
    return value


def check_resume_options(options, stored, refused=(), identity=None, stored_identity=None,
                         resolved=None):
    """Refuse to resume a checkpoint of another experiment: another method, architecture or
    data set, another value of an option in ``refused``, or another ``identity`` (the teacher
    file's digest, say) than the checkpoint records. Print a note for every other option that
    differs. ``resolved``: values derived from the options (the teacher's architecture),
    compared in their place. ``options``: the run's (a dict, as its checkpoints store them).
    The resumed run keeps its seed."""
    current = {**options, **(resolved or {})}
    keys = list(IDENTITY) + [k for k in refused if k not in IDENTITY]
    differ = [f'--{k} is {current[k]} here, {stored[k]} in the checkpoint' for k in keys
              if k in stored and k in current
              and _canonical(k, stored[k]) != _canonical(k, current[k])]
    stored_identity = stored_identity or {}
    for key, value in (identity or {}).items():
        name = IDENTITY_NAMES.get(key, key)
        if key not in stored_identity:
            note(f'the checkpoint does not record {name} it was made with (it was written '
                 f'by an older version); assuming it is the same')
        elif stored_identity[key] != value:
            differ.append(f'{name} is {value} here, {stored_identity[key]} in the checkpoint')
    if differ:
        raise UserError('the checkpoint to resume belongs to another experiment: '
                        + '; '.join(differ))
    for key in sorted(set(stored) & set(current) - set(keys) - CIRCUMSTANTIAL):
        if stored[key] == current[key] or (key == 'seed' and current[key] is None):
            continue
        kept = key == 'seed'  # the run's randomness is derived from it
        note(f"--{key} is {current[key]} here, {stored[key]} in the checkpoint; using "
             f"{stored[key] if kept else current[key]}"
             + (' (a resumed run keeps its seed)' if kept else ''))


class RunFolder:
    """The folders of one run and the state it resumes from (``resume``, None for a new run);
    ``seed`` is the run's seed: the resumed run's, the one given, or a new random one.
    ``output``: a ``core.config.OutputConfig``; ``epochs``: the run's length; ``options``: the
    run's options as its checkpoints record them (a dict). ``refused``, ``identity`` and
    ``resolved``: see ``check_resume_options``. ``upgrade``: an older version's stored options in this version's terms (a dict
    to a dict). ``older_names``: what older versions named the
    same run's folder; ``--resume auto`` continues a run found there when its stored options
    agree on ``refused``, and says so when they do not."""

    def __init__(self, output, epochs, options, kind, tb_kind, name, refused=(), identity=None,
                 resolved=None, older_names=(), upgrade=None):
        self.output, self.options = output, dict(options)
        self.upgrade = upgrade or dict  # an older version's stored options in today's terms
        self.run_dir = os.path.join(output.save_dir, kind, name)
        self.tb_dir = os.path.join(output.save_dir, tb_kind, name)
        self.identity = dict(identity or {})
        if output.resume == 'auto' and not self.has_checkpoints():
            self._find_older_folder(kind, tb_kind, older_names, refused, resolved)
        self.resume = self._find_resume(output.resume)
        if self.resume is not None:
            progress = self.resume.progress
            if progress is None:
                raise UserError('the checkpoint to resume has no training state; resume from '
                                f'{LAST}, which every run writes each epoch')
            check_resume_options(self.options, self.upgrade(self.resume.options), refused,
                                 self.identity,
                                 progress.identity, resolved)
            if progress.stage == 'train' and self.resume.epoch > epochs:
                where = (os.path.dirname(os.path.abspath(output.resume))
                         if output.resume not in (None, 'auto') else self.run_dir)
                raise RunFinished(f"the run in '{where}' already finished its {epochs} "
                                  f"epochs; nothing to do (its files are unchanged)")
            self.seed = self.resume.options['seed']
            log.info(f"resuming {progress.stage} epoch {self.resume.epoch}"
                     + (f", step {progress.step}" if progress.step else ''))
        elif output.seed is None:
            self.seed = distributed.broadcast_object(random.randrange(2 ** 31))
        else:
            self.seed = output.seed
        self._lock = None

    def _find_older_folder(self, kind, tb_kind, names, refused, resolved):
        """Move to the folder an older version named this run, if it holds the same experiment
        (its stored options agree on ``refused``); otherwise say in one line that it exists."""
        current = {**self.options, **(resolved or {})}
        for name in dict.fromkeys(names):
            last = os.path.join(self.output.save_dir, kind, name, LAST)
            if name == os.path.basename(self.run_dir) or not os.path.isfile(last):
                continue
            stored = self.upgrade(read_checkpoint(last).options or {})
            differ = [k for k in refused if k in stored and k in current
                      and _canonical(k, stored[k]) != _canonical(k, current[k])]
            if differ:
                given = ', '.join(f'--{k} {stored[k]}' for k in differ)
                note(f"'{os.path.dirname(last)}' (a folder name of an older version) "
                     f"holds a run with other options ({given}); left as it is. To continue "
                     f"it: --resume {last}")
                continue
            note(f"continuing the run in '{os.path.dirname(last)}', named as an older "
                 f"version named its folders")
            self.run_dir = os.path.join(self.output.save_dir, kind, name)
            self.tb_dir = os.path.join(self.output.save_dir, tb_kind, name)
            return

    def record(self, **resolved):
        """The run's options as it runs them, for its checkpoints and summary: the parsed
        ones, the values derived from them (``resolved``) and the seed."""
        return {**self.options, **resolved, 'seed': self.seed}

    def has_checkpoints(self):
        return bool(glob.glob(os.path.join(self.run_dir, '*.pth')))

    def _find_resume(self, given):
        has_checkpoints = self.has_checkpoints()
        resume = None
        if given == 'auto':
            if os.path.isfile(os.path.join(self.run_dir, LAST)):
                resume = read_checkpoint(os.path.join(self.run_dir, LAST))
            elif not has_checkpoints:
                note(f"--resume auto found no earlier run in '{self.run_dir}'; starting "
                     f"a new run")
        elif given:
            resume = read_checkpoint(given)
            own = os.path.abspath(os.path.dirname(given)) == os.path.abspath(self.run_dir)
            if has_checkpoints and not own:
                raise UserError(f"'{self.run_dir}' already holds checkpoints of another run, "
                                f"which resuming '{given}' there would overwrite; choose "
                                f"another --trial (or --save_dir)")
        if resume is None and has_checkpoints:
            raise UserError(f"'{self.run_dir}' already holds checkpoints of an earlier run; add "
                            f"--resume auto to continue it, or choose another --trial")
        return resume

    def kept(self):
        """What a failed or stopped run leaves behind, in words."""
        if os.path.isfile(os.path.join(self.run_dir, LAST)):
            return f"its last checkpoint is kept ('{os.path.join(self.run_dir, LAST)}')"
        return 'no checkpoint had been written yet, so nothing of the run is kept'

    @contextlib.contextmanager
    def claimed(self):
        """Create and lock the folders (main process), for the block. A run that ends in an
        error or a stop before writing a checkpoint removes the folders it created; Ctrl-C
        pressed twice ends as a stop, saying what is kept."""
        created = []
        if distributed.is_main():
            created = self._create_and_lock()
        try:
            yield self
        except KeyboardInterrupt:
            self._remove_if_empty(created)
            raise RunInterrupted(f'interrupted; {self.kept()}',
                                 resumable=self.has_checkpoints()) from None
        except OSError as e:
            self._remove_if_empty(created)
            if not disk_full(e):
                raise
            raise UserError(f'the disk is full ({e.filename or e}); {self.kept()}. Free some '
                            f'space, then add --resume auto to continue') from None
        except BaseException:
            self._remove_if_empty(created)
            raise
        finally:
            if self._lock is not None:  # the file goes first, so no folder keeps one at rest
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.run_dir, LOCK))
                self._lock.release()
                self._lock = None

    def _create_and_lock(self):
        created = [d for d in (self.run_dir, self.tb_dir) if not os.path.isdir(d)]
        try:
            for folder in (self.run_dir, self.tb_dir):
                os.makedirs(folder, exist_ok=True)
            self._lock = try_lock(os.path.join(self.run_dir, LOCK))
        except OSError as e:
            raise UserError(f"cannot write to '{self.run_dir}' ({e.strerror or e}); choose a "
                            f"writable --save_dir") from None
        if self._lock is None:
            raise UserError(f"another run is writing into '{self.run_dir}' right now; wait for "
                            f"it to finish (then --resume auto continues it), or choose another "
                            f"--trial")
        return created

    def _remove_if_empty(self, created):
        if created and not self.has_checkpoints():
            for folder in created:
                shutil.rmtree(folder, ignore_errors=True)


def first_epoch(resume):
    """The training epoch a run starts at: 1, or the one a resumed checkpoint continues."""
    return resume.epoch if resume is not None and resume.progress.stage == 'train' else 1
