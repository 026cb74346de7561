"""The fast path: device-resident data, batched augmentation, AMP, channels-last, SGD kernels."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dataset import DATASETS
from dataset.base import ArrayDataset
from dataset.batch import Batch, BatchSpec, ContrastSampling
from dataset.loaders import ClassicLoader, DeviceLoader
from distiller_zoo import FrozenTeacher, get_method
from core.accel import autocast, make_sgd
from models import get_model

MEAN, STD = DATASETS['cifar100'].mean, DATASETS['cifar100'].std


def position_images(n):
    """Red = row + 1, green = column + 1, so a crop's offset and flip can be read back."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing='ij')
    image = np.stack([rows + 1, cols + 1, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    return ArrayDataset(np.repeat(image[None], n, axis=0), np.zeros(n, dtype=np.int64))


def raw(images):
    """Undo the fused normalisation."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((images * std + mean) * 255).round()


def test_batched_crop_offsets_and_flips_have_the_right_distribution():
    n = 9000
    loader = DeviceLoader(position_images(n), 1000, 'cpu', MEAN, STD, train=True)
    loader.generator.manual_seed(0)
    images = raw(torch.cat([b[0] for b in loader]))
    red, green = images[:, 0], images[:, 1]
    # Pixel (16, 16) is always inside the image: source row = oy + 12, column = ox + 12 (or
    # ox + 11 counted from the other side when flipped).
    flipped = green[:, 16, 15] > green[:, 16, 16]
    oy = red[:, 16, 16] - 1 - 12
    ox = torch.where(flipped, green[:, 16, 16] - 1 - 11, green[:, 16, 16] - 1 - 12)
    for offsets in (oy, ox):
        counts = torch.bincount(offsets.long(), minlength=9)
        assert len(counts) == 9 and (counts > 850).all() and (counts < 1150).all(), counts
    assert 0.47 < flipped.float().mean() < 0.53
    # Padding is zero: wherever a crop reaches outside the image, all channels are 0.
    outside = (red == 0)
    assert (images[:, 1][outside] == 0).all()
    top_left_padding = (oy < 4) & (ox < 4) & ~flipped
    assert (red[top_left_padding, 0, 0] == 0).all()


def test_without_augmentation_images_pass_through_unchanged():
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), np.arange(10))
    loader = DeviceLoader(data, 4, 'cpu', MEAN, STD, train=False)
    images = torch.cat([b[0] for b in loader])
    assert torch.equal(raw(images), torch.from_numpy(data.images).permute(0, 3, 1, 2).float())


def test_fast_and_classic_paths_give_the_same_batches_for_the_same_order():
    rng = np.random.default_rng(1)
    data = ArrayDataset(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                        rng.integers(0, 100, 40))
    order = torch.randperm(40, generator=torch.Generator().manual_seed(5))
    classic = ClassicLoader(data, 16, 'cpu', MEAN, STD, train=False).batches(order)
    fast = DeviceLoader(data, 16, 'cpu', MEAN, STD, train=False).batches(order)
    for (x1, y1, i1, *_), (x2, y2, i2, *_) in zip(classic, fast, strict=True):
        assert torch.allclose(x1, x2, atol=1e-5)
        assert torch.equal(y1, y2) and torch.equal(i1, i2)


def test_device_contrast_indices():
    targets = np.repeat(np.arange(4), 10)
    data = ArrayDataset(np.zeros((40, 32, 32, 3), np.uint8), targets)
    loader = DeviceLoader(data, 8, 'cpu', MEAN, STD, spec=BatchSpec(ContrastSampling(25)))
    for x, y, index, sample_idx, _ in loader:
        assert sample_idx.shape == (len(index), 26) and torch.equal(sample_idx[:, 0], index)
        negatives = sample_idx[:, 1:]
        assert (torch.from_numpy(targets)[negatives] != y[:, None]).all()
        assert all(len(set(row.tolist())) == 25 for row in negatives)  # without replacement
    relax = DeviceLoader(data, 8, 'cpu', MEAN, STD,
                         spec=BatchSpec(ContrastSampling(50, mode='relax')))
    _, y, index, sample_idx, _ = next(iter(relax))  # k > 30 negatives: drawn with replacement
    assert (torch.from_numpy(targets)[sample_idx[:, 0]] == y).all()
    assert (torch.from_numpy(targets)[sample_idx[:, 1:]] != y[:, None]).all()


def kd_distiller():
    from builders import plain_config
    torch.manual_seed(0)
    method = get_method('kd')
    return method(get_model('resnet8', 10), FrozenTeacher(get_model('resnet14', 10)),
                  plain_config(method))


def test_bf16_autocast_trains_on_cpu_without_nans():
    distiller = kd_distiller()
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    opt = SimpleNamespace(amp='bf16')
    distiller.train()
    for _ in range(3):
        with autocast(opt, torch.device('cpu')):
            logits, losses = distiller.forward_train(Batch(x, y))
        assert logits.dtype == torch.bfloat16
        loss = sum(losses.values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in distiller.student.parameters())


def test_channels_last_keeps_fp32_losses():
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    plain = kd_distiller().train()
    fast = kd_distiller().train()
    fast.to(memory_format=torch.channels_last)
    _, a = plain.forward_train(Batch(x, y))
    _, b = fast.forward_train(Batch(x.contiguous(memory_format=torch.channels_last), y))
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize('impl', ['foreach', 'for-loop'])
def test_sgd_kernels_agree(impl):
    def step(impl):
        torch.manual_seed(0)
        model = get_model('resnet8', 10)
        opt = SimpleNamespace(sgd_impl=impl, learning_rate=0.05, momentum=0.9,
                              weight_decay=5e-4, nesterov=False)
        optimizer = make_sgd(model.parameters(), opt, torch.device('cpu'))
        for _ in range(2):
            loss = model(torch.ones(4, 3, 32, 32)).logsumexp(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.state_dict()
    reference, other = step('for-loop'), step(impl)
    assert all(torch.allclose(reference[k], other[k], atol=1e-6) for k in reference)


@pytest.mark.parametrize('flags', [['--amp', 'bf16'],
                                   ['--amp', 'fp16', '--channels_last', '--loader', 'classic'],
                                   ['--sgd_impl', 'for-loop', '--loader', 'classic']])
def test_speed_flags_from_the_command_line(cifar_root, tmp_path, capsys, flags):
    import json
    import os

    import train_teacher
    argv = ['--model', 'resnet8', '--data_folder', cifar_root, '--save_dir', str(tmp_path),
            '--epochs', '1', '--batch_size', '32', '--num_workers', '0', '--seed', '0']
    assert train_teacher.main(argv + flags) == 0
    run = tmp_path / 'models' / 'resnet8_cifar100_lr_0.05_decay_0.0005_trial_0'
    metrics = json.loads((run / 'metrics.jsonl').read_text())
    assert np.isfinite(metrics['train_loss']) and metrics['images_per_second'] > 0
    assert json.loads((run / 'summary.json').read_text())['args']['amp'] == (
        flags[1] if flags[0] == '--amp' else 'off')
    assert os.path.isfile(run / 'ckpt_last.pth')


def test_device_loader_shards_cover_the_set_with_equal_step_counts():
    data = ArrayDataset(np.zeros((37, 32, 32, 3), np.uint8), np.arange(37) % 5)
    shards = []
    for rank in range(2):
        loader = DeviceLoader(data, 8, 'cpu', MEAN, STD, rank=rank, world=2)
        loader.generator.manual_seed(3)
        batches = [b[2] for b in loader]
        assert len(batches) == len(loader) == 3  # 19 samples each (one repeated): 8, 8, 3
        shards.append(torch.cat(batches))
    assert len(shards[0]) == len(shards[1]) == 19
    assert set(torch.cat(shards).tolist()) == set(range(37))
    test = [DeviceLoader(data, 8, 'cpu', MEAN, STD, train=False, rank=r, world=2)
            for r in range(2)]
    assert sorted(torch.cat([b[1] for t in test for b in t]).tolist()) == sorted(
        data.targets)  # the test set is split exactly, nothing repeated


def test_sync_bn_converts_the_trained_network_only():
    from core.accel import prepare_modules
    distiller = kd_distiller()
    keys = list(distiller.student.state_dict())
    opt = SimpleNamespace(sync_bn=True, channels_last=False, compile=False)
    prepare_modules(opt, [distiller], [distiller.student, distiller.teacher_net])
    kinds = lambda m: {type(x) for x in m.modules()}  # noqa: E731
    assert torch.nn.SyncBatchNorm in kinds(distiller.student)
    assert torch.nn.BatchNorm2d not in kinds(distiller.student)
    assert torch.nn.SyncBatchNorm not in kinds(distiller.teacher_net)
    assert list(distiller.student.state_dict()) == keys  # checkpoints keep their keys


def test_sgd_takes_nesterov_momentum_from_the_training_config():
    config = SimpleNamespace(sgd_impl='foreach', learning_rate=0.05, momentum=0.9,
                             weight_decay=5e-4, nesterov=True)
    optimizer = make_sgd(get_model('resnet8', 10).parameters(), config, torch.device('cpu'))
    assert optimizer.param_groups[0]['nesterov'] is True
