
import numpy as np
import pytest
import torch

from conftest import write_cifar100, write_imagenet
from dataset import DATASETS, build_loaders
from dataset.base import ArrayDataset, DatasetError
from dataset.batch import BatchSpec, ContrastSampling
from dataset.loaders import DeviceLoader
from dataset.cifar import load_cifar_arrays
from dataset.synthetic import make_synthetic

CIFAR_MEAN = torch.tensor(DATASETS['cifar100'].mean).view(3, 1, 1)
CIFAR_STD = torch.tensor(DATASETS['cifar100'].std).view(3, 1, 1)


def test_cifar100_pickles_read_back_exactly(tmp_path):
    written = write_cifar100(str(tmp_path), n_train=20, n_test=10, seed=3)
    for split, train in (('train', True), ('test', False)):
        images, labels = load_cifar_arrays('cifar100', str(tmp_path), train)
        assert images.dtype == np.uint8 and images.shape == (len(labels), 32, 32, 3)
        assert np.array_equal(images, written[split][0])  # HWC, channels in RGB order
        assert np.array_equal(labels, written[split][1])


def test_missing_cifar_gives_clear_error(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_cifar_arrays('cifar100', str(tmp_path), True)
    message = str(err.value)
    assert 'cifar-100-python' in message and 'downloading it failed' in message
    assert str(tmp_path) in message


def test_missing_download_leaves_no_data_folder(tmp_path):
    root = tmp_path / 'not_there'
    with pytest.raises(DatasetError):
        load_cifar_arrays('cifar100', str(root), True)
    assert not root.exists()


def test_cifar_labels_missing_or_short(tmp_path):
    import pickle
    write_cifar100(str(tmp_path), n_train=4, n_test=4)
    path = tmp_path / 'cifar-100-python' / 'train'
    entry = pickle.loads(path.read_bytes())
    entry['fine_labels'] = entry['fine_labels'][:3]
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(DatasetError, match='4 images but 3 labels'):
        load_cifar_arrays('cifar100', str(tmp_path), True)
    del entry['fine_labels']
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(DatasetError, match="KeyError: 'fine_labels'"):
        load_cifar_arrays('cifar100', str(tmp_path), True)


def test_corrupt_cifar_gives_clear_error(tmp_path):
    write_cifar100(str(tmp_path), n_train=4, n_test=4)
    (tmp_path / 'cifar-100-python' / 'train').write_bytes(b'not a pickle')
    with pytest.raises(DatasetError, match='cannot read cifar100'):
        load_cifar_arrays('cifar100', str(tmp_path), True)


def loader_images(images, train, batch_size=None):
    """The images a CIFAR-100 loader makes of ``images`` (N, 32, 32, 3), in their order."""
    data = ArrayDataset(np.asarray(images), np.zeros(len(images), dtype=np.int64))
    source = DATASETS['cifar100']
    loader = DeviceLoader(data, batch_size or len(data), 'cpu', source.mean, source.std,
                          train=train)
    return loader.batches(torch.arange(len(data)))


def test_test_transform_is_totensor_and_normalize():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = next(loader_images([img], train=False)).image[0]
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - CIFAR_MEAN) / CIFAR_STD
    assert torch.allclose(out, expected, atol=1e-6)


def test_train_augmentation_crops_with_zero_padding_and_flips():
    img = np.full((32, 32, 3), 255, dtype=np.uint8)  # white: padding shows as black borders
    zero = (0 - CIFAR_MEAN) / CIFAR_STD
    white = (1 - CIFAR_MEAN) / CIFAR_STD
    saw_padding = False
    for out in next(loader_images([img] * 50, train=True)).image:
        assert out.shape == (3, 32, 32)
        is_zero = torch.isclose(out, zero.expand_as(out), atol=1e-5)
        is_white = torch.isclose(out, white.expand_as(out), atol=1e-5)
        assert (is_zero | is_white).all()  # every pixel is either padding or image
        image = is_white.all(dim=0)
        saw_padding |= not bool(image.all())
        rows, cols = image.any(dim=1).sum(), image.any(dim=0).sum()
        assert rows >= 28 and cols >= 28 and image.sum() == rows * cols  # shifted by <= 4
    assert saw_padding

    ramp = np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 8, (32, 1, 3))
    flips = 0
    for out in next(loader_images([ramp] * 200, train=True)).image:
        row = out[0, 16]
        inside = row[~torch.isclose(row, zero[0, 0, 0].expand_as(row), atol=1e-5)]
        flips += int(inside[0] > inside[-1])
    assert 60 < flips < 140  # p = 0.5


