"""Checkpoints written before the method-interface redesign (at 61ba9d0, by
tests/fixtures/make_fixtures.py) keep loading, evaluating and resuming."""
import os
import re
import shutil

import pytest
import torch

import eval_student
import train_student
from conftest import REPO, student_argv, write_cifar100
from distiller_zoo import SimKD
from core.checkpoint import Checkpoint, load_checkpoint
from models import get_model
from reference import assert_same_trajectory

FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'checkpoints')
COMMON = ['--batch_size', '16', '--num_workers', '0', '--seed', '3', '--save_freq', '1',
          '--model_s', 'resnet8', '--nce_k', '30']
TOLERANCE = dict(rtol=1e-5, atol=1e-6)  # the fixtures' machine and this one may differ


def fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """The data the fixtures were trained on, and their teacher in a RepDistiller folder."""
    root = tmp_path_factory.mktemp('old_checkpoints')
    data = str(root / 'data')
    write_cifar100(data, n_train=64, n_test=16)
    teacher = root / 'resnet8_vanilla' / 'ckpt_epoch_1.pth'
    teacher.parent.mkdir()
    shutil.copyfile(fixture('teacher_resnet8.pth'), teacher)
    return data, str(teacher), root


def run_argv(workspace, save, distill, *extra):
    return student_argv(*workspace[:2], save, '--epochs', '2', *COMMON, *extra, distill=distill)


def final_checkpoint(save):
    folder = os.path.join(save, 'student_model')
    (run,) = os.listdir(folder)
    return load_checkpoint(os.path.join(folder, run, 'ckpt_last.pth'))


def momenta(checkpoint):
    return {i: s['momentum_buffer'] for i, s in checkpoint['optimizer']['state'].items()}


def evaluated_top1(capsys, path, data, *extra):
    assert eval_student.main(['--path', path, '--data_folder', data, '--num_workers', '0']
                             + list(extra)) == 0
    return float(re.search(r'acc@1 ([\d.]+)', capsys.readouterr().out).group(1))


@pytest.mark.parametrize('name', ['teacher_resnet8.pth', 'kd_student_last.pth',
                                  'simkd_student_last.pth'])
def test_old_checkpoints_evaluate_to_their_recorded_accuracy(workspace, capsys, name):
    ckpt = load_checkpoint(fixture(name))
    assert evaluated_top1(capsys, fixture(name), workspace[0]) == pytest.approx(
        ckpt['accuracy'], abs=1e-6)


def test_old_simkd_student_predicts_through_its_stored_projector(workspace):
    """The rebuilt student's prediction equals the one assembled by hand from the stored
    tensors: the student's head map, the projector (under 'proj') and the teacher's
    classifier (under 'method_state')."""
    ckpt = load_checkpoint(fixture('simkd_student_last.pth'))
    options = eval_student.parse_option(['--path', fixture('simkd_student_last.pth')])
    predictor = eval_student.build_predictor(Checkpoint.from_dict(ckpt), options, 100)[1]
    student = get_model('resnet8', 100)
    student.load_state_dict(ckpt['model'])
    proj = SimKD(s_n=64, t_n=64, factor=2)
    proj.load_state_dict(ckpt['proj'])
    classifier = torch.nn.Linear(64, 100)
    classifier.load_state_dict({k.split('.', 1)[1]: v for k, v in ckpt['method_state'].items()
                                if k.startswith('cls_t.')})
    images = torch.randn(4, 3, 32, 32)
    for module in (student, proj, classifier, getattr(predictor, '__self__', predictor)):
        module.eval()
    with torch.no_grad():
        head = student(images, is_feat=True, with_head_map=True)[2]
        expected = classifier(proj.avg_pool(proj.transfer(head)).flatten(1))
        assert torch.allclose(predictor(images), expected, **TOLERANCE)


def test_old_mid_epoch_checkpoint_resumes_to_the_uninterrupted_result(workspace, tmp_path):
    save = str(tmp_path / 'kd')
    argv = run_argv(workspace, save, 'kd', '--resume', fixture('kd_mid_epoch_ckpt_last.pth'))
    assert train_student.main(argv) == 0
    resumed, straight = final_checkpoint(save), load_checkpoint(fixture('kd_final_ckpt_last.pth'))
    start = load_checkpoint(fixture('kd_mid_epoch_ckpt_last.pth'))
    assert_same_trajectory(resumed['model'], straight['model'], start['model'])
    assert_same_trajectory(*(momenta(c) for c in (resumed, straight, start)))


