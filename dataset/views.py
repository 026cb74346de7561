"""Multi-view batches (``dataset.batch.Views``) that methods declare."""
import numpy as np
import torch
from PIL import Image

from .augment import PAD, crop_and_flip, random_crops, random_flips
from .batch import Views
from .randaugment import rand_augment


class RotatedViews(Views):
    """MLKD's views (ifding/DLKD): each image after one random horizontal flip, rotated
    counter-clockwise by 0, 90, 180 and 270 degrees (numpy's ``rot90``), each rotation cropped
    on its own (zero padding 4, no further flip). The networks see all four in one pass."""
    count = 4
    joint = True
    name = 'rotated views'

    def make(self, images, draws):
        flipped = torch.where(random_flips(len(images), draws, images.device)[:, None, None, None],
                              images.flip(3), images)
        views = torch.stack([flipped.rot90(k, dims=(2, 3)) for k in range(self.count)], 1)
        flat = views.flatten(0, 1)
        rows, cols, flips = random_crops(len(flat), draws, images.device, flip=False)
        return crop_and_flip(flat, rows, cols, flips).unflatten(0, (len(images), self.count))


def crop_and_flip_one(image, rng):
    """``RandomCrop(32, padding=4)`` (zero padding) and ``RandomHorizontalFlip()`` of one
    ``(H, W, C)`` array, drawn from ``rng`` (a numpy ``RandomState``)."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    row, col = rng.randint(0, 2 * PAD + 1, size=2)
    crop = padded[row:row + h, col:col + w]
    return crop[:, ::-1] if rng.random_sample() < 0.5 else crop


class WeakStrongViews(Views):
    """MLLD's views (Jin-Ying/Multi-Level-Logit-Distillation): a weak view (crop and flip) and a
    strong one (its own crop and flip, then FixMatch's RandAugment and Cutout,
    ``dataset.randaugment``) of each image, each seen in its own pass. RandAugment is PIL work
    on one image at a time, so they are made in the DataLoader workers (the classic loader)."""
    per_image = True
    name = 'weak and strong views'

    def make_one(self, image, rng):
        weak = crop_and_flip_one(image, rng)
        strong = rand_augment(Image.fromarray(np.ascontiguousarray(crop_and_flip_one(image, rng))),
                              rng)
        return np.stack([weak, np.asarray(strong)])
