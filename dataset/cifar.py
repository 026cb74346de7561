"""CIFAR-10/100 read from the official python pickles; downloaded only when missing."""
import os
import pickle
import shutil

import numpy as np

from .base import ArrayDataset, DatasetError

CIFAR = {
    'cifar100': dict(
        folder='cifar-100-python', train_files=['train'], test_files=['test'],
        label_key='fine_labels', num_classes=100,
        url='https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz',
        md5='eb9058c3a382ffc7106e4002c42a8d85',
        mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    'cifar10': dict(
        folder='cifar-10-batches-py', train_files=[f'data_batch_{i}' for i in range(1, 6)],
        test_files=['test_batch'], label_key='labels', num_classes=10,
        url='https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
        md5='c58f30108f718f92721af3b95e74349a',
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
}


def download(url, root, md5):
    """Fetch and unpack the official archive (torchvision's helper checks the md5)."""
    from torchvision.datasets.utils import download_and_extract_archive
    download_and_extract_archive(url, download_root=root, md5=md5)


def _read_batch(path, label_key):
    with open(path, 'rb') as f:
        entry = pickle.load(f, encoding='latin1')
    images = np.asarray(entry['data'], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f'{len(images)} images but {labels.size} labels')
    return images, labels


def load_cifar_arrays(name, root, train):
    """Return ``(images uint8 (N, 32, 32, 3), labels int64 (N,))`` of one split."""
    spec = CIFAR[name]
    folder = os.path.join(root, spec['folder'])
    files = spec['train_files'] if train else spec['test_files']
    paths = [os.path.join(folder, f) for f in files]
    if not all(os.path.isfile(p) for p in paths):
        root_existed = os.path.isdir(root)
        try:
            download(spec['url'], root, spec['md5'])
        except Exception as e:  # any network or checksum failure ends in the same advice
            if not root_existed:  # leave no empty --data_folder behind
                shutil.rmtree(root, ignore_errors=True)
            raise DatasetError(
                f"{name} is not in '{folder}' and downloading it failed ({e}). Put the official "
                f"python version there (files: {', '.join(files)}), e.g. by unpacking "
                f"{os.path.basename(spec['url'])} into '{root}'.") from None
    try:
        parts = [_read_batch(p, spec['label_key']) for p in paths]
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
        raise DatasetError(f"cannot read {name} from '{folder}' ({type(e).__name__}: {e}); "
                           f"delete the folder to download it again.") from None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cifar_splits(name, root, splits=('train', 'test')):
    return [ArrayDataset(*load_cifar_arrays(name, root, split == 'train')) for split in splits]
