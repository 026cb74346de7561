
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_cifar100, write_imagenet
from dataset import DATASETS, get_dataloaders, get_transforms
from dataset.base import ArrayDataset, ContrastSampleDataset, DatasetError
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


def test_test_transform_is_totensor_and_normalize():
    _, test_tf = get_transforms(DATASETS['cifar100'])
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = test_tf(Image.fromarray(img))
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - CIFAR_MEAN) / CIFAR_STD
    assert torch.allclose(out, expected, atol=1e-6)


def test_train_augmentation_crops_with_zero_padding_and_flips():
    train_tf, _ = get_transforms(DATASETS['cifar100'])
    img = np.full((32, 32, 3), 255, dtype=np.uint8)  # white: padding shows as black borders
    torch.manual_seed(0)
    zero = (0 - CIFAR_MEAN) / CIFAR_STD
    white = (1 - CIFAR_MEAN) / CIFAR_STD
    saw_padding = False
    for _ in range(50):
        out = train_tf(Image.fromarray(img))
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
    for _ in range(200):
        row = train_tf(Image.fromarray(ramp))[0, 16]
        inside = row[~torch.isclose(row, zero[0, 0, 0].expand_as(row), atol=1e-5)]
        flips += int(inside[0] > inside[-1])
    assert 60 < flips < 140  # p = 0.5


def test_contrast_sample_indices():
    targets = np.repeat(np.arange(5), 20)  # 5 classes x 20 samples
    base = ArrayDataset(np.zeros((100, 32, 32, 3), np.uint8), targets)
    exact = ContrastSampleDataset(base, k=30, mode='exact')
    for index in (0, 37, 99):
        img, target, idx, sample_idx = exact[index]
        assert idx == index and target == targets[index]
        assert sample_idx.shape == (31,) and sample_idx[0] == index
        assert (targets[sample_idx[1:]] != target).all()
        assert len(set(sample_idx[1:])) == 30  # without replacement when k <= negatives
    relax = ContrastSampleDataset(base, k=200, mode='relax')
    _, target, index, sample_idx = relax[5]
    assert targets[sample_idx[0]] == target and (targets[sample_idx[1:]] != target).all()
    assert len(relax.cls_negative[0]) == 80
    half = ContrastSampleDataset(base, k=10, percent=0.5)
    assert all(len(neg) == 40 for neg in half.cls_negative)
    with pytest.raises(ValueError):
        ContrastSampleDataset(base, mode='loose')


def test_loader_variants(cifar_root):
    plain, test, num_classes = get_dataloaders('cifar100', cifar_root, 16, 0, variant='plain')
    assert num_classes == 100 and len(plain.dataset) == 128 and len(test.dataset) == 64
    x, y = next(iter(plain))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    assert test.batch_size == 8  # half the training batch, as RepDistiller
    inst, _, _ = get_dataloaders('cifar100', cifar_root, 16, 0, variant='instance')
    x, y, idx = next(iter(inst))
    assert idx.shape == (16,)
    sample, _, _ = get_dataloaders('cifar100', cifar_root, 16, 0, variant='sample', k=7)
    x, y, idx, sample_idx = next(iter(sample))
    assert sample_idx.shape == (16, 8) and torch.equal(sample_idx[:, 0], idx)


def test_loader_order_is_seeded(cifar_root):
    def first_indices(seed):
        loader, _, _ = get_dataloaders('cifar100', cifar_root, 16, 0, variant='instance',
                                       seed=seed)
        return next(iter(loader))[2]
    assert torch.equal(first_indices(1), first_indices(1))
    assert not torch.equal(first_indices(1), first_indices(2))


def test_unknown_dataset():
    with pytest.raises(DatasetError, match='choose one of'):
        get_dataloaders('mnist')


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
    train, test, num_classes = get_dataloaders('imagenet', str(tmp_path), 4, 0)
    x, y, idx = next(iter(train))
    assert x.shape == (4, 3, 224, 224) and set(y.tolist()) <= {0, 1}
    x, y = next(iter(test))
    assert x.shape == (2, 3, 224, 224)
    with pytest.raises(DatasetError, match='imagenet/{train,val}'):
        get_dataloaders('imagenet', str(tmp_path / 'nothing'), 4, 0)
