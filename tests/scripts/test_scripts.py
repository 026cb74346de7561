"""The scripts run as written: every command the shell scripts would run parses with the
current options (they are run with their launcher replaced by echo), and the benchmarks run."""
import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess

import pytest

import train_student
import train_teacher
from conftest import REPO

SCRIPTS = os.path.join(REPO, 'scripts')
PARSERS = {'train_teacher.py': train_teacher.parse_option,
           'train_student.py': train_student.parse_option}


def commands(script, launcher, *args, env=None):
    """The (script, argv) pairs ``script`` would run, with ``launcher`` set to echo (or the
    environment ``env``)."""
    env = env or dict(os.environ, **{launcher: 'echo'})
    out = subprocess.run(['bash', os.path.join(SCRIPTS, script), *args], check=True,
                         capture_output=True, text=True, env=env)
    found = []
    for line in out.stdout.splitlines():
        words = shlex.split(line)  # the launcher's own flags (torchrun's) come first
        starts = [i for i, word in enumerate(words) if word in PARSERS]
        if starts:
            found.append((words[starts[0]], words[starts[0] + 1:]))
    return found


@pytest.mark.parametrize('script, launcher, count', [('run_cifar_vanilla.sh', 'PYTHON', 15),
                                                     ('run_cifar_distill.sh', 'PYTHON', 26),
                                                     ('run_cifar_mlkd.sh', 'PYTHON', 11),
                                                     ('run_cifar_ckd.sh', 'PYTHON', 30),
                                                     ('run_cifar_lskd.sh', 'PYTHON', 56),
                                                     ('run_cifar_mlld.sh', 'PYTHON', 14),
                                                     ('run_cifar_ctkd.sh', 'PYTHON', 12),
                                                     ('run_cifar_dot.sh', 'PYTHON', 3),
                                                     ('run_cifar_ofd.sh', 'PYTHON', 6),
                                                     ('run_cifar_ttm.sh', 'PYTHON', 33),
                                                     ('run_cifar_nkd.sh', 'PYTHON', 8),
                                                     ('run_cifar_rld.sh', 'PYTHON', 14),
                                                     ('run_cifar_sdd.sh', 'PYTHON', 24),
                                                     ('run_cifar_catkd.sh', 'PYTHON', 11),
                                                     ('run_cifar_mgd.sh', 'PYTHON', 7),
                                                     ('run_cifar_fcfd.sh', 'PYTHON', 10),
                                                     ('run_cifar_gdkd.sh', 'PYTHON', 22),
                                                     ('run_cifar_luminet.sh', 'PYTHON', 11),
                                                     ('run_cifar_abkd.sh', 'PYTHON', 4),
                                                     ('run_cifar_ikl.sh', 'PYTHON', 22),
                                                     ('run_cifar_tekap.sh', 'PYTHON', 6),
                                                     ('run_cifar_skd.sh', 'PYTHON', 8),
                                                     ('run_cifar_crld.sh', 'PYTHON', 12),
                                                     ('run_cifar_wkd.sh', 'PYTHON', 6),
                                                     ('run_imagenet_distill.sh', 'RUN', 8)])
def test_script_commands_parse(script, launcher, count):
    found = commands(script, launcher, '--trial', '7')
    assert len(found) == count
    for name, argv in found:
        opt = PARSERS[name](argv)
        assert str(opt.trial) == '7'  # extra arguments reach every run


@pytest.mark.parametrize('script, program, count', [('run_cifar_vanilla.sh', 'python', 15),
                                                    ('run_cifar_distill.sh', 'python', 26),
                                                    ('run_cifar_mlkd.sh', 'python', 11),
                                                    ('run_cifar_ckd.sh', 'python', 30),
                                                    ('run_cifar_lskd.sh', 'python', 56),
                                                    ('run_cifar_mlld.sh', 'python', 14),
                                                    ('run_cifar_ctkd.sh', 'python', 12),
                                                    ('run_cifar_dot.sh', 'python', 3),
                                                    ('run_cifar_ofd.sh', 'python', 6),
                                                    ('run_cifar_ttm.sh', 'python', 33),
                                                    ('run_cifar_nkd.sh', 'python', 8),
                                                    ('run_cifar_rld.sh', 'python', 14),
                                                    ('run_cifar_sdd.sh', 'python', 24),
                                                    ('run_cifar_catkd.sh', 'python', 11),
                                                    ('run_cifar_mgd.sh', 'python', 7),
                                                    ('run_cifar_fcfd.sh', 'python', 10),
                                                    ('run_cifar_gdkd.sh', 'python', 22),
                                                    ('run_cifar_luminet.sh', 'python', 11),
                                                    ('run_cifar_abkd.sh', 'python', 4),
                                                    ('run_cifar_ikl.sh', 'python', 22),
                                                    ('run_cifar_tekap.sh', 'python', 6),
                                                    ('run_cifar_skd.sh', 'python', 8),
                                                    ('run_cifar_crld.sh', 'python', 12),
                                                    ('run_cifar_wkd.sh', 'python', 6),
                                                    ('run_imagenet_distill.sh', 'torchrun', 8)])
