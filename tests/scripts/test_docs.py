"""README.md and docs/: the methods reference is the registry's, the README lists every method
and stays short, its links lead somewhere, and its commands are accepted as written."""
import os
import re
import shlex

import pytest

import train_teacher
from conftest import REPO
from core.util import UserError
from distiller_zoo import METHODS
from helper import resolver
from scripts import methods_reference, reproduce

README = open(os.path.join(REPO, 'README.md')).read()
# the toolbox's own (a test file may register methods of its own in its process)
TOOLBOX_METHODS = [name for name, method in METHODS.items()
                   if method.__module__.startswith('distiller_zoo.')]


def test_the_methods_reference_is_the_registrys():
    assert methods_reference.main(['--check']) == 0
    text = open(methods_reference.PATH).read()
    # a row edited by hand, or a weight changed in the registry, is stale
    stale = text.replace('| 0.1 0.9 0 |', '| 0.1 0.9 1 |', 1)
    assert methods_reference.written(stale) == text != stale
    for name in TOOLBOX_METHODS:
        assert f'| `{name}`' in text or f'`{name}`)' in text or f'(`{name}`' in text, name


def test_the_readme_is_short_and_names_every_method():
    assert len(README.splitlines()) <= 250
    listed = README[README.index('## Methods'):README.index('## Reproducing a table')]
    for name in TOOLBOX_METHODS:
        assert f'`{name}`' in listed, name


def test_the_readmes_links_lead_to_files():
    links = re.findall(r'\]\(([^)#]+)\)', README)
    local = [link for link in links if not link.startswith('http')]
    assert 'docs/methods.md' in local and 'CONTRIBUTING.md' in local
    for link in local:
        assert os.path.exists(os.path.join(REPO, link)), link


def commands():
    """The README's command lines of the repository's scripts, continuations joined."""
    blocks = re.findall(r'```bash\n(.*?)```', README, re.S)
    lines = '\n'.join(blocks).replace('\\\n', ' ').splitlines()
    return [shlex.split(line.split('  #')[0]) for line in lines if line.startswith('python ')]


def test_the_readmes_commands_are_accepted_as_written(tmp_path, capsys):
    """Each parses as its script parses it (the training commands resolve to the run they
    start, the table's runs are listed); none trains, as a run here would take hours."""
    found = {argv[1] for argv in commands()}
    assert found == {'train_teacher.py', 'train_student.py', 'scripts/reproduce.py'}
    for argv in commands():
        script, words = argv[1], argv[2:]
        if script == 'train_teacher.py':
            options, _ = train_teacher.resolve(words)
            assert options.model == 'resnet32x4'
        elif script == 'train_student.py':
            config, _ = resolver.resolve(words)
            assert (config.distill, config.model_s, config.teacher.arch) == (
                'kd', 'resnet8x4', 'resnet32x4')
            assert config.method.weights[:3] == (0.1, 0.9, 0.0)
        elif '--dry_run' in words:
            assert reproduce.main(words + ['--save_dir', str(tmp_path)]) == 0
            assert 'train_student.py' in capsys.readouterr().out
        elif '--gpus' in words:  # runs on GPUs: here, the one line that says there are none
            with pytest.raises(UserError, match='no CUDA GPU is visible here'):
                reproduce.main_run(reproduce.parse_option(words + ['--save_dir', str(tmp_path)]))
        else:
            assert reproduce.main(words + ['--save_dir', str(tmp_path)]) == 0
            assert '| 73.33 | - (0) missing ! |' in capsys.readouterr().out


def test_no_doc_or_help_text_names_a_section_of_the_old_readme():
    """The reference moved out of README.md into docs/: the docs point to each other, and
    --help's groups to the docs, not to README sections that are no longer there."""
    paths = [os.path.join(REPO, 'docs', doc) for doc in os.listdir(os.path.join(REPO, 'docs'))]
    paths += [os.path.join(REPO, folder, name) for folder in ('helper', 'distiller_zoo')
              for name in os.listdir(os.path.join(REPO, folder)) if name.endswith('.py')]
    for path in paths:
        text = open(path).read()
        assert not re.search(r'\(README, |see README|see (Methods|Models|Data|Speed)\b', text), path
    for anchor in re.findall(r'\]\(([a-z_]+\.md)#([a-z0-9-]+)\)',
                             open(os.path.join(REPO, 'docs', 'usage.md')).read()):
        doc, heading = anchor
        headings = [re.sub(r'[^a-z0-9 -]', '', h.lower()).replace(' ', '-') for h in
                    re.findall(r'^#+ (.*)$', open(os.path.join(REPO, 'docs', doc)).read(), re.M)]
        assert heading in headings, anchor
