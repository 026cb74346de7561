"""A data loader for in-memory data sets that keeps the whole set on the training device.

The images live there as one uint8 tensor. Random crop (zero padding 4) and horizontal flip are
applied to whole batches with the same distribution as torchvision's ``RandomCrop(32,
padding=4)`` and ``RandomHorizontalFlip()``, and normalisation is fused into the conversion to
float. Only small index tensors cross to the device; order, sharding and CRD sampling are
``BatchLoader``'s.
"""
import torch
import torch.nn.functional as F

from .batch_loader import BatchLoader

PAD = 4


class DeviceLoader(BatchLoader):
    """``rotations=True``: each training image becomes its four rotations (counter-clockwise by
    k quarter-turns, k = 0..3, after one random flip of the image), each cropped on its own:
    batches of (B, 4, C, H, W), as MLKD's data set builds them."""

    def __init__(self, dataset, batch_size, device, mean, std, train=True, rotations=False,
                 **kwargs):
        super().__init__(dataset, batch_size, device, mean, std, train=train, **kwargs)
        self.images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).contiguous().to(device)
        self.rotations = rotations and train

    def load(self, index, augment):
        images = self.images[index]
        if not augment:
            return self.normalize(images)
        if not self.rotations:
            return self.normalize(self.augment(images))
        flipped = torch.where(self._flips(len(images))[:, None, None, None], images.flip(3),
                              images)
        views = torch.stack([flipped.rot90(k, dims=(2, 3)) for k in range(4)], 1)
        cropped = self.augment(views.flatten(0, 1), flip=False)
        return self.normalize(cropped).unflatten(0, (len(images), 4))

    def _flips(self, count):
        return (torch.rand(count, generator=self._draws) < 0.5).to(self.device)

    def augment(self, images, flip=True):
        """Random crop with zero padding and (with ``flip``) random horizontal flip, per image."""
        b, _, h, w = images.shape
        offsets = torch.randint(0, 2 * PAD + 1, (b, 2), generator=self._draws).to(self.device)
        padded = F.pad(images, (PAD, PAD, PAD, PAD))
        rows = (offsets[:, 0:1] + torch.arange(h, device=self.device))[:, :, None]  # (b, h, 1)
        cols = (offsets[:, 1:2] + torch.arange(w, device=self.device))[:, None, :]  # (b, 1, w)
        if flip:  # a flip reverses the columns
            cols = torch.where(self._flips(b)[:, None, None], cols.flip(2), cols)
        batch = torch.arange(b, device=self.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
