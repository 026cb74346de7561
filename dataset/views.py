"""Multi-view batches (``dataset.batch.Views``) that methods declare."""
import torch

from .augment import crop_and_flip, random_crops, random_flips
from .batch import Views


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