def test_old_crd_checkpoint_resumes_with_its_memory_bank(workspace, tmp_path):
    save = str(tmp_path / 'crd')
    argv = run_argv(workspace, save, 'crd', '--resume', fixture('crd_epoch1_ckpt_last.pth'))
    assert train_student.main(argv) == 0
    resumed, straight = final_checkpoint(save), load_checkpoint(fixture('crd_final_ckpt_last.pth'))
    start = load_checkpoint(fixture('crd_epoch1_ckpt_last.pth'))
    for part in ('model', 'method_state'):
        assert_same_trajectory(resumed[part], straight[part], start[part])
    assert 'criterion_kd.contrast.memory_v1' in resumed['method_state']


def test_old_dml_checkpoint_resumes_both_networks(workspace, tmp_path):
    save = str(tmp_path / 'dml')
    old = load_checkpoint(fixture('dml_ckpt_last.pth'))
    argv = run_argv(workspace, save, 'dml', '--resume', fixture('dml_ckpt_last.pth'))
    assert train_student.main(argv) == 0
    resumed = final_checkpoint(save)
    assert resumed['epoch'] == 3 and resumed['peer'].keys() == old['peer'].keys()
    # One more epoch moved both networks on from their stored weights.
    for network in ('model', 'peer'):
        key = 'fc.weight'
        assert not torch.equal(resumed[network][key], old[network][key])
        assert (resumed[network][key] - old[network][key]).abs().max() < 0.1


# -- written at bddd848, before checkpoints became one record -----------------------------------
CTKD_DOT = ('--ctkd', '--optimizer', 'dot')


def test_ctkd_dot_checkpoint_resumes_to_the_uninterrupted_result(workspace, tmp_path):
    """The learned temperature and DOT's two momenta come back from a mid-epoch checkpoint."""
    save = str(tmp_path / 'ctkd_dot')
    start = fixture('ctkd_dot_mid_epoch_ckpt_last.pth')
    assert train_student.main(run_argv(workspace, save, 'kd', *CTKD_DOT, '--resume', start)) == 0
    resumed, straight = final_checkpoint(save), load_checkpoint(fixture(
        'ctkd_dot_final_ckpt_last.pth'))
    start = load_checkpoint(start)
    assert_same_trajectory(resumed['model'], straight['model'], start['model'])
    assert resumed['method_state'].keys() == {'learned_T.global_T.global_T'}
    for buffer in ('momentum_buffer', 'momentum_kd_buffer'):
        assert_same_trajectory(*({i: s[buffer] for i, s in c['optimizer']['state'].items()
                                  if buffer in s} for c in (resumed, straight, start)))


def test_ctkd_dot_student_evaluates_to_its_recorded_accuracy(workspace, capsys):
    path = fixture('ctkd_dot_student_last.pth')
    assert evaluated_top1(capsys, path, workspace[0]) == pytest.approx(
        load_checkpoint(path)['accuracy'], abs=1e-6)


@pytest.mark.parametrize('name', sorted(os.listdir(FIXTURES)))
def test_the_checkpoint_record_keeps_every_entry_of_older_files(name):
    """Read into a ``Checkpoint`` and written out again, a file of an older version has the
    same entries (a ``ckpt_last.pth`` older than the record of its inputs gains an empty
    one): the record's layout is theirs."""
    raw = load_checkpoint(fixture(name))
    again = Checkpoint.from_dict(raw).as_dict()
    assert again.keys() == {k for k, v in raw.items() if v is not None} | (
        {'epoch_stats', 'identity'} if 'stage' in raw else set())
    flat_raw, flat_again = flatten(raw), flatten(again)
    assert all(torch.equal(flat_again[k], v) if isinstance(v, torch.Tensor) else
               flat_again[k] == v for k, v in flat_raw.items())


def flatten(state, prefix=''):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(flatten(value, f'{prefix}{key}/'))
        else:
            out[f'{prefix}{key}'] = value
    return out
