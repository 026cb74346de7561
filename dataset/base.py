"""The in-memory data set of every 32x32 source, and the data sets' error."""
import functools
import hashlib

import numpy as np
from torch.utils.data import Dataset

from core.util import UserError


class DatasetError(UserError):
    """A data set is missing or malformed; the message says what to do."""


def data_digest(images, labels):
    """``<count>x<digest>`` of a training set's images and labels."""
    digest = hashlib.sha256(np.ascontiguousarray(images).data)
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return f'{len(images)}x{digest.hexdigest()[:12]}'


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 array of shape (N, H, W, 3); an item is
    ``(image (H, W, 3) uint8, target)``. ``digest`` names its content (computed once)."""

    def __init__(self, images, targets):
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3
        assert len(images) == len(targets)
        self.images = images
        self.targets = [int(t) for t in targets]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.targets[index]

    @functools.cached_property
    def digest(self):
        return data_digest(self.images, self.targets)
