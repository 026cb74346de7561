"""A run is a file: every run folder holds config.toml, the options it resolved to;
``train_student.py --config FILE [flags]`` runs it again, the flags overriding, and a folder's
file reproduces its run bit for bit."""
import os

import pytest
import torch

import train_student
from conftest import student_argv
from core.util import UserError
from helper.resolver import build_parser, resolve, run_name
from helper.run_file import FILE_NAME, run_file_text
from tests.runs import final_state, run_folder

TEACHER = 'save/models/resnet8_vanilla/ckpt_epoch_240.pth'


@pytest.mark.parametrize('flags', [
    [],
    ['--distill', 'dkd', '--logit_stand'],
    ['--distill', 'ctkd', '--logit_stand', '--model_s', 'resnet8x4'],
    ['--opt', 'dot', '--dot_delta', '0.05', '--lr_decay_epochs', '10,20'],
    ['--distill', 'mlkd', '-d', '2', '--kd_T', '3.5'],
    ['--recipe', 'ofa_cnn', '--distill', 'dist'],
    ['--path_t', TEACHER, 'save/models/resnet56_vanilla/ckpt_epoch_240.pth', '--teacher_weights',
     '1', '3', '--add', 'wttm', '--ttm_l', '0.2'],
    ['--distill', 'crd', '--nce_k', '40', '--ckd', 'clean', '--ckd_rounds', '3']])
def test_a_run_file_resolves_to_the_same_configuration(tmp_path, flags):
    config, _ = resolve(['--path_t', TEACHER] + flags)
    path = tmp_path / FILE_NAME
    path.write_text(run_file_text(config.options, build_parser(), 'train_student.py'))
    again, notes = resolve(['--config', str(path)])
    assert again == config and notes == []  # every value stands as given
    assert run_name(again, 'resnet8') == run_name(config, 'resnet8')


def test_flags_override_the_file(tmp_path):
    config, _ = resolve(['--path_t', TEACHER, '--distill', 'dkd', '--trial', '3'])
    path = tmp_path / FILE_NAME
    path.write_text(run_file_text(config.options, build_parser(), 'train_student.py'))
    again, _ = resolve(['--kd_T', '8', '--config', str(path), '--trial', '4'])
    assert (again.method.kd_T, again.trial, again.method.weights) == (
        8, '4', config.method.weights)


@pytest.mark.parametrize('text, message', [
    ('no_such = 3\n', "'no_such' is no option of this script"),
    ('epochs = [1\n', 'is not a TOML file'),
    ('epochs = -1\n', 'argument --epochs')])
def test_a_bad_run_file_is_one_line(tmp_path, text, message):
    path = tmp_path / FILE_NAME
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        resolve(['--config', str(path)])
    with pytest.raises(UserError, match='No such file'):
        resolve(['--config', str(tmp_path / 'missing.toml')])


def test_a_folders_run_file_reproduces_the_run_bit_for_bit(tiny):
    data, teacher, root = tiny
    first = str(root / 'first')
    argv = student_argv(data, teacher, first, '--epochs', '1', '--batch_size', '16',
                        '--num_workers', '0', distill='kd')
    assert '--seed' not in argv  # the run draws its seed, and its file records it
    assert train_student.main(argv) == 0
    run = run_folder(first)
    with open(os.path.join(run, FILE_NAME)) as f:
        assert 'seed = ' in f.read()
    again = str(root / 'again')
    assert train_student.main(['--config', os.path.join(run, FILE_NAME),
                               '--save_dir', again]) == 0
    assert os.path.basename(run_folder(again)) == os.path.basename(run)
    for a, b in zip(final_state(first), final_state(again)):
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