def test_scripts_run_in_the_projects_environment(tmp_path, script, program, count):
    """Without PYTHON/RUN the scripts use the environment setup_env.sh makes (here a stand-in
    venv whose programs echo), never whatever python is on the PATH."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    for name in ('python', 'torchrun'):
        (venv / 'bin' / name).write_text('#!/bin/sh\necho "$@"\n')
        (venv / 'bin' / name).chmod(0o755)
    requirements = open(os.path.join(SCRIPTS, '..', 'requirements.txt'), 'rb').read()
    (venv / '.requirements.sha256').write_text(hashlib.sha256(requirements).hexdigest() + '\n')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'RUN', 'KD_DALI')}
    env.update(KD_VENV=str(venv), TEACHER='my/resnet32x4_vanilla/t.pth')
    found = commands(script, None, env=env)
    assert len(found) == count
    if script == 'run_cifar_distill.sh':
        assert {argv[argv.index('--path_t') + 1] for _, argv in found} == {
            'my/resnet32x4_vanilla/t.pth'}


def test_distill_script_covers_every_repdistiller_method():
    found = commands('run_cifar_distill.sh', 'PYTHON')
    assert {argv[argv.index('--path_t') + 1] for _, argv in found} == {
        './save/models/resnet32x4_vanilla/ckpt_epoch_240.pth'}
    assert {argv[argv.index('--distill') + 1] for _, argv in found} == {
        'kd', 'hint', 'attention', 'similarity', 'correlation', 'vid', 'rkd', 'pkt', 'abound',
        'factor', 'fsp', 'nst', 'crd', 'simkd', 'srrl', 'srd', 'srd_dist', 'dist', 'dkd',
        'reviewkd', 'semckd', 'dml', 'icd', 'rrd', 'mlkd'}


def test_imagenet_script_pairs_and_recipe():
    found = commands('run_imagenet_distill.sh', 'RUN')
    pairs = {(c.teacher.path, c.model_s) for c in (train_student.parse_option(a)
                                                    for _, a in found)}
    assert pairs == {('torchvision:resnet34', 'ResNet18'), ('torchvision:resnet50', 'MobileNetV1')}
    config = train_student.parse_option(found[0][1])
    training = config.training
    assert (config.data.dataset, training.epochs, training.learning_rate,
            training.lr_decay_epochs) == ('imagenet', 100, 0.1, (30, 60, 90))


def test_demo_commands_parse():
    text = open(os.path.join(SCRIPTS, 'demo.sh')).read().replace('\\\n', ' ')
    common = shlex.split(re.search(r'common=\((.*)\)', text).group(1))
    found = 0
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) > 1 and words[1] in PARSERS:
            PARSERS[words[1]]([w for w in words[2:] if w != '${common[@]}'] + common)
            found += 1
    assert found == 2


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SCRIPTS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.processes
def test_training_benchmark_reports_both_paths(tmp_path, monkeypatch):
    report = tmp_path / 'bench.json'
    benchmark = load_script('benchmark')
    isolated, measured = benchmark.run_isolated, []

    def first_isolated(config):  # the first path in a process of its own, as all are; the
        measured.append(config['path'])  # others here, which saves a process start each
        return (isolated if len(measured) == 1 else benchmark.measure)(config)
    monkeypatch.setattr(benchmark, 'run_isolated', first_isolated)
    assert benchmark.main([
        '--teacher', 'resnet8', '--student', 'resnet8', '--steps', '2', '--warmup', '1',
        '--batch_size', '8', '--num_workers', '0', '--device', 'cpu', '--ckd', '--cache', '20',
        '--json', str(report)]) == 0
    results = json.loads(report.read_text())['results']
    assert [(r['path'], r['distill']) for r in results] == [
        ('classic', 'kd'), ('fast', 'kd'), ('fast+ckd', 'kd'), ('student', 'kd'),
        ('fast+cache', 'kd')]
    assert results[-1]['cache_round_images_per_second'] > 0
    assert all(r['images_per_second'] > 0 for r in results)
    assert results[1]['step_time_vs_kd'] == 1.0


@pytest.mark.processes
def test_loader_benchmark_times_each_loader(tmp_path, capsys):
    from dataset.dali_loader import dali_available
    report = tmp_path / 'loaders.json'
    load_script('benchmark_loaders').main([
        '--images', '6', '--batch_size', '2', '--warmup', '1', '--num_workers', '0',
        '--device', 'cpu', '--json', str(report)])
    figures = json.loads(report.read_text())['images_per_second']
    expected = {'classic', 'nvjpeg'} | ({'dali-cpu'} if dali_available() else set())
    assert set(figures) == expected and all(v > 0 for v in figures.values())
    assert 'dali-gpu  skipped:' in capsys.readouterr().out
