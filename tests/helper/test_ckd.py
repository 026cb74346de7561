"""CKD: adaptive-JPEG-coded teacher inputs."""
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import helper.ckd
import train_student
from conftest import student_argv, tiny_set
from dataset import DATASETS
from dataset.augment import crop_and_flip
from dataset.batch import Batch
from dataset.loaders import ClassicLoader, DeviceLoader
from dataset.rounds import (CLEAN, StoredRounds, candidate_qualities, code_images,
                            jpeg_round_trip)
from core.checkpoint import load_checkpoint
from helper.ckd import cache_path, load_or_prepare, select_candidates
from builders import build, fixed_batch
from runs import metric_records, run_folder, signal_after


def sampling_factors(jpeg):
    """The (horizontal, vertical) sampling factors of each component, from the frame header."""
    at = jpeg.index(b'\xff\xc0')  # baseline start of frame
    components = jpeg[at + 9]
    return [divmod(jpeg[at + 11 + 3 * i], 16) for i in range(components)]


@pytest.mark.parametrize('quality', [0, 1, 5, 50, 95, 100])
def test_coding_is_a_4_4_4_jpeg_round_trip(quality):
    image = np.random.default_rng(quality).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=quality, subsampling=0)
    assert sampling_factors(buffer.getvalue()) == [(1, 1)] * 3  # no chroma subsampling
    reference = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert('RGB'))
    coded = jpeg_round_trip(image, quality)
    assert coded.dtype == np.uint8 and np.array_equal(coded, reference)
    assert np.array_equal(code_images(np.stack([image] * 300), [quality] * 300, workers=2)[7],
                          reference)  # the same spread over processes
    assert np.array_equal(jpeg_round_trip(image, CLEAN), image)
    if quality < 100:
        assert not np.array_equal(coded, image)


def test_candidates_are_the_clean_image_and_every_quality_step():
    assert candidate_qualities(5) == [CLEAN] + list(range(0, 101, 5))
    assert len(candidate_qualities(5)) == 22 and candidate_qualities(50) == [CLEAN, 0, 50, 100]


def logits_from(probabilities):
    return torch.tensor(probabilities).log()


def test_selection_rule_on_hand_made_teacher_outputs():
    clean = [0.7, 0.2, 0.1]
    near, far, wrong = [0.6, 0.3, 0.1], [0.4, 0.35, 0.25], [0.2, 0.7, 0.1]
    labels = torch.tensor([0, 0, 0, 0])
    logits = logits_from([
        [clean, near, far, wrong],   # the farthest correct candidate: far (2)
        [clean, far, far, near],     # a tie: the first of them (1)
        [wrong, wrong, wrong, wrong],  # nothing correct: the clean image (0)
        [clean, clean, clean, clean],  # nothing moves: the clean image (0)
    ])
    assert select_candidates(logits, labels, 'correct').tolist() == [2, 1, 0, 0]
    # 'all': the wrong candidate diverges most and may be chosen
    assert select_candidates(logits, labels, 'all').tolist()[0] == 3


def test_rounds_cycle_in_a_new_shuffled_order_each_time():
    rounds = StoredRounds(np.zeros((5, 3, 4), dtype=np.int16), seed=7)
    first = [rounds.round_for_epoch(e) for e in range(1, 6)]
    second = [rounds.round_for_epoch(e) for e in range(6, 11)]
    assert sorted(first) == sorted(second) == list(range(5))
    assert first != second  # reshuffled (for this seed)
    assert rounds.round_for_epoch(243) in range(5)  # no crash when rounds run out


def known_rounds(n=6):
    """Two rounds: qualities, crop offsets and flips that differ per image."""
    choices = np.zeros((2, n, 4), dtype=np.int16)
    for r in range(2):
        choices[r] = [[(CLEAN, 10, 30, 50, 70, 100)[(i + r) % 6], i % 9, (2 * i + r) % 9,
                       (i + r) % 2] for i in range(n)]
    return choices


@pytest.mark.parametrize('mode', ['ckd', 'clean'])
@pytest.mark.parametrize('loader', ['device', 'classic'])
def test_both_views_share_crop_and_flip_and_only_the_teacher_view_is_coded(mode, loader):
    data, choices = tiny_set(), known_rounds()
    rounds = StoredRounds(choices, seed=3, coded=mode == 'ckd')
    mean, std = DATASETS['cifar100'].mean, DATASETS['cifar100'].std
    make = DeviceLoader if loader == 'device' else ClassicLoader
    pairs = make(data, 6, 'cpu', mean, std, rounds=rounds)
    pairs.set_epoch(2)
    chosen = choices[rounds.round_for_epoch(2)]
    batch = next(iter(pairs))
    index = batch.index
    teacher = batch.teacher_image if batch.teacher_image is not None else batch.image
    views = torch.stack([batch.image, teacher], 1)  # the student's and the teacher's
    scale = torch.tensor(std).view(1, 3, 1, 1) * 255
    shift = torch.tensor(mean).view(1, 3, 1, 1) * 255
    pixels = (views.flatten(0, 1) * scale + shift).round().view_as(views)
    for b, i in enumerate(index.tolist()):
        quality, row, col, flip = (int(v) for v in chosen[i])
        crop = lambda image: crop_and_flip(  # noqa: E731
            torch.from_numpy(image).permute(2, 0, 1)[None], torch.tensor([row]),
            torch.tensor([col]), torch.tensor([bool(flip)]))[0].float()
        teacher_image = jpeg_round_trip(data.images[i], quality) if mode == 'ckd' else data.images[i]
        assert torch.equal(pixels[b, 0], crop(data.images[i]))  # the student: clean
        assert torch.equal(pixels[b, 1], crop(teacher_image))  # the teacher: coded, same crop