def test_contrast_sample_indices():
    targets = np.repeat(np.arange(5), 20)  # 5 classes x 20 samples
    draws = torch.Generator().manual_seed(0)
    exact = ContrastSampling(k=30, mode='exact').sampler(torch.from_numpy(targets))
    samples = exact(torch.tensor([0, 37, 99]), draws)
    for index, sample_idx in zip((0, 37, 99), samples.numpy()):
        target = targets[index]
        assert sample_idx.shape == (31,) and sample_idx[0] == index
        assert (targets[sample_idx[1:]] != target).all()
        assert len(set(sample_idx[1:])) == 30  # without replacement when k <= negatives
    relax = ContrastSampling(k=200, mode='relax').sampler(torch.from_numpy(targets))
    sample_idx = relax(torch.tensor([5]), draws)[0].numpy()
    target = targets[5]
    assert targets[sample_idx[0]] == target and (targets[sample_idx[1:]] != target).all()
    assert int(relax.neg_count[0]) == 80
    with pytest.raises(ValueError):
        ContrastSampling(mode='loose')


@pytest.mark.parametrize('loader', ['device', 'classic'])
def test_loader_variants(cifar_root, loader):
    plain, test = build_loaders('cifar100', cifar_root, 16, 0, loader=loader)
    num_classes = DATASETS['cifar100'].num_classes
    assert num_classes == 100 and len(plain.dataset) == 128 and len(test.dataset) == 64
    x, y, idx, *_ = next(iter(plain))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    assert test.batch_size == 8  # half the training batch, as RepDistiller
    assert idx.shape == (16,)
    sample, _ = build_loaders('cifar100', cifar_root, 16, 0, loader=loader,
                              spec=BatchSpec(ContrastSampling(k=7)))
    x, y, idx, sample_idx, _ = next(iter(sample))
    assert sample_idx.shape == (16, 8) and torch.equal(sample_idx[:, 0], idx)


def test_loader_order_is_seeded(cifar_root):
    def first_indices(seed):
        loader, _ = build_loaders('cifar100', cifar_root, 16, 0, seed=seed)
        return next(iter(loader)).index
    assert torch.equal(first_indices(1), first_indices(1))
    assert not torch.equal(first_indices(1), first_indices(2))


def test_unknown_dataset():
    with pytest.raises(DatasetError, match='choose one of'):
        build_loaders('mnist')


def test_synthetic_is_deterministic_and_class_conditional():
    a, la = make_synthetic(200, seed=0)
    b, lb = make_synthetic(200, seed=0)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.dtype == np.uint8 and a.shape == (200, 32, 32, 3)
    # Nearest class mean classifies held-out samples far above chance (10%).
    means = np.stack([a[la == c].reshape(-1, 3072).mean(0) for c in range(10)])
    test, lt = make_synthetic(200, seed=1)
    dists = ((test.reshape(-1, 1, 3072).astype(float) - means[None]) ** 2).sum(-1)
    assert (dists.argmin(1) == lt).mean() > 0.3


def test_imagenet_class_folders(tmp_path):
    write_imagenet(str(tmp_path), per_class=3, size=(40, 50))
    train, test = build_loaders('imagenet', str(tmp_path), 4, 0)
    x, y, idx, *_ = next(iter(train))
    assert x.shape == (4, 3, 224, 224) and set(y.tolist()) <= {0, 1}
    x, y, *_ = next(iter(test))
    assert x.shape == (2, 3, 224, 224)
    with pytest.raises(DatasetError, match='imagenet/{train,val}'):
        build_loaders('imagenet', str(tmp_path / 'nothing'), 4, 0)
