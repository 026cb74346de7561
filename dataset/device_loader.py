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
    def __init__(self, dataset, batch_size, device, mean, std, train=True, **kwargs):
        super().__init__(dataset, batch_size, device, mean, std, train=train, **kwargs)
        self.images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).contiguous().to(device)

    def load(self, index, augment):
        images = self.images[index]
        return self.normalize(self.augment(images) if augment else images)

    def augment(self, images):
        """Random crop with zero padding and random horizontal flip, per image."""
        b, _, h, w = images.shape
        offsets = torch.randint(0, 2 * PAD + 1, (b, 2), generator=self._draws)
        flips = torch.rand(b, generator=self._draws) < 0.5
        offsets, flips = offsets.to(self.device), flips.to(self.device)
        padded = F.pad(images, (PAD, PAD, PAD, PAD))
        rows = (offsets[:, 0:1] + torch.arange(h, device=self.device))[:, :, None]  # (b, h, 1)
        cols = (offsets[:, 1:2] + torch.arange(w, device=self.device))[:, None, :]  # (b, 1, w)
        cols = torch.where(flips[:, None, None], cols.flip(2), cols)  # a flip reverses columns
        batch = torch.arange(b, device=self.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
