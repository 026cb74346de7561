"""Data set wrappers shared by every data source.

A base data set returns ``(img, target)`` and exposes ``targets``. The wrappers add what some
methods consume: the sample index (``IndexedDataset``) or the index plus CRD's positive and
negative sample indices (``ContrastSampleDataset``).
"""
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from helper.core.util import UserError


class DatasetError(UserError):
    """A data set is missing or malformed; the message says what to do."""


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 array of shape (N, H, W, 3)."""

    def __init__(self, images, targets, transform=None):
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3
        assert len(images) == len(targets)
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        img = Image.fromarray(self.images[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


class RotationViews(Dataset):
    """Each image as its four rotations, counter-clockwise by k quarter-turns (k = 0..3, as
    numpy's rot90), after one random horizontal flip; each view goes through ``transform`` on
    its own. Returns ``(views (4, C, H, W), target)`` (MLKD's training data)."""
    ROTATIONS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                 Image.Transpose.ROTATE_270)

    def __init__(self, base, transform):
        self.base, self.transform = base, transform
        self.targets = base.targets

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        img, target = self.base[index]
        if torch.rand(1).item() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        views = [img if r is None else img.transpose(r) for r in self.ROTATIONS]
        return torch.stack([self.transform(v) for v in views]), target


class IndexedDataset(Dataset):
    """Returns ``(img, target, index)``, RepDistiller's ``CIFAR100Instance``."""

    def __init__(self, base):
        self.base = base
        self.targets = base.targets

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        img, target = self.base[index]
        return img, target, index


class ContrastSampleDataset(IndexedDataset):
    """Returns ``(img, target, index, sample_idx)`` for CRD, RepDistiller's
    ``CIFAR100InstanceSample``: ``sample_idx[0]`` is the positive (the sample itself in mode
    ``exact``, a random same-class sample in mode ``relax``), ``sample_idx[1:]`` are ``k``
    negatives drawn from the other classes."""

    def __init__(self, base, k=4096, mode='exact', is_sample=True, percent=1.0):
        super().__init__(base)
        if mode not in ('exact', 'relax'):
            raise ValueError(f"mode must be 'exact' or 'relax', got {mode!r}")
        self.k, self.mode, self.is_sample = k, mode, is_sample
        targets = np.asarray(self.targets)
        num_classes = int(targets.max()) + 1
        self.cls_positive = [np.flatnonzero(targets == c) for c in range(num_classes)]
        self.cls_negative = [np.concatenate([self.cls_positive[j] for j in range(num_classes)
                                             if j != c]) for c in range(num_classes)]
        if 0 < percent < 1:
            keep = int(len(self.cls_negative[0]) * percent)
            self.cls_negative = [np.random.permutation(neg)[:keep] for neg in self.cls_negative]

    def __getitem__(self, index):
        img, target, index = super().__getitem__(index)
        if not self.is_sample:
            return img, target, index
        positive = index if self.mode == 'exact' else np.random.choice(self.cls_positive[target])
        negatives = self.cls_negative[target]
        replace = self.k > len(negatives)
        sample_idx = np.hstack(([positive], np.random.choice(negatives, self.k, replace=replace)))
        return img, target, index, sample_idx
