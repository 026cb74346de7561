"""Any architecture, end to end on the CPU with tiny data: the command lines of the issue (a
timm ViT teacher, timm students, OFA-KD, several teachers, a folder data set, evaluation), the
teacher-output cache and renormalisation for timm teachers, exact resume of a timm student, and
the bad inputs, each answered in one line."""
import os

import pytest
import torch

import eval_student
import train_student
import train_teacher
from conftest import student_argv, write_imagenet
from core.checkpoint import save_checkpoint
from helper.teachers import renormalize_inputs
from models import get_model
from runs import metric_records, run_folder, straight_and_resumed

ONE_EPOCH = ['--epochs', '1', '--batch_size', '16', '--num_workers', '0']


@pytest.fixture(scope='module')
def vit_teacher(tiny):
    """``python train_teacher.py --model timm:vit_tiny_patch16_224 --epochs 1``, on the tiny
    CIFAR-100 tree (a 2x2 grid of 16-pixel patches at 32x32)."""
    data, _, root = tiny
    save = str(root / 'vit')
    assert train_teacher.main(['--model', 'timm:vit_tiny_patch16_224', '--data_folder', data,
                               '--save_dir', save] + ONE_EPOCH) == 0
    return os.path.join(save, 'models', 'timm:vit_tiny_patch16_224_vanilla', 'ckpt_epoch_1.pth')


def student_run(tiny, teachers, save, model_s, distill, *flags):
    data = tiny[0]
    argv = student_argv(data, teachers[0], save, *ONE_EPOCH, *flags, distill=distill,
                        model_s=model_s)
    argv[1:2] = teachers
    return train_student.main(argv)


@pytest.mark.parametrize('distill', ['kd', 'ofa', 'fitnet'])
def test_a_vit_teacher_teaches_a_cifar_resnet(tiny, vit_teacher, distill, capsys):
    assert student_run(tiny, [vit_teacher], str(tiny[2] / f'vit_{distill}'), 'resnet8',
                       distill) == 0
    out = capsys.readouterr().out
    assert 'timm:vit_tiny_patch16_224 (' in out and f'-> resnet8 with {distill}' in out


@pytest.mark.parametrize('model_s, distill', [('timm:resnet10t', 'dkd'),
                                              ('timm:deit_tiny_patch16_224', 'ofa')])
def test_a_cifar_teacher_teaches_timm_students_and_eval_reads_them(tiny, model_s, distill,
                                                                    capsys):
    save = str(tiny[2] / f'to_{distill}')
    assert student_run(tiny, [tiny[1]], save, model_s, distill) == 0
    run = run_folder(save)
    last_epoch = metric_records(save)[-1]
    capsys.readouterr()
    assert eval_student.main(['--path', os.path.join(run, f'{model_s}_last.pth'),
                              '--data_folder', tiny[0], '--num_workers', '0']) == 0
    out = capsys.readouterr().out
    assert (f'{model_s} on cifar100 test (16 images): acc@1 {last_epoch["test_top1"]:.2f} '
            f'acc@5 {last_epoch["test_top5"]:.2f}') in out


def test_two_teachers_of_two_architectures_teach_together(tiny, vit_teacher, capsys):
    assert student_run(tiny, [tiny[1], vit_teacher], str(tiny[2] / 'two'), 'resnet8',
                       'kd') == 0
    assert 'resnet8+timm:vit_tiny_patch16_224' in capsys.readouterr().out
    # the cache stores each teacher's outputs, one store each
    assert student_run(tiny, [tiny[1], vit_teacher], str(tiny[2] / 'two'), 'resnet8', 'kd',
                       '--teacher_cache', '1', '--trial', 'cached') == 0
    assert capsys.readouterr().out.count('teacher cache: running the teacher') == 2


def test_a_teacher_on_a_folder_data_set(tmp_path, capsys):
    write_imagenet(str(tmp_path), classes=('a', 'b', 'c'), per_class=2, size=(40, 48))
    assert train_teacher.main(['--dataset', 'folder', '--data_folder',
                               str(tmp_path / 'imagenet'), '--model', 'resnet8',
                               '--save_dir', str(tmp_path / 'save')] + ONE_EPOCH) == 0
    out = capsys.readouterr().out
    assert '3 classes (a, b, c)' in out and 'training resnet8 on folder' in out


