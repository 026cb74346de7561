"""core/log.py: a note is a line on standard output, or the caller's inside
``collecting_notes``, nested blocks each keeping their own."""
from core.log import collecting_notes, log, note


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
