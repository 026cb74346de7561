"""The teacher-output cache (--teacher_cache)."""
import os

import numpy as np
import pytest
import torch

import helper.teacher_cache
import train_student
from conftest import student_argv, tiny_set
from dataset import DATASETS
from dataset.augment import crop_and_flip
from dataset.batch import Batch
from dataset.rounds import jpeg_round_trip
from distiller_zoo import get_method
from distiller_zoo.sources import STORABLE
from core.checkpoint import load_checkpoint
from core.config import TrainingConfig
from helper.teacher_cache import CachedTeacher, build_store, draw_rounds
from models import get_model
from builders import build
from runs import metric_records, run_folder, signal_after

SOURCE = DATASETS['cifar100']
TRAINING = TrainingConfig(epochs=1, learning_rate=0.05, lr_decay_epochs=(),
                          lr_decay_rate=0.1, weight_decay=0, momentum=0.9, save_freq=1)


def normalised(views):
    mean = torch.tensor(SOURCE.mean).view(1, 3, 1, 1)
    std = torch.tensor(SOURCE.std).view(1, 3, 1, 1)
    return (views.float() / 255 - mean) / std


def live_outputs(teacher, images, choices):
    """The teacher's logits and embeddings on each image's crop, flip and coding."""
    coded = np.stack([jpeg_round_trip(im, q) for im, q in zip(images, choices[:, 0])])
    views = crop_and_flip(torch.from_numpy(coded).permute(0, 3, 1, 2),
                          *torch.from_numpy(choices[:, 1:3].astype(np.int64)).unbind(1),
                          torch.from_numpy(choices[:, 3]).bool())
    with torch.no_grad():
        feats, logits = teacher(normalised(views), is_feat=True)
    return logits, feats[-1]


@pytest.mark.parametrize('coded', [False, True])
def test_stored_outputs_equal_the_live_teachers(tmp_path, coded):
    teacher = get_model('resnet8', 10).eval()
    data = tiny_set()
    choices = draw_rounds(2, len(data), seed=5)
    if coded:  # CKD's rounds: the teacher's views are coded
        choices[..., 0] = [[100, 0, 50, -1, 25, 75], [10, 20, 30, 40, 60, -1]]
    build_store(teacher, data.images, choices, SOURCE, torch.device('cpu'), TRAINING,
                str(tmp_path))
    store = CachedTeacher(teacher, str(tmp_path), 2, seed=0)
    for r in range(2):
        store.load_round(r)
        stored = store(Batch(None, None, torch.arange(6)), STORABLE)
        logits, embedding = live_outputs(teacher, data.images, choices[r])
        assert torch.allclose(stored.logits, logits, atol=1e-5)
        assert torch.allclose(stored.feats[-1], embedding, atol=1e-5)


def test_several_teachers_have_a_store_each_and_their_logits_weighed(tmp_path):
    from distiller_zoo.sources import TeacherEnsemble
    torch.manual_seed(0)
    first, second = get_model('resnet8', 10).eval(), get_model('wrn_16_1', 10).eval()
    data = tiny_set()
    choices = draw_rounds(1, len(data), seed=5)
    folders = [str(tmp_path / 'a'), str(tmp_path / 'b')]
    for net, folder in zip((first, second), folders):
        os.makedirs(folder)
        build_store(net, data.images, choices, SOURCE, torch.device('cpu'), TRAINING, folder)
    store = CachedTeacher(first, folders, 1, seed=0, weights=(0.25, 0.75))
    store.load_round(0)
    stored = store(Batch(None, None, torch.arange(6)), STORABLE)
    views = normalised(crop_and_flip(torch.from_numpy(data.images).permute(0, 3, 1, 2),
                                     *torch.from_numpy(choices[0, :, 1:3].astype(np.int64)
                                                       ).unbind(1),
                                     torch.from_numpy(choices[0, :, 3]).bool()))
    live = TeacherEnsemble([first, second], (0.25, 0.75))(Batch(views, None), STORABLE)
    assert torch.allclose(stored.logits, live.logits, atol=1e-5)
    assert torch.allclose(stored.feats[-1], live.feats[-1], atol=1e-5)  # the first one's