def test_a_timm_student_resumes_exactly(tiny, monkeypatch, capsys):
    straight_and_resumed(tiny, monkeypatch, capsys, 'kd', ['--model_s', 'timm:resnet10t'], 5,
                         'timm')


def test_a_vit_teacher_is_cached_and_its_inputs_resized(tiny, vit_teacher, capsys):
    flags = ['--teacher_cache', '1', '--img_size', '48']
    assert student_run(tiny, [vit_teacher], str(tiny[2] / 'cached'), 'resnet8', 'kd',
                       *flags) == 2  # the teacher was trained at 32: its positions differ
    err = capsys.readouterr().err
    assert 'pos_embed' in err and len(err.strip().splitlines()) == 1
    assert student_run(tiny, [vit_teacher], str(tiny[2] / 'cached'), 'resnet8', 'kd',
                       '--teacher_cache', '1') == 0
    assert 'teacher cache: running the teacher' in capsys.readouterr().out
    # a CNN teacher takes any size: the cache runs it on the resized crops
    assert student_run(tiny, [tiny[1]], str(tiny[2] / 'cached'), 'resnet8', 'kd', *flags) == 0
    out = capsys.readouterr().out
    assert 'teacher cache: running the teacher' in out and '_img_size:48' in out


def test_renormalisation_maps_the_data_sets_normalisation_to_the_teachers():
    torch.manual_seed(0)
    net = get_model('resnet8', 10).eval()
    data_norm, own = ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), ((0.485, 0.456, 0.406),
                                                          (0.229, 0.224, 0.225))
    raw = torch.rand(2, 3, 32, 32)

    def normalised(norm):
        return (raw - torch.tensor(norm[0]).view(1, 3, 1, 1)) / torch.tensor(norm[1]).view(
            1, 3, 1, 1)
    expected = net(normalised(own))
    handle = renormalize_inputs(net, data_norm, own)
    assert torch.allclose(net(normalised(data_norm)), expected, atol=1e-5)
    feats, logits = net(normalised(data_norm), is_feat=True)  # keyword arguments pass through
    assert torch.allclose(logits, expected, atol=1e-5)
    handle.remove()


def test_timms_own_weights_teach_through_renormalisation(tiny, monkeypatch, capsys):
    # offline here: timm's weights are stood in for by its random initialisation
    import timm
    create = timm.create_model
    monkeypatch.setattr(timm, 'create_model', lambda *a, pretrained, **k: create(*a, **k))
    monkeypatch.setattr('models.timm_models._with_weights', lambda name, make: make())
    assert student_run(tiny, ['timm:resnet10t'], str(tiny[2] / 'pretrained'), 'resnet8',
                       'kd') == 0
    out = capsys.readouterr().out
    assert ('teacher timm:resnet10t expects inputs normalised with mean (0.485, 0.456, 0.406)'
            in out)


def test_bad_inputs_get_one_line(tiny, vit_teacher, tmp_path, capsys):
    data, teacher, _ = tiny
    save = str(tmp_path)

    def refused(argv, *expected):
        assert train_student.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
        for text in expected:
            assert text in err, err

    refused(student_argv(data, teacher, save, '--model_s', 'timm:resnet_10t'),
            "timm has no model 'resnet_10t'; did you mean timm:resnet10t")
    refused(student_argv(data, teacher, save, '--model_t', 'timm:resnet10t', *ONE_EPOCH),
            'does not match architecture timm:resnet10t', 'missing keys', 'look like resnet8')
    os.makedirs(tmp_path / 'resnet8_ten')
    ten_classes = str(tmp_path / 'resnet8_ten' / 'ckpt.pth')
    save_checkpoint({'model': get_model('resnet8', 10).state_dict()}, ten_classes)
    refused(student_argv(data, teacher, save, *ONE_EPOCH)[:1] + [teacher, ten_classes]
            + student_argv(data, teacher, save, *ONE_EPOCH)[2:],
            'with 100 classes', 'resnet8 with 10 classes')
    refused(student_argv(data, vit_teacher, save, '--distill', 'simkd', *ONE_EPOCH),
            'cannot distil timm:vit_tiny_patch16_224 into resnet8',
            'map the teacher\'s classifier pools')
    refused(student_argv(data, teacher, save, '--pretrained'), '--pretrained takes timm')
