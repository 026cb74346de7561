"""core/log.py: a note is a line on standard output, or the caller's inside
``collecting_notes``, nested blocks each keeping their own; importing it installs no handler."""
import subprocess
import sys

from core.log import collecting_notes, log, note
from tests.conftest import REPO


def test_notes_are_printed_or_handed_back(capsys):
    note('printed')
    assert capsys.readouterr().out == 'note: printed\n'
    with collecting_notes() as outer:
        note('one')
        with collecting_notes() as inner:
            note('two')
        log.info('a plain line still prints')
    assert (outer, inner) == (['one'], ['two'])
    assert capsys.readouterr().out == 'a plain line still prints\n'
    note('printed again')  # the block is over
    assert capsys.readouterr().out == 'note: printed again\n'


def test_importing_installs_no_handler():
    code = ('import logging, core.log; '
            'print(len(logging.getLogger("kd").handlers)); '
            'core.log.log_to_stdout(); core.log.log_to_stdout(); '
            'print(len(logging.getLogger("kd").handlers))')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ['0', '1']
