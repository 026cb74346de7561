"""helper/components.py: every component through the one protocol (core/component.py), so that
the entry points, the summaries and the GPU checks name none; DOT as a strategy of --opt; older
runs' options read in today's terms."""
import os
import re

import pytest
import torch

from core.config import TrainingConfig
from core.util import UserError
from helper.components import COMPONENTS, upgraded
from helper.optimizers import REPDISTILLER_SGD, TimmStep, strategy_of
from helper.resolver import build_parser, resolve, run_name
from tests.conftest import REPO

TEACHER = ['--path_t', 'save/models/resnet8_vanilla/ckpt_epoch_240.pth']


def config_of(*flags):
    return resolve(TEACHER + list(flags))[0]


def test_the_entry_points_and_reports_name_no_component():
    """What a component is (its flags, its name) lives in its own file and its registration."""
    words = re.compile(r'logit_stand|ctkd|lskd|\bdot\b|dot_delta|\bttm|--add\b|teacher_cache|'
                       r'\bckd\b|--recipe|teacher_weights', re.IGNORECASE)
    for path in ('train_student.py', 'helper/loops.py', 'core/learner.py',
                 'scripts/gpu_check.py', 'reproduction/report.py'):
        with open(os.path.join(REPO, path)) as f:
            assert not words.findall(f.read()), path


def test_every_component_is_listed_by_help_once_its_switch_is_given():
    for component in COMPONENTS:
        switch = component.options[0].flags[0]
        listed = build_parser('kd', [switch]).format_help()
        assert all(option.flags[0] in listed for option in component.options), switch


@pytest.mark.parametrize('flags, suffix, label', [
    (['--logit_stand'], '_logit_stand', 'LS'),
    (['--ctkd', '--ctkd_t_end', '10'], '_ctkd_ctkd_t_end:10.0', 'CTKD'),
    (['--opt', 'dot'], '_optimizer:dot', 'DOT'),
    (['--optimizer', 'dot', '--dot_delta', '0.05'], '_optimizer:dot_dot_delta:0.05', 'DOT'),
    (['--add', 'ttm'], '_add:ttm', None),
    (['--img_size', '40'], '_img_size:40', None)])
def test_a_component_names_the_folder_and_the_summary_row(flags, suffix, label):
    config = config_of(*flags)
    name = run_name(config, 'resnet8')
    assert name.startswith('S:resnet8_T:resnet8_cifar100_kd_r:') and name.endswith(f'_1{suffix}')
    from types import SimpleNamespace
    record = SimpleNamespace(**config.options)
    assert [c.label for c in COMPONENTS if c.labelled(record)] == ([label] if label else [])


def test_optimizer_dot_is_opt_dot():
    old, new = config_of('--optimizer', 'dot'), config_of('--opt', 'dot')
    assert old.training == new.training and old.training.opt == 'dot'
    assert run_name(old, 'resnet8') == run_name(new, 'resnet8')
    assert strategy_of(new.training).distils and strategy_of(config_of().training) is (
        REPDISTILLER_SGD)
    with pytest.raises(UserError, match="--dot_delta is an option of --optimizer dot"):
        config_of('--opt', 'adamw', '--dot_delta', '0.1')


def test_an_older_runs_dot_reads_as_opt_dot():
    stored = {'distill': 'kd', 'optimizer': 'dot', 'opt': None, 'dot_delta': 0.075}
    assert upgraded(stored) == {'distill': 'kd', 'opt': 'dot', 'dot_delta': 0.075}
    assert upgraded({'distill': 'kd', 'optimizer': 'sgd', 'opt': 'adamw'}) == {
        'distill': 'kd', 'opt': 'adamw'}
    assert upgraded({'distill': 'kd', 'opt': 'dot'}) == {'distill': 'kd', 'opt': 'dot'}


def test_a_teacher_refuses_dot_in_one_line():
    import train_teacher
    with pytest.raises(UserError, match='--opt dot steps a distillation'):
        train_teacher.resolve(['--model', 'resnet8', '--opt', 'dot'])


def test_timm_optimizers_decay_weights_only_in_timms_groups():
    layer, norm = torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)
    params = [layer.weight, layer.bias, norm.weight, norm.bias]
    training = TrainingConfig(epochs=1, learning_rate=0.1, lr_decay_epochs=(),
                              lr_decay_rate=0.1, weight_decay=0.05, momentum=0.9, save_freq=1,
                              opt='adamw')
    groups = TimmStep().build(params, training, torch.device('cpu')).param_groups
    # the decayed group first, as the checkpoints of earlier versions store them
    assert [(g['weight_decay'], len(g['params'])) for g in groups] == [(0.05, 1), (0.0, 3)]
    assert groups[0]['params'][0] is layer.weight
