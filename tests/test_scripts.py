"""Every command in scripts/*.sh parses with the current options (the scripts run as written)."""
import os
import re
import shlex

import pytest

import train_student
import train_teacher

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts')
PARSERS = {'train_teacher.py': train_teacher.parse_option,
           'train_student.py': train_student.parse_option}


def script_commands(name):
    text = open(os.path.join(SCRIPTS, name)).read().replace('\\\n', ' ')
    variables = dict(re.findall(r'^(\w+)=(\S+)$', text, flags=re.M))
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) > 1 and words[1] in PARSERS:
            argv = [variables.get(w[1:], w) if w.startswith('$') else w for w in words[2:]]
            yield words[1], [w for w in argv if w != '$@']


@pytest.mark.parametrize('name', ['run_cifar_vanilla.sh', 'run_cifar_distill.sh'])
def test_script_commands_parse(name):
    commands = list(script_commands(name))
    assert commands
    for script, argv in commands:
        PARSERS[script](argv)


def test_distill_script_uses_the_fetched_teacher():
    for _, argv in script_commands('run_cifar_distill.sh'):
        assert argv[argv.index('--path_t') + 1] == \
            './save/models/resnet32x4_vanilla/ckpt_epoch_240.pth'


def test_demo_commands_parse():
    text = open(os.path.join(SCRIPTS, 'demo.sh')).read().replace('\\\n', ' ')
    common = shlex.split(re.search(r'common=\((.*)\)', text).group(1))
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) > 1 and words[1] in PARSERS:
            argv = [w for w in words[2:] if w != '${common[@]}'] + common
            PARSERS[words[1]](argv)


def test_distill_script_covers_every_repdistiller_method():
    from distiller_zoo import METHODS
    methods = [argv[argv.index('--distill') + 1] for _, argv in
               script_commands('run_cifar_distill.sh')]
    assert set(methods) == {'kd', 'hint', 'attention', 'similarity', 'correlation', 'vid',
                            'rkd', 'pkt', 'abound', 'factor', 'fsp', 'nst', 'crd'}
    assert set(methods) <= set(METHODS)
