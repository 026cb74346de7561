"""The entry points' common frame: parse, run (in one or several processes), report."""
import shlex
import sys

from .checkpoint import disk_full

from . import distributed
from .util import RunFinished, RunInterrupted, UserError


def run_cli(script, parse_option, run, argv=None):
    """Parse and run; input problems become one clear line and exit status 2, a requested stop
    says how to resume and exits with 130."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opt = parse_option(argv)
        if getattr(opt, 'multiprocessing_distributed', False):
            distributed.spawn(run, opt)
        else:
            run(opt)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except RunFinished as e:
        print(e, flush=True)
        return 0
    except RunInterrupted as e:
        again = argv if '--resume' in argv else argv + ['--resume', 'auto']
        print(f'{e}\nresume with: python {script} {shlex.join(again)}', file=sys.stderr)
        return 130
    except OSError as e:  # logs and metrics files; checkpoints say more themselves
        if not disk_full(e):
            raise
        print(f'error: the disk is full ({e.filename or e}); the last epoch\'s checkpoints are '
              f'kept: free some space, then add --resume auto to continue', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted; the last epoch\'s checkpoints are kept (--resume auto continues '
              'from them)', file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    return 0
