"""Per-pair settings of the sources as data: one file per source in ``distiller_zoo/per_pair/``
(``lskd.toml``: LSKD's temperature and weight per method; ``mdistiller.toml``: DKD's beta;
``mlld.toml``: MLLD's recipe), each a table per column with a ``default``, per-student
entries (``students``) and per-pair entries (``pairs``, keyed ``"teacher:student"``), read by
the one resolver below. The methods and the scripts read them through it."""
import functools
import os
import tomllib

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'per_pair')


@functools.lru_cache(maxsize=None)
def load(source):
    with open(os.path.join(FOLDER, f'{source}.toml'), 'rb') as f:
        return tomllib.load(f)


def pair_settings(source, column, teacher, student):
    """``column`` of ``source`` for the pair: its default, then the student's entry, then the
    pair's (later ones win); ``teacher`` may be None (unknown)."""
    data = load(source)[column]
    return {**data.get('default', {}), **data.get('students', {}).get(student, {}),
            **data.get('pairs', {}).get(f'{teacher}:{student}', {})}


def has_pair(source, column, teacher, student):
    """Whether the source ran ``column`` on the pair (it has an entry of its own)."""
    return f'{teacher}:{student}' in load(source).get(column, {}).get('pairs', {})


def settings_by_pair(source, column, keys):
    """``{(teacher, student): (value of each key, None where the column has none)}`` of every
    pair the source ran: the authors' table as the ``*_SETTINGS`` mappings of their code
    expose it."""
    return {tuple(pair.split(':')): tuple(pair_settings(source, column, *pair.split(':')).get(k)
                                          for k in keys)
            for pair in load(source)[column].get('pairs', {})}
