"""The runs' messages: lines on standard output through the ``kd`` logger, from the main
process only (each process of a multi-process run would print the same line). ``log.info``
writes a line as it is; ``note`` writes it after ``note: `` (or hands it to the caller, inside
``collecting_notes``). Importing it installs nothing: an entry point calls ``log_to_stdout()``
(``helper.cli.run_cli`` does), as a library leaves handlers to its application."""
import contextlib
import contextvars
import logging
import sys

from .distributed import is_main

log = logging.getLogger('kd')


class _Stdout(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is when the line is written (a redirect, pytest's
    capture), flushing each line so that logs of runs in the background are current."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


class _Prefixed(logging.Formatter):
    PREFIXES = {logging.WARNING: 'note: '}

    def format(self, record):
        return self.PREFIXES.get(record.levelno, '') + super().format(record)


class MainProcessOnly(logging.Filter):
    def filter(self, record):
        return is_main()


_collected = contextvars.ContextVar('collected_notes', default=None)


def note(message):
    """A line the user should read (a default applied, an option ignored, a fallback); kept
    for the caller instead, inside ``collecting_notes``."""
    collected = _collected.get()
    if collected is not None:
        collected.append(message)
    else:
        log.warning(message)


@contextlib.contextmanager
def collecting_notes():
    """The notes of the block, as a list, instead of lines on standard output: what a pure
    function hands back to its caller."""
    notes = []
    token = _collected.set(notes)
    try:
        yield notes
    finally:
        _collected.reset(token)


def log_to_stdout():
    """Send the ``kd`` logger's lines to standard output, from the main process only, notes
    prefixed; called again, it changes nothing."""
    if any(isinstance(handler, _Stdout) for handler in log.handlers):
        return
    handler = _Stdout()
    handler.setFormatter(_Prefixed('%(message)s'))
    handler.addFilter(MainProcessOnly())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
