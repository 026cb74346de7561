"""Multi-process runs on the CPU (gloo): torchrun, SimKD's spawn flags, ImageNet layout."""
import json
import os

import pytest
import torch

import train_student
import train_teacher
from conftest import train_teacher_run, write_cifar100, write_imagenet
from runs import same_weights, torchrun
from core.checkpoint import load_checkpoint

FAST = ['--epochs', '1', '--batch_size', '16', '--num_workers', '0', '--seed', '0', '--save_freq', '1']


@pytest.mark.processes
def test_torchrun_teacher_and_kd_student(tmp_path):
    """The teacher on the classic loader, the student on the device loader: each loader under
    torchrun once (a process start costs seconds)."""
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=64, n_test=20)
    save = str(tmp_path / 'save')
    common = ['--data_folder', data, '--save_dir', save] + FAST
    result = torchrun(tmp_path, 'train_teacher', ['--model', 'resnet8', '--loader', 'classic']
                      + common, str(tmp_path / 'dump_t'))
    assert result.stdout.count('epoch   1/1') == 1  # rank 0 alone prints
    assert same_weights(str(tmp_path / 'dump_t'))
    run = os.path.join(save, 'models', 'resnet8_cifar100_lr_0.05_decay_0.0005_trial_0')
    assert sorted(os.listdir(run)) == ['ckpt_epoch_1.pth', 'ckpt_last.pth', 'metrics.jsonl',
                                       'resnet8_best.pth', 'resnet8_last.pth', 'summary.json']
    metrics = [json.loads(line) for line in open(os.path.join(run, 'metrics.jsonl'))]
    assert len(metrics) == 1
    assert json.load(open(os.path.join(run, 'summary.json')))['processes'] == 2
    teacher = os.path.join(run, 'resnet8_last.pth')

    dump = str(tmp_path / 'dump_s')
    torchrun(tmp_path, 'train_student', ['--path_t', teacher, '--model_s', 'resnet8',
                                         '--distill', 'crd', '--nce_k', '20', '--loader',
                                         'device'] + common, dump)
    assert same_weights(dump)
    student_runs = os.listdir(os.path.join(save, 'student_model'))
    assert len(student_runs) == 1
    ckpt = load_checkpoint(os.path.join(save, 'student_model', student_runs[0],
                                        'resnet8_last.pth'))
    saved = torch.load(os.path.join(dump, 'rank0.pt'))
    assert all(torch.equal(saved[k], ckpt['model'][k]) for k in saved)


@pytest.mark.processes
def test_torchrun_rrd_with_coded_teacher_from_the_cache(tmp_path):
    """Two processes: CKD's rounds and the teacher-output store are built once (by rank 0) and
    shared; every process enqueues the whole global batch, so RRD's queues stay identical."""
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=64, n_test=20)
    save = str(tmp_path / 'save')
    common = ['--data_folder', data, '--save_dir', save] + FAST
    _, teacher = train_teacher_run(data, save, *FAST[2:], model='resnet8')
    dump = str(tmp_path / 'dump_rrd')
    result = torchrun(tmp_path, 'train_student', [
        '--path_t', teacher, '--model_s', 'resnet8', '--distill', 'rrd', '--nce_k', '24',
        '--ckd', 'ckd', '--ckd_rounds', '2', '--ckd_delta', '50', '--teacher_cache', '2'
    ] + common + ['--epochs', '2'], dump)
    assert result.stdout.count('ckd: preparing') == 1
    assert result.stdout.count('teacher cache: running the teacher') == 1
    assert same_weights(dump)
    queues = [torch.load(os.path.join(dump, f'rank{r}_method.pt'))['criterion_kd.queue']
              for r in (0, 1)]
    assert torch.equal(*queues)
    pointer = torch.load(os.path.join(dump, 'rank0_method.pt'))['criterion_kd.queue_ptr']
    assert int(pointer) == (2 * 64) % 24  # both processes' keys, two epochs of 64 images


@pytest.mark.processes
def test_simkd_spawn_flags_on_cpu(tmp_path):
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=32, n_test=8)
    argv = ['--model', 'resnet8', '--data_folder', data, '--save_dir', str(tmp_path / 'save'),
            '--multiprocessing-distributed', '--dist-url', 'tcp://127.0.0.1:29517',
            '--gpu_id', '0,1', '--dali', 'gpu'] + FAST
    assert train_teacher.main(argv) == 0
    run = tmp_path / 'save' / 'models' / 'resnet8_cifar100_lr_0.05_decay_0.0005_trial_0'
    assert json.loads((run / 'summary.json').read_text())['processes'] == 2


def test_bad_dist_url(tmp_path, capsys):
    argv = ['--model', 'resnet8', '--multiprocessing-distributed', '--dist-url', 'nowhere',
            '--gpu_id', '0,1', '--save_dir', str(tmp_path)]
    assert train_teacher.main(argv) == 2
    assert '--dist-url must look like' in capsys.readouterr().err


def test_imagenet_layout_trains_and_validates(tmp_path, capsys):
    root = str(tmp_path)
    write_imagenet(root)
    save = str(tmp_path / 'save')
    argv = ['--dataset', 'imagenet', '--model', 'MobileNetV1', '--data_folder', root,
            '--save_dir', save, '--epochs', '1', '--batch_size', '4', '--num_workers', '0']
    assert train_teacher.main(argv) == 0
    out = capsys.readouterr().out
    assert 'epoch   1/1' in out
    run = os.path.join(save, 'models', 'MobileNetV1_imagenet_lr_0.05_decay_0.0005_trial_0')
    summary = json.load(open(os.path.join(run, 'summary.json')))
    assert summary['model_params'] == 4231976  # the 1000-class ImageNet network
    teacher = os.path.join(run, 'MobileNetV1_last.pth')
    assert train_student.main(['--dataset', 'imagenet', '--path_t', teacher, '--model_s',
                               'ResNet18', '--distill', 'kd', '--data_folder', root,
                               '--save_dir', save, '--epochs', '1', '--batch_size', '4',
                               '--num_workers', '0']) == 0


def test_torchvision_teacher_offline_and_cached(tmp_path, monkeypatch, capsys):
    from torchvision.models import ResNet18_Weights, resnet18

    from helper.teachers import load_teacher
    from core.util import UserError
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    with pytest.raises(UserError, match='could not get torchvision'):
        load_teacher('torchvision:resnet18', 1000, 'imagenet')
    # With the weights file in torch's cache (as after one online run) it loads offline.
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True, exist_ok=True)
    reference = resnet18().eval()
    torch.save(reference.state_dict(), cache / os.path.basename(ResNet18_Weights.DEFAULT.url))
    model, name = load_teacher('torchvision:resnet18', 1000, 'imagenet')
    x = torch.randn(1, 3, 224, 224)
    assert name == 'ResNet18' and torch.allclose(model.eval()(x), reference(x), atol=1e-5)
    with pytest.raises(UserError, match='torchvision teachers'):
        load_teacher('torchvision:alexnet', 1000, 'imagenet')