def test_cached_and_live_teacher_give_the_same_losses(tmp_path):
    distiller, teacher, student = build('crd')
    data = tiny_set(8)
    choices = draw_rounds(1, 8, seed=2)
    build_store(teacher, data.images, choices, SOURCE, torch.device('cpu'), TRAINING,
                str(tmp_path))
    store = CachedTeacher(teacher, str(tmp_path), 1, seed=0)
    store.set_epoch(1)
    views = normalised(crop_and_flip(torch.from_numpy(data.images).permute(0, 3, 1, 2),
                                     *torch.from_numpy(choices[0, :, 1:3].astype(np.int64)).unbind(1),
                                     torch.from_numpy(choices[0, :, 3]).bool()))
    y, index = torch.tensor(data.targets), torch.arange(8)
    contrast = torch.randint(0, 8, (8, 21), generator=torch.Generator().manual_seed(0))
    distiller.train()
    state = {k: v.clone() for k, v in distiller.state_dict().items()}
    live = distiller.forward_train(Batch(views, y, index, contrast))[1]
    # The same method (CRD's memory as it was before the live step) with the store instead.
    cached_distiller = get_method('crd')(student, store, distiller.config)
    cached_distiller.load_state_dict(state)
    cached_distiller.train()
    teacher.forward = None  # no teacher forward may happen
    cached = cached_distiller.forward_train(Batch(views, y, index, contrast))[1]
    assert live.keys() == cached.keys()
    for name in live:
        assert cached[name].item() == pytest.approx(live[name].item(), rel=1e-5, abs=1e-6), name


FAST = ['--epochs', '3', '--batch_size', '16', '--num_workers', '0', '--seed', '6',
        '--teacher_cache', '2', '--save_freq', '1']


def argv(tiny, save, distill='kd', extra=()):
    return student_argv(*tiny[:2], save, *FAST, *extra, distill=distill)


def test_store_is_reused_and_rebuilt_for_another_teacher(tiny, tmp_path, monkeypatch, capsys):
    calls = []
    original = helper.teacher_cache.build_store
    monkeypatch.setattr(helper.teacher_cache, 'build_store',
                        lambda *a: calls.append(1) or original(*a))
    save = str(tmp_path)
    assert train_student.main(argv(tiny, save, extra=['--trial', 'a'])) == 0
    assert train_student.main(argv(tiny, save, 'pkt', ['--trial', 'b'])) == 0
    assert len(calls) == 1  # the second run (another method) reuses the store
    out = capsys.readouterr().out
    assert out.count('teacher cache: running the teacher') == 1 and 'MiB' in out
    teacher = tmp_path / 'resnet8_vanilla' / 'ckpt.pth'
    teacher.parent.mkdir()
    torch.save({'model': get_model('resnet8', 100).state_dict()}, teacher)
    other = argv(tiny, save, extra=['--trial', 'c'])
    other[other.index('--path_t') + 1] = str(teacher)
    assert train_student.main(other) == 0
    assert len(calls) == 2 and len(os.listdir(os.path.join(save, 'teacher_cache'))) == 2


def test_a_method_needing_maps_is_refused(tiny, tmp_path, capsys):
    assert train_student.main(argv(tiny, str(tmp_path), 'attention')) == 2
    err = capsys.readouterr().err
    assert "--distill attention needs feature maps" in err and not os.listdir(tmp_path)
    assert train_student.main(argv(tiny, str(tmp_path), 'dml')) == 2
    assert 'needs a teacher that trains' in capsys.readouterr().err


@pytest.mark.parametrize('loader', ['device', 'classic'])
def test_a_resumed_cached_run_ends_bit_identical(tiny, monkeypatch, loader):
    root, flags = tiny[2], ['--loader', loader]
    straight, resumed = str(root / f'straight_{loader}'), str(root / f'resumed_{loader}')
    assert train_student.main(argv(tiny, straight, extra=flags)) == 0
    signal_after(monkeypatch, 4)  # teacher validation 2, then epoch 1's second step
    assert train_student.main(argv(tiny, resumed, extra=flags)) == 130
    monkeypatch.undo()
    assert train_student.main(argv(tiny, resumed, extra=flags + ['--resume', 'auto'])) == 0
    a = load_checkpoint(os.path.join(run_folder(straight), 'resnet8_last.pth'))['model']
    b = load_checkpoint(os.path.join(run_folder(resumed), 'resnet8_last.pth'))['model']
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metric_records(straight) == metric_records(resumed)


def test_cache_with_ckd_needs_its_rounds(tiny, tmp_path, capsys):
    assert train_student.main(argv(tiny, str(tmp_path), extra=['--ckd', 'ckd', '--ckd_rounds',
                                                               '3'])) == 2
    assert 'give --teacher_cache 3' in capsys.readouterr().err
    assert train_student.main(argv(tiny, str(tmp_path), extra=[
        '--ckd', 'ckd', '--ckd_rounds', '2', '--ckd_delta', '50'])) == 0
