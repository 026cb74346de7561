"""The scripts end to end on a tiny CIFAR-100 tree: one short epoch each, in-process."""
import json
import os

import pytest
import torch

import train_student
import train_teacher
from conftest import train_teacher_run
from helper.checkpoint import load_checkpoint, save_checkpoint
from models import get_model

FAST = ['--epochs', '1', '--batch_size', '32', '--num_workers', '0', '--save_freq', '1']


def teacher_run(cifar_root, save_dir, model='resnet14'):
    return train_teacher_run(cifar_root, save_dir, '--seed', '0', *FAST, model=model)


def test_teacher_then_kd_student(cifar_root, tmp_path, capsys):
    save = str(tmp_path / 'save')
    run, teacher_path = teacher_run(cifar_root, save)
    assert sorted(os.listdir(run)) == ['ckpt_epoch_1.pth', 'ckpt_last.pth', 'metrics.jsonl',
                                       'resnet14_best.pth', 'resnet14_last.pth', 'summary.json']
    assert os.listdir(os.path.join(save, 'tensorboard'))

    epoch_ckpt = load_checkpoint(os.path.join(run, 'ckpt_epoch_1.pth'))
    assert {'model', 'epoch', 'accuracy', 'optimizer', 'arch'} <= set(epoch_ckpt)
    model = get_model('resnet14', 100)
    model.load_state_dict(epoch_ckpt['model'], strict=True)
    last = load_checkpoint(teacher_path)
    assert last['opt']['model'] == 'resnet14' and 'best_acc' in load_checkpoint(
        os.path.join(run, 'resnet14_best.pth'))
    teacher_bytes = open(teacher_path, 'rb').read()

    argv = ['--path_t', teacher_path, '--model_s', 'resnet8', '--distill', 'kd',
            '--data_folder', cifar_root, '--save_dir', save, '--seed', '0']
    assert train_student.main(argv + FAST) == 0
    out = capsys.readouterr().out
    assert 'weights -r 0.1 -a 0.9 -b 0.0' in out and 'teacher resnet14: acc@1' in out
    assert 'epoch   1/1' in out and 'done:' in out
    student_run = os.path.join(save, 'student_model',
                               'S:resnet8_T:resnet14_cifar100_kd_r:0.1_a:0.9_b:0.0_1')
    assert sorted(os.listdir(student_run)) == [
        'ckpt_epoch_1.pth', 'ckpt_last.pth', 'metrics.jsonl', 'resnet8_best.pth', 'resnet8_last.pth',
        'summary.json']
    metrics = [json.loads(line) for line in open(os.path.join(student_run, 'metrics.jsonl'))]
    assert len(metrics) == 1 and metrics[0]['epoch'] == 1 and metrics[0]['lr'] == 0.05
    assert {'train_loss_cls', 'train_loss_div', 'train_top1', 'train_top5', 'test_top1',
            'test_top5', 'epoch_seconds', 'images_per_second'} <= set(metrics[0])
    summary = json.load(open(os.path.join(student_run, 'summary.json')))
    assert summary['student'] == 'resnet8' and summary['teacher'] == 'resnet14'
    assert summary['student_params'] == sum(p.numel() for p in get_model('resnet8', 100).parameters())
    assert summary['last_acc'] == metrics[0]['test_top1'] and summary['args']['distill'] == 'kd'
    assert summary['device'] == 'cpu' and 'git_commit' in summary and summary['wall_seconds'] > 0
    student = get_model('resnet8', 100)
    student.load_state_dict(load_checkpoint(os.path.join(student_run, 'resnet8_best.pth'))['model'])
    assert os.listdir(os.path.join(save, 'student_tensorboards'))
    assert open(teacher_path, 'rb').read() == teacher_bytes  # the teacher file is untouched


def test_explicit_weights_and_simkd_aliases(cifar_root, tmp_path, capsys):
    save = str(tmp_path / 'save')
    _, teacher_path = teacher_run(cifar_root, save, model='resnet8')
    argv = ['--path_t', teacher_path, '--model_s', 'resnet8', '--distill', 'kd', '-c', '1',
            '-d', '0.5', '-b', '0', '--data_folder', cifar_root, '--save_dir', save]
    assert train_student.main(argv + FAST) == 0
    assert 'weights -r 1.0 -a 0.5 -b 0.0' in capsys.readouterr().out


def test_missing_teacher_file(cifar_root, tmp_path, capsys):
    argv = ['--path_t', str(tmp_path / 'resnet8_vanilla' / 'nope.pth'), '--data_folder',
            cifar_root, '--save_dir', str(tmp_path / 'save')]
    assert train_student.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert err.startswith('error:') and 'nope.pth' in err and 'does not exist' in err


def test_teacher_that_does_not_match_its_architecture(cifar_root, tmp_path, capsys):
    path = tmp_path / 'resnet20_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    save_checkpoint({'model': get_model('resnet8', 100).state_dict()}, str(path))
    argv = ['--path_t', str(path), '--data_folder', cifar_root, '--save_dir', str(tmp_path)]
    assert train_student.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert 'does not match architecture resnet20' in err and 'Traceback' not in err


def test_corrupt_teacher_file(cifar_root, tmp_path, capsys):
    path = tmp_path / 'resnet8_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    path.write_bytes(b'\x00' * 100)
    argv = ['--path_t', str(path), '--data_folder', cifar_root, '--save_dir', str(tmp_path)]
    assert train_student.main(argv + FAST) == 2
    assert 'cannot read checkpoint' in capsys.readouterr().err


def test_unknown_model_is_rejected_with_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_teacher.main(['--model', 'resnet9000'])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'resnet9000'" in err and 'resnet32x4' in err


def test_unknown_method_is_rejected(capsys):
    with pytest.raises(SystemExit):
        train_student.main(['--path_t', 'x.pth', '--distill', 'kdd'])
    assert "invalid choice: 'kdd'" in capsys.readouterr().err


def test_missing_dataset(tmp_path, capsys):
    argv = ['--model', 'resnet8', '--data_folder', str(tmp_path / 'empty'),
            '--save_dir', str(tmp_path)]
    assert train_teacher.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert 'cifar-100-python' in err and 'downloading it failed' in err


def test_malformed_decay_epochs(capsys):
    assert train_teacher.main(['--lr_decay_epochs', '150,oops']) == 2
    assert '--lr_decay_epochs' in capsys.readouterr().err


def test_learning_rate_default_depends_on_student():
    assert train_teacher.parse_option(['--model', 'ShuffleV1']).learning_rate == 0.01
    assert train_teacher.parse_option(['--model', 'resnet8']).learning_rate == 0.05
    assert train_teacher.parse_option(['--model', 'ShuffleV1', '--learning_rate', '0.1'
                                       ]).learning_rate == 0.1


def test_schedule_matches_repdistiller():
    from helper.util import learning_rate_at
    opt = train_teacher.parse_option([])
    assert [round(learning_rate_at(e, opt), 8) for e in (1, 150, 151, 180, 181, 211, 240)] == [
        0.05, 0.05, 0.005, 0.005, 0.0005, 0.00005, 0.00005]


def test_loading_repdistiller_last_checkpoint_with_namespace(tmp_path):
    import argparse
    path = tmp_path / 'resnet8_last.pth'
    torch.save({'opt': argparse.Namespace(model='resnet8'),
                'model': get_model('resnet8', 100).state_dict()}, path)
    assert load_checkpoint(str(path))['opt'].model == 'resnet8'
