"""The entry points' common frame: parse, run (in one or several processes), report."""
import shlex
import sys

from core.files import disk_full

from core import distributed
from core.config import LaunchConfig
from core.log import log, log_to_stdout, note
from core.stop import STOP
from core.util import RunFinished, RunInterrupted, UserError


def parse_and_note(resolve, argv=None):
    """The options of a pure ``resolve(argv) -> (options, notes)`` of the command line (or
    ``sys.argv``), its notes printed: an entry point's ``parse_option``."""
    options, notes = resolve(sys.argv[1:] if argv is None else list(argv))
    for line in notes:
        note(line)
    return options


def run_cli(script, parse_option, run, argv=None):
    """Parse and run; input problems become one clear line and exit status 2, a requested stop
    says how to resume and exits with 130."""
    argv = sys.argv[1:] if argv is None else argv
    log_to_stdout()
    try:
        opt = parse_option(argv)
        launch = getattr(opt, 'launch', None) or LaunchConfig.of(opt)
        if launch.multiprocessing_distributed:
            distributed.spawn(run, opt, launch)
        else:
            with STOP:
                run(opt)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except RunFinished as e:
        log.info(str(e))
        return 0
    except RunInterrupted as e:
        if e.resumable:
            again = argv if '--resume' in argv else argv + ['--resume', 'auto']
            print(f'{e}\nresume with: python {script} {shlex.join(again)}', file=sys.stderr)
        else:
            print(f'{e}; run the same command again to start over', file=sys.stderr)
        return 130
    except OSError as e:  # a run's own files say which checkpoint is intact
        if not disk_full(e):
            raise
        print(f'error: the disk is full ({e.filename or e}): free some space, then run the '
              f'command again', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before a run's folders existed
        print('interrupted; nothing was written', file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    return 0
