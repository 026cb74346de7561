"""Loaders that decode batches of ImageNet JPEGs: torchvision's decode_jpeg (JpegLoader) and
NVIDIA DALI (DaliLoader; its tests need DALI, which CI installs from requirements-dali.txt)."""
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.io import read_file
from torchvision.transforms import functional as TF

import dataset
import train_student
import train_teacher
from conftest import write_imagenet
from dataset import DATASETS, build_loaders
from dataset.batch import BatchSpec, ContrastSampling
from dataset.loaders import ClassicLoader
from dataset.dali_loader import DaliLoader
from dataset.jpeg_loader import JpegLoader, random_resized_boxes

MEAN, STD = DATASETS['imagenet'].mean, DATASETS['imagenet'].std
SIZES = [(64, 80), (90, 60), (48, 48), (120, 70), (300, 400)]
needs_dali = pytest.mark.dali  # skipped where DALI is not installed (conftest.py)


@pytest.fixture
def folder(tmp_path):
    write_imagenet(str(tmp_path), classes=('n01', 'n02', 'n03'), per_class=5, size=SIZES)
    return [ImageFolder(str(tmp_path / 'imagenet' / split)) for split in ('train', 'val')]


def loader(cls, data, train=True, size=32, **kwargs):
    return cls(data, 4, 'cpu', MEAN, STD, image_size=size, train=train, num_threads=2, **kwargs)


def test_random_resized_boxes_follow_torchvisions_rule():
    g = torch.Generator().manual_seed(0)
    boxes = random_resized_boxes([(100, 200)] * 4000, g)
    area = torch.tensor([h * w / 20000 for _, _, h, w in boxes])
    ratio = torch.tensor([w / h for _, _, h, w in boxes])
    assert all(0 <= t and 0 <= l and t + h <= 100 and l + w <= 200 for t, l, h, w in boxes)
    assert area.min() > 0.07 and area.max() <= 1 and 0.72 < ratio.min() and ratio.max() < 1.4
    # torchvision's own draws have the same distribution of areas
    torch.manual_seed(0)
    reference = torch.tensor([h * w / 20000 for _, _, h, w in (
        transforms.RandomResizedCrop.get_params(torch.zeros(1, 100, 200), (0.08, 1.0),
                                                (3 / 4, 4 / 3)) for _ in range(4000))])
    assert abs(area.mean() - reference.mean()) < 0.02
    # No try fits a 10x1000 strip: the central crop with the widest allowed ratio.
    assert random_resized_boxes([(10, 1000)], g) == [(0, 493, 10, 13)]


def test_test_images_match_torchvisions_resize_and_center_crop(folder):
    val = folder[1]
    for size in (32, 224):
        reference = transforms.Compose([transforms.Resize(int(size * 256 / 224)),
                                        transforms.CenterCrop(size), transforms.ToTensor(),
                                        transforms.Normalize(MEAN, STD)])
        expected = torch.stack([reference(val.loader(path)) for path, _ in val.samples])
        batches = list(loader(JpegLoader, val, train=False, size=size))
        images = torch.cat([b[0] for b in batches])
        assert images.shape == (15, 3, size, size)
        assert torch.equal(torch.cat([b[1] for b in batches]), torch.tensor(val.targets))
        # one grey level is 1 / (255 * std) ~ 0.017 after normalisation
        assert (images - expected).abs().max() < 0.02


def test_training_crops_are_the_drawn_boxes_resized_and_flipped(folder):
    train = folder[0]
    jpeg = loader(JpegLoader, train)
    jpeg.generator.manual_seed(4)
    images, targets, index, *_ = next(iter(jpeg))
    draws = torch.Generator().manual_seed(4)
    order = torch.randperm(len(train), generator=draws)[:4]
    assert torch.equal(index, order) and torch.equal(targets, torch.tensor(train.targets)[order])
    pictures = [TF.pil_to_tensor(train.loader(train.samples[i][0])) for i in order.tolist()]
    boxes = random_resized_boxes([tuple(p.shape[1:]) for p in pictures], draws)
    flips = torch.rand(4, generator=draws) < 0.5
    for image, picture, box, flip in zip(images, pictures, boxes, flips):
        expected = TF.resized_crop(picture.float(), *box, [32, 32], antialias=True)
        expected = TF.normalize(expected.flip(-1) if flip else expected,
                                [255 * m for m in MEAN], [255 * s for s in STD])
        # decode_jpeg and PIL share libjpeg; small differences come from its IDCT
        assert (image - expected).abs().mean() < 0.02


def test_files_that_are_not_rgb_jpegs_decode(tmp_path):
    root = tmp_path / 'imagenet' / 'val' / 'n01'
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    png = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(png).save(root / 'png.JPEG', format='PNG')  # as one in ImageNet's train set
    Image.fromarray(png[..., 0]).save(root / 'grey.JPEG')
    Image.fromarray(png).convert('CMYK').save(root / 'cmyk.JPEG')
    val = ImageFolder(str(tmp_path / 'imagenet' / 'val'))
    jpeg = loader(JpegLoader, val, train=False, size=36)
    decoded = dict(zip((os.path.basename(p) for p, _ in val.samples),
                       jpeg.decode([read_file(p) for p, _ in val.samples])))
    assert all(image.shape == (3, 40, 40) for image in decoded.values())
    assert torch.equal(decoded['png.JPEG'], torch.from_numpy(png).permute(2, 0, 1))
    grey = decoded['grey.JPEG'].float()
    assert torch.equal(grey[0], grey[1]) and (grey[0] - torch.from_numpy(png[..., 0])).abs(
    ).mean() < 8
    images = torch.cat([b[0] for b in jpeg])
    assert images.shape == (3, 3, 36, 36) and torch.isfinite(images).all()


