"""Files that are never seen half-written, and locks that a crash cannot leave behind.

Every file a run keeps (checkpoints, ``metrics.jsonl``, ``summary.json``, stores) is written to
a temporary file beside it, flushed to disk and renamed into place, so a reader sees the old
file or the new one. Locks are filelock's (``flock`` on Linux): the kernel releases them when
their process ends, however it ends.
"""
import contextlib
import errno
import functools
import hashlib
import os
import time

import filelock


def disk_full(error):
    """Whether ``error`` (or what caused it) is the file system running out of space; torch's
    writer reports it as its own RuntimeError."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(error, RuntimeError) and ('file write failed' in str(error)
                                                or 'No space left' in str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def atomic_open(path, mode='wb'):
    """A file object whose content replaces ``path`` only once the block ends without error;
    on error the temporary file is removed and ``path`` is left as it was. The temporary file
    is the process's own, so two processes writing one path never mix their bytes."""
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    with atomic_open(path, 'w') as f:
        f.write(text)


def try_lock(path):
    """An exclusive lock on ``path`` (created if need be), held, or ``None`` when another
    process (or another lock object of this one) holds it; ``release()`` it when done."""
    lock = filelock.FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return None
    return lock


@contextlib.contextmanager
def waiting_lock(path, on_wait=None, check=None, poll_seconds=1.0):
    """Hold an exclusive lock on ``path`` for the block, waiting for it while another process
    holds it: ``on_wait()`` is called once if so, ``check()`` at every poll (it may raise to
    end the wait). The lock file is removed on release, so none stays behind; in the rare
    race this allows (a waiter and a newcomer each holding a lock), both do the guarded work,
    which must therefore be safe to do twice at once (see ``atomic_open``)."""
    lock = try_lock(path)
    if lock is None and on_wait is not None:
        on_wait()
    while lock is None:
        if check is not None:
            check()
        time.sleep(poll_seconds)
        lock = try_lock(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        lock.release()


def file_digest(path):
    """The sha256 of a file's bytes, as hex; read once per process while the file is unchanged
    (a run names its teacher file by it in several places)."""
    stat = os.stat(path)
    return _digest(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest(path, size, mtime_ns):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()
