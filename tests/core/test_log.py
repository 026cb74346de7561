"""core/log.py: a note is a line on standard output, or the caller's inside
``collecting_notes``, nested blocks each keeping their own; ``log_to_stdout`` installs its
handler once (that importing installs none is checked in the fresh process of
tests/helper/test_training.py's import test)."""
import logging

from core.log import collecting_notes, log, log_to_stdout, note


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



def test_log_to_stdout_installs_its_handler_once(capsys):
    log_to_stdout()
    handlers = list(logging.getLogger('kd').handlers)
    log_to_stdout()
    assert logging.getLogger('kd').handlers == handlers
    note('once')
    assert capsys.readouterr().out == 'note: once\n'
