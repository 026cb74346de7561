"""STL-10 from its official binary files (``stl10_binary/{train,test}_{X,y}.bin``), resized to
32x32 for linear probes of CIFAR students; downloaded only when missing."""
import os
import shutil

import numpy as np
from PIL import Image

from .base import ArrayDataset, DatasetError

FOLDER = 'stl10_binary'
URL = 'http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz'
MD5 = '91f7769df0f17e558f3565bffb0c7dfb'
MEAN, STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2712)
SIDE, PROBE_SIDE = 96, 32


def download(url, root, md5):
    from torchvision.datasets.utils import download_and_extract_archive
    download_and_extract_archive(url, download_root=root, md5=md5)


def read_split(folder, split):
    """``(images uint8 (N, 96, 96, 3), labels int64 (N,) from 0)``. Each image is stored
    channel by channel, each channel column-major; labels are 1..10."""
    with open(os.path.join(folder, f'{split}_X.bin'), 'rb') as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    if raw.size % (3 * SIDE * SIDE):
        raise ValueError(f'{split}_X.bin is not a whole number of 3x96x96 images')
    images = raw.reshape(-1, 3, SIDE, SIDE).transpose(0, 3, 2, 1)  # -> (N, row, col, channel)
    with open(os.path.join(folder, f'{split}_y.bin'), 'rb') as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64) - 1
    if labels.shape != (len(images),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f'{split}_y.bin does not hold one label 1-10 per image')
    return np.ascontiguousarray(images), labels


def resize(images, side=PROBE_SIDE):
    """Bilinear resize, as torchvision's Resize does on PIL images."""
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR))
                     for im in images])


def stl10_splits(root, splits=('train', 'test')):
    folder = os.path.join(root, FOLDER)
    files = [f'{s}_{part}.bin' for s in splits for part in ('X', 'y')]
    if not all(os.path.isfile(os.path.join(folder, f)) for f in files):
        existed = os.path.isdir(root)
        try:
            download(URL, root, MD5)
        except Exception as e:  # any network or checksum failure ends in the same advice
            if not existed:
                shutil.rmtree(root, ignore_errors=True)
            raise DatasetError(f"STL-10 is not in '{folder}' and downloading it failed ({e}). "
                               f"Unpack {os.path.basename(URL)} into '{root}' (files: "
                               f"{', '.join(files)}).") from None
    try:
        return [ArrayDataset(*_resized(read_split(folder, s))) for s in splits]
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read STL-10 from '{folder}' ({e}); delete the folder to "
                           f"download it again.") from None


def _resized(split):
    images, labels = split
    return resize(images), labels
