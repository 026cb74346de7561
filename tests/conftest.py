"""Shared by every test: the test processes' set-up, data sets written in their on-disk
formats, one tiny teacher per test process, and train_student.py's command line."""
import os
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, 'tests', 'fixtures')

if os.environ.get('PYTEST_XDIST_WORKER'):
    # Several test processes share the cores: one thread each (and in the runs they start), so
    # that none waits on threads that spin for a core another holds.
    os.environ['OMP_NUM_THREADS'] = '1'
    import torch
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Tests marked ``dali`` are skipped where DALI is not installed. Tests that start whole
    runs as processes go first, so that parallel workers share them out instead of one worker
    finishing them alone at the end."""
    from dataset.dali_loader import dali_available
    if not dali_available():
        for item in items:
            if item.get_closest_marker('dali'):
                item.add_marker(pytest.mark.skip(reason='NVIDIA DALI is not installed'))
    items.sort(key=lambda item: item.get_closest_marker('processes') is None)


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


def write_stl10(root, n_train=24, n_test=16, seed=0):
    """STL-10's binary layout: per image 3 channel planes of 96x96, each column-major; labels
    1..10 as bytes. Returns the images (N, 96, 96, 3) and 0-based labels per split."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, 'stl10_binary')
    os.makedirs(folder, exist_ok=True)
    written = {}
    for split, n in (('train', n_train), ('test', n_test)):
        images = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        images.transpose(0, 3, 2, 1).tofile(os.path.join(folder, f'{split}_X.bin'))
        (labels + 1).astype(np.uint8).tofile(os.path.join(folder, f'{split}_y.bin'))
        written[split] = images, labels
    return written


def tiny_set(n=6):
    """``n`` random 32x32 images in memory, labelled 0..n-1."""
    from dataset.base import ArrayDataset
    rng = np.random.default_rng(1)
    return ArrayDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), list(range(n)))


def train_teacher_run(data, save, *flags, model='resnet14'):
    """Train a ``model`` teacher for one epoch on the CIFAR-100 tree at ``data`` (``flags`` go
    to train_teacher.py); return its run folder and its ``<model>_last.pth``."""
    import train_teacher
    argv = ['--model', model, '--data_folder', data, '--save_dir', save, '--epochs', '1']
    assert train_teacher.main(argv + list(flags)) == 0
    run = os.path.join(save, 'models', f'{model}_cifar100_lr_0.05_decay_0.0005_trial_0')
    return run, os.path.join(run, f'{model}_last.pth')


def student_argv(data, teacher, save, *flags, distill='kd', model_s='resnet8'):
    """train_student.py's command line for a ``distill`` run of ``teacher`` into ``model_s``
    on the CIFAR-100 tree at ``data``, saving under ``save``; ``flags`` come last (a flag given
    twice takes its last value)."""
    return ['--path_t', teacher, '--distill', distill, '--model_s', model_s, '--data_folder',
            data, '--save_dir', save, *flags]


def tiny_data_and_teacher(root, n_train, n_test, model='resnet14'):
    """A small CIFAR-100 tree under ``root/data`` and a ``model`` teacher trained on it for one
    epoch; returns their paths."""
    data = str(root / 'data')
    write_cifar100(data, n_train=n_train, n_test=n_test)
    _, teacher = train_teacher_run(data, str(root / 'teacher'), '--num_workers', '0',
                                   '--batch_size', '16', model=model)
    return data, teacher


@pytest.fixture(scope='session')
def trained_teacher(tmp_path_factory):
    """A CIFAR-100 tree of 64 training and 16 test images and a resnet8 teacher trained on it
    for one epoch: trained once per test process, shared by every test that needs one."""
    return tiny_data_and_teacher(tmp_path_factory.mktemp('trained_teacher'), 64, 16,
                                 model='resnet8')


@pytest.fixture(scope='module')
def tiny(trained_teacher, tmp_path_factory):
    """``(data, teacher, root)``: the shared tree, a copy of the shared teacher and a folder of
    the module's own for its runs; the copy is the module's too, as CKD keeps its coded
    rounds beside the teacher."""
    data, trained = trained_teacher
    root = tmp_path_factory.mktemp('tiny')
    teacher = root / 'teacher' / os.path.basename(trained)
    teacher.parent.mkdir()
    shutil.copyfile(trained, teacher)
    return data, str(teacher), root


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


@pytest.fixture(autouse=True)
def _log_to_stdout():
    """The ``kd`` logger writes as an entry point makes it (``core.log.log_to_stdout``), for
    the tests that call a library function and read its lines."""
    from core.log import log_to_stdout
    log_to_stdout()
