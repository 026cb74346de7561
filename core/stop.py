"""Graceful stops: while ``STOP`` is active (the whole of a script's run), SIGINT and SIGTERM
ask the run to stop at the next point where its work can be kept or safely dropped (after a
training step; between chunks of a long preparation); a second signal stops at once."""
import signal
import sys

from .util import RunInterrupted


class GracefulStop:
    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f'\n{signal.Signals(signum).name}: stopping after this step '
              f'(send it again to stop at once)', file=sys.stderr, flush=True)

    def check(self, what):
        """Raise ``RunInterrupted`` if a stop was asked for, saying that ``what`` (work under
        way that is not kept) was dropped."""
        if self.requested:
            raise RunInterrupted(f'stopped while {what}; nothing of it is kept',
                                 resumable=False)


STOP = GracefulStop()