def test_teacher_gets_the_coded_view_and_student_the_clean_one():
    for name in ('kd', 'crd', 'simkd', 'reviewkd', 'dml'):
        distiller, teacher, student = build(name)
        seen = {}
        for role, net in (('student', student), ('teacher', teacher)):
            original = net.forward
            net.forward = (lambda role, original: lambda image, **kw: (
                seen.__setitem__(role, image) or original(image, **kw)))(role, original)
        x, y, index, contrast_idx = fixed_batch(n=4)
        distiller.train().forward_train(Batch(x, y, index, contrast_idx, teacher_image=-x))
        assert torch.equal(seen['student'], x) and torch.equal(seen['teacher'], -x), name


def test_rounds_are_cached_beside_the_teacher_and_rebuilt_when_it_changes(tmp_path, monkeypatch):
    from models import get_model
    teacher_file = tmp_path / 'resnet8_vanilla' / 'ckpt_epoch_240.pth'
    teacher_file.parent.mkdir()
    torch.save({'model': get_model('resnet8', 10).state_dict()}, teacher_file)
    data = tiny_set()
    config = train_student.parse_option(['--path_t', str(teacher_file), '--dataset', 'cifar10',
                                         '--ckd', 'ckd', '--ckd_delta', '50', '--ckd_rounds',
                                         '2', '--num_workers', '0', '--epochs', '2'])
    calls = []
    original = helper.ckd.prepare_rounds
    monkeypatch.setattr(helper.ckd, 'prepare_rounds',
                        lambda *a: calls.append(1) or original(*a))
    args = (get_model('resnet8', 10), data.images, data.targets, DATASETS['cifar10'],
            torch.device('cpu'), config)
    first = load_or_prepare(*args)
    assert first.shape == (2, 6, 4) and set(first[..., 0].flatten()) <= {CLEAN, 0, 50, 100}
    assert os.path.isfile(cache_path(str(teacher_file), 'cifar10', 50, 2, 'correct'))
    assert np.array_equal(load_or_prepare(*args), first) and len(calls) == 1  # reused
    torch.save({'model': get_model('resnet8', 10).state_dict(), 'epoch': 2}, teacher_file)
    load_or_prepare(*args)
    assert len(calls) == 2  # another teacher file, another cache
    assert len([f for f in os.listdir(teacher_file.parent) if f.endswith('.ckd.pt')]) == 2


FAST = ['--epochs', '3', '--batch_size', '16', '--num_workers', '0', '--seed', '4',
        '--ckd_rounds', '2', '--ckd_delta', '25', '--save_freq', '1']


def ckd_argv(tiny, save, distill='kd', extra=()):
    return student_argv(*tiny[:2], save, '--ckd', 'ckd', *FAST, *extra, distill=distill)


def test_a_resumed_ckd_run_ends_bit_identical(tiny, monkeypatch, capsys):
    root = tiny[2]
    straight, resumed = str(root / 'straight'), str(root / 'resumed')
    assert train_student.main(ckd_argv(tiny, straight)) == 0
    assert 'ckd: preparing 2 rounds' in capsys.readouterr().out
    signal_after(monkeypatch, 4)  # teacher validation 2, then epoch 1's second step
    assert train_student.main(ckd_argv(tiny, resumed)) == 130
    monkeypatch.undo()
    assert train_student.main(ckd_argv(tiny, resumed, extra=['--resume', 'auto'])) == 0
    assert 'ckd: 2 rounds from' in capsys.readouterr().out  # the cache, not a new preparation
    a = load_checkpoint(os.path.join(run_folder(straight), 'resnet8_last.pth'))['model']
    b = load_checkpoint(os.path.join(run_folder(resumed), 'resnet8_last.pth'))['model']
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metric_records(straight) == metric_records(resumed)
    assert run_folder(straight).endswith('_ckd:ckd')


def test_two_stage_methods_run_their_init_stage_on_ordinary_batches(tiny, capsys):
    save = str(tiny[2] / 'fsp')
    argv = ckd_argv(tiny, save, 'fsp', ['--init_epochs', '1', '--loader', 'classic'])
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'init   1/1' in out and 'epoch   3/3' in out


def test_ckd_refuses_what_it_cannot_do(tiny, capsys):
    assert train_student.main(ckd_argv(tiny, str(tiny[2] / 'x'), 'mlkd')) == 2
    assert 'builds its own rotated views' in capsys.readouterr().err
    assert train_student.main(ckd_argv(tiny, str(tiny[2] / 'x'), extra=['--ckd_delta',
                                                                         '101'])) == 2
    assert '--ckd_delta must be 1 to 100' in capsys.readouterr().err