@pytest.mark.parametrize('kind', ['jpeg', pytest.param('dali', marks=needs_dali)])
def test_shards_cover_each_epoch_with_consistent_targets_and_crd_indices(folder, kind):
    train = folder[0]
    cls, extra = (JpegLoader, {}) if kind == 'jpeg' else (DaliLoader, {'backend': 'cpu'})
    targets = torch.tensor(train.targets)
    epochs = []
    for seed in (7, 7, 8):
        seen = []
        for rank in range(2):
            shard = loader(cls, train, spec=BatchSpec(ContrastSampling(k=5)), rank=rank, world=2,
                           **extra)
            shard.generator.manual_seed(seed)
            batches = list(shard)
            assert len(batches) == len(shard) == 2  # 8 of the 15 samples each (one repeated)
            for images, y, index, sample_idx, _ in batches:
                assert images.shape == (len(index), 3, 32, 32) and images.dtype == torch.float32
                assert torch.equal(y, targets[index]) and torch.equal(sample_idx[:, 0], index)
                assert (targets[sample_idx[:, 1:]] != y[:, None]).all()
            seen.append(batches)
        indices = torch.cat([b[2] for rank in seen for b in rank])
        assert len(indices) == 16 and set(indices.tolist()) == set(range(15))
        epochs.append(seen)
    same = [torch.equal(a[0], b[0]) for a, b in zip(epochs[0][0], epochs[1][0])]
    assert all(same)  # the same seed gives the same batches, pixels included
    assert not torch.equal(epochs[0][0][0][2], epochs[2][0][0][2])


@needs_dali
def test_dali_training_images_look_like_random_resized_crops(tmp_path):
    # Each image is one flat colour per class: any crop, resize or flip keeps it.
    colours = [(200, 30, 30), (30, 200, 30)]
    for c, colour in enumerate(colours):
        folder = tmp_path / 'train' / f'n0{c}'
        folder.mkdir(parents=True)
        for i, (h, w) in enumerate(SIZES):
            Image.new('RGB', (w, h), colour).save(folder / f'{i}.JPEG', quality=100)
    train = ImageFolder(str(tmp_path / 'train'))
    dali = loader(DaliLoader, train, size=48, backend='cpu')
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for images, targets, *_ in dali:
        assert images.shape[1:] == (3, 48, 48)
        pixels = (images * std + mean) * 255
        expected = torch.tensor(colours, dtype=torch.float)[targets][:, :, None, None]
        assert (pixels - expected).abs().max() < 3


@needs_dali
def test_dali_validates_its_arguments(folder):
    with pytest.raises(ValueError, match='training loader'):
        loader(DaliLoader, folder[1], train=False, backend='cpu')
    with pytest.raises(ValueError, match='CUDA'):
        loader(DaliLoader, folder[0], backend='gpu')


def note_count(capsys, text):
    return capsys.readouterr().out.count(text)


def test_dali_flag_chooses_the_loader_and_says_once_what_it_does(folder, tmp_path,
                                                                 monkeypatch, capsys):
    root = str(tmp_path)
    choose = dataset._loader_kinds
    source = DATASETS['imagenet']
    monkeypatch.setattr(dataset, 'dali_available', lambda: False)
    train, test = build_loaders('imagenet', root, 4, 0, dali='cpu')
    assert isinstance(train, ClassicLoader)
    assert note_count(capsys, 'NVIDIA DALI is not installed') == 1
    train, _ = build_loaders('imagenet', root, 4, 0, dali='gpu')
    assert isinstance(train, ClassicLoader)
    assert note_count(capsys, '--dali gpu needs a GPU') == 1
    # On a GPU without DALI, --dali gpu decodes with torchvision's nvJPEG.
    kinds, _ = choose(source, folder[0], 'device', 'gpu', 'cuda')
    assert kinds == ('jpeg', 'jpeg')
    assert note_count(capsys, "torchvision's nvJPEG") == 1
    monkeypatch.setattr(dataset, 'dali_available', lambda: True)
    kinds, backend = choose(source, folder[0], 'device', 'gpu', 'cuda')
    assert kinds == ('dali', 'jpeg') and backend == 'gpu'
    assert note_count(capsys, 'note:') == 0
    _, backend = choose(source, folder[0], 'device', 'gpu', 'cpu')
    assert backend == 'cpu'
    assert note_count(capsys, 'DALI decodes on the CPU instead') == 1


def test_dali_flag_on_in_memory_data_says_so(cifar_root, capsys):
    train, _ = build_loaders('cifar100', cifar_root, 8, 0, loader='device', dali='gpu')
    assert type(train).__name__ == 'DeviceLoader'
    assert note_count(capsys, '--dali applies to folders of JPEGs') == 1


@needs_dali
def test_student_trains_on_imagenet_folders_with_dali(tmp_path, capsys):
    root = str(tmp_path)
    write_imagenet(root, per_class=4)
    save = str(tmp_path / 'save')
    args = ['--data_folder', root, '--save_dir', save, '--epochs', '1', '--batch_size', '4',
            '--num_workers', '2', '--dataset', 'imagenet', '--dali', 'cpu', '--seed', '0']
    assert train_teacher.main(['--model', 'ResNet18'] + args) == 0
    teacher = os.path.join(save, 'models', 'ResNet18_imagenet_lr_0.05_decay_0.0005_trial_0',
                           'ResNet18_last.pth')
    assert train_student.main(['--path_t', teacher, '--model_s', 'ResNet18', '--distill',
                               'crd', '--nce_k', '4'] + args) == 0
    out = capsys.readouterr().out
    assert 'epoch   1/1' in out and 'note:' not in out
