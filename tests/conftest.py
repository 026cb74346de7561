import os
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_cifar100(root, n_train=128, n_test=64, seed=0):
    """Write a small CIFAR-100 tree in the official python-pickle layout; return the arrays."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    splits = {}
    for split, n in (('train', n_train), ('test', n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 100, size=n).tolist()
        entry = {'filenames': [f'{split}_{i}.png' for i in range(n)], 'batch_label': split,
                 'fine_labels': labels, 'coarse_labels': [l // 5 for l in labels],
                 # official layout: rows of 3072 bytes, channel-major (R plane, G plane, B plane)
                 'data': images.transpose(0, 3, 1, 2).reshape(n, 3072)}
        with open(os.path.join(folder, split), 'wb') as f:
            pickle.dump(entry, f)
        splits[split] = (images, np.asarray(labels))
    with open(os.path.join(folder, 'meta'), 'wb') as f:
        pickle.dump({'fine_label_names': [f'class{i}' for i in range(100)],
                     'coarse_label_names': [f'super{i}' for i in range(20)]}, f)
    return splits


def write_imagenet(root, classes=('n01', 'n02'), per_class=4, size=(64, 80), seed=0):
    """Write ``<root>/imagenet/{train,val}/<class>/<i>.JPEG`` of random pixels; ``size`` is
    one ``(h, w)`` or a list that successive images cycle through."""
    rng = np.random.default_rng(seed)
    sizes = [size] if isinstance(size, tuple) else size
    for split in ('train', 'val'):
        for c, cls in enumerate(classes):
            folder = os.path.join(root, 'imagenet', split, cls)
            os.makedirs(folder)
            for i in range(per_class):
                h, w = sizes[(c * per_class + i) % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    os.path.join(folder, f'{i}.JPEG'), quality=95)


def train_teacher_run(data, save, *flags, model='resnet14'):
    """Train a ``model`` teacher for one epoch on the CIFAR-100 tree at ``data`` (``flags`` go
    to train_teacher.py); return its run folder and its ``<model>_last.pth``."""
    import train_teacher
    argv = ['--model', model, '--data_folder', data, '--save_dir', save, '--epochs', '1']
    assert train_teacher.main(argv + list(flags)) == 0
    run = os.path.join(save, 'models', f'{model}_cifar100_lr_0.05_decay_0.0005_trial_0')
    return run, os.path.join(run, f'{model}_last.pth')


def tiny_data_and_teacher(root, n_train, n_test, model='resnet14'):
    """A small CIFAR-100 tree under ``root/data`` and a ``model`` teacher trained on it for one
    epoch; returns their paths."""
    data = str(root / 'data')
    write_cifar100(data, n_train=n_train, n_test=n_test)
    _, teacher = train_teacher_run(data, str(root / 'teacher'), '--num_workers', '0',
                                   '--batch_size', '16', model=model)
    return data, teacher


@pytest.fixture
def cifar_root(tmp_path):
    root = tmp_path / 'data'
    write_cifar100(str(root))
    return str(root)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Tests never reach the network: a missing data set fails as it does offline (after
    torchvision's helper has created the download folder, as it does)."""
    def refuse(url, root, md5):
        os.makedirs(root, exist_ok=True)
        raise OSError('network disabled in tests')
    monkeypatch.setattr('dataset.cifar.download', refuse)
