"""The one data pipeline of both loaders.

A ``BatchLoader`` draws each epoch's order from ``self.generator`` (a CPU generator, so that runs
are reproducible on any device), splits it across the processes of a run, and turns each chunk
of sample indices into a ``Batch`` in ``make_batch``: the uint8 images of the chunk, on the
training device, are cropped and flipped (randomly, or as the epoch's stored round says),
turned into views when the method asks for them, and normalised; the targets, the sample
indices and CRD's contrast indices are added. Every feature is written once, there.

Where the chunk's uint8 images come from is what the loaders differ in:
- ``DeviceLoader`` keeps an in-memory data set on the training device and gathers them there;
- ``ClassicLoader`` is a DataLoader whose workers read (and decode, resize) them, with whatever
  work must be done image by image: ImageNet's random-resized crop, per-image views, CKD's JPEG
  coding of the teacher's view. The batch stage then runs in the main process, on the device.
Both draw the batch stage's randomness from the same stream, so for in-memory data they give
the same batches.

In a run of ``world`` processes, all draw the same permutation and process ``rank`` takes every
``world``-th sample of it (the training order is padded by wrapping, as DistributedSampler does,
so that every process makes the same number of steps); augmentation then draws from a per-rank
stream.
"""
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .augment import Normalizer, crop_and_flip, random_crops
from .batch import Batch, BatchSpec, MixedBatch
from .rounds import code_images, jpeg_round_trip


class BatchLoader:
    """``crop``: training images are cropped and flipped here (32x32 data); False where the
    images come augmented (ImageNet's crops are made per image). ``rounds``
    (``dataset.rounds.StoredRounds``): the epoch's crops come from its round, and a coded
    round's JPEG copies become the teacher's view; call ``set_epoch`` before each epoch.
    ``resize``: the side the finished images are resized to (bilinear; ``--img_size`` of 32x32
    data), None to keep them. ``augment`` (``core.config.Augmentation``, training only): random
    erasing and mixup/CutMix of the finished batch, timm's, drawn from the batch stage's
    stream (``num_classes`` sizes the mixed labels)."""

    def __init__(self, dataset, batch_size, device, mean, std, train=True, spec=BatchSpec(),
                 rounds=None, crop=True, rank=0, world=1, resize=None, augment=None,
                 num_classes=None):
        self.dataset = dataset  # the untransformed data set (len, targets)
        self.rank, self.world = rank, world
        self.batch_size, self.device, self.train = batch_size, torch.device(device), train
        self.spec = spec if train else BatchSpec()
        self.rounds, self.crop, self.resize = rounds, crop, resize
        self.batch_augment = BatchAugment(augment, num_classes, self.device) if (
            train and augment is not None and (augment.mixes or augment.reprob)) else None
        self.mean, self.std = mean, std
        self.normalize = Normalizer(mean, std, self.device)
        self.targets = torch.tensor(dataset.targets, dtype=torch.int64, device=self.device)
        self.contrast = self.spec.contrast.sampler(self.targets) if self.spec.contrast else None
        self.generator = torch.Generator().manual_seed(0)
        self._draws = self.generator  # augmentation and CRD sampling
        self.round = None

    def set_epoch(self, epoch):
        """The epoch's stored round (its crops go to the device once, here)."""
        if self.rounds is not None:
            self.round = self.rounds.of_epoch(epoch)
            self.round_crops = torch.from_numpy(self.round[:, 1:].astype(np.int64)).to(
                self.device)

    def _padded_size(self):
        n = len(self.dataset)
        return math.ceil(n / self.world) * self.world if self.train else n

    def __len__(self):
        shard = len(range(self.rank, self._padded_size(), self.world))
        return math.ceil(shard / self.batch_size)

    def __iter__(self):
        if self.rounds is not None and self.round is None:
            raise RuntimeError('set_epoch must be called before iterating over stored rounds')
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        order = torch.cat([order, order[:self._padded_size() - n]])
        self._draws = self.generator
        if self.world > 1:  # the permutation is shared; the augmentation is each rank's own
            stream = int(torch.randint(2 ** 62, (1,), generator=self.generator))
            self._draws = torch.Generator().manual_seed(stream + self.rank)
        return self.batches(order[self.rank::self.world])

    def chunks(self, order):
        return [order[start:start + self.batch_size]
                for start in range(0, len(order), self.batch_size)]

    def batches(self, order):
        """``Batch`` per chunk of ``order`` (this process's share of the epoch)."""
        raise NotImplementedError

    def make_batch(self, images, index, teacher_images=None, augmented=False,
                   normalized=False):
        """The ``Batch`` of the samples ``index`` (on the device) from their images (on the
        device, ``(B, C, H, W)`` 0-255, uint8 unless ``augmented``): cropped and flipped or made
        into views unless ``augmented`` already, then normalised unless ``normalized``."""
        image = images
        if self.train and not augmented:
            views = self.spec.views
            if views is not None:
                image = views.make(images, self._draws)
            elif self.crop:
                if self.round is not None:
                    rows, cols, flips = self.round_crops[index].unbind(1)
                    flips = flips.bool()
                else:
                    rows, cols, flips = random_crops(len(images), self._draws, self.device)
                image = crop_and_flip(images, rows, cols, flips)
                if teacher_images is not None:
                    teacher_images = crop_and_flip(teacher_images, rows, cols, flips)
        if not normalized:
            image = self.normalize(image)
            if teacher_images is not None:
                teacher_images = self.normalize(teacher_images)
        image, teacher_images = resized(image, self.resize), resized(teacher_images, self.resize)
        contrast = self.contrast(index, self._draws) if self.contrast is not None else None
        target, soft = self.targets[index], None
        if self.batch_augment is not None:
            image, target, soft = self.batch_augment(image, target, self._draws)
        batch = Batch(image, target, index, contrast, teacher_images)
        return batch if soft is None else MixedBatch.of(batch, soft)


class BatchAugment:
    """timm's random erasing (per image, probability ``reprob``) and mixup/CutMix (one draw per
    batch, the batch mixed with itself reversed) of a finished batch; the labels become the
    mixed, smoothed ones, ``target`` each one's largest class. The draws come from ``draws``
    (the loader's stream), so a resumed run makes the same ones."""

    def __init__(self, augment, num_classes, device):
        from timm.data import Mixup
        from timm.data.random_erasing import RandomErasing
        self.augment, self.num_classes = augment, num_classes
        self.erase = (RandomErasing(augment.reprob, mode='pixel', device=str(device))
                      if augment.reprob else None)
        self.mixer = (Mixup(mixup_alpha=augment.mixup, cutmix_alpha=augment.cutmix,
                            label_smoothing=augment.smoothing, num_classes=num_classes)
                      if augment.mixes else None)

    def __call__(self, image, target, draws):
        from timm.data.mixup import mixup_target
        seed = int(torch.randint(2 ** 31, (1,), generator=draws))
        random.seed(seed)
        np.random.seed(seed)
        image = image.clone()  # both act in place
        if self.erase is not None:  # its noise from torch's generator, seeded and restored
            devices = [image.device] if image.device.type == 'cuda' else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                image = self.erase(image)
        if self.mixer is None:
            return image, target, None
        lam = self.mixer._mix_batch(image)
        soft = mixup_target(target, self.num_classes, lam, self.augment.smoothing)
        return image, soft.argmax(1), soft


def resized(images, side):
    """Float images ``(..., C, H, W)`` (views included) resized to ``side`` x ``side`` (as they
    are when ``side`` is None)."""
    if images is None or side is None or images.shape[-1] == side:
        return images
    flat = images.flatten(0, images.dim() - 4)
    out = F.interpolate(flat, size=(side, side), mode='bilinear', align_corners=False)
    return out.view(*images.shape[:-2], side, side)


class DeviceLoader(BatchLoader):
    """The whole (in-memory) data set on the training device as one uint8 tensor; a coded
    round's teacher views of this process's share are coded at the start of each epoch, in
    ``workers`` processes."""

    def __init__(self, dataset, batch_size, device, mean, std, workers=0, **kwargs):
        super().__init__(dataset, batch_size, device, mean, std, **kwargs)
        self.images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).contiguous().to(
            self.device)
        self.workers = workers

    def batches(self, order):
        coded = None
        if self.train and self.rounds is not None and self.rounds.coded:
            share = order.numpy()
            coded = torch.from_numpy(code_images(self.dataset.images[share],
                                                 self.round[share, 0], self.workers))
            coded = coded.permute(0, 3, 1, 2).to(self.device)
            position = torch.empty(len(self.dataset), dtype=torch.long)
            position[order] = torch.arange(len(order))  # where each sample's coded view sits
            position = position.to(self.device)
        for index in self.chunks(order):
            index = index.to(self.device, non_blocking=True)
            teacher = coded[position[index]] if coded is not None else None
            yield self.make_batch(self.images[index], index, teacher)


def _seed_numpy_in_worker(worker_id):
    # Workers inherit the parent's numpy state; reseed so per-image draws differ per worker.
    np.random.seed(torch.initial_seed() % 2 ** 32)


class _Items(Dataset):
    """What the classic loader's workers make of one sample: its uint8 image ``(C, H, W)``
    (after ``transform``, the data set's per-image work, or as per-image ``views``
    ``(V, C, H, W)``), its teacher view (``quality``: a JPEG copy; else empty) and its
    index."""

    def __init__(self, dataset, transform=None, views=None, qualities=None):
        self.dataset, self.transform, self.views = dataset, transform, views
        self.qualities = qualities

    def __len__(self):
        return len(self.dataset)

    def image(self, index):
        if hasattr(self.dataset, 'images'):  # in memory
            image = self.dataset.images[index]
        else:
            image = self.dataset[index][0]
        if self.transform is not None:
            image = self.transform(image if isinstance(image, Image.Image)
                                   else Image.fromarray(image))
        return np.array(image.convert('RGB')) if isinstance(image, Image.Image) else image

    def __getitem__(self, index):
        image = self.image(index)
        teacher = torch.empty(0, dtype=torch.uint8)
        if self.qualities is not None:
            teacher = torch.from_numpy(jpeg_round_trip(image, self.qualities[index])).permute(
                2, 0, 1)
        if self.views is not None:
            made = self.views.make_one(image, np.random)
            return torch.from_numpy(np.ascontiguousarray(made)).permute(0, 3, 1, 2), teacher, index
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), teacher, index


def _collate(items):
    images, teachers, index = zip(*items)
    teacher = torch.stack(teachers) if teachers[0].numel() else None
    return torch.stack(images), teacher, torch.tensor(index)


class ClassicLoader(BatchLoader):
    """A DataLoader per epoch over this process's share, in ``num_workers`` processes.
    ``transform``: the data set's per-image work on a PIL image (decode-side resizing and
    crops), when it has any; ``augmented``: that work already augments (ImageNet's
    random-resized crop and flip), so the batch stage only normalises."""

    def __init__(self, dataset, batch_size, device, mean, std, num_workers=0, transform=None,
                 augmented=False, pin_memory=False, per_image_draws=False, **kwargs):
        super().__init__(dataset, batch_size, device, mean, std, **kwargs)
        self.num_workers, self.transform, self.pin_memory = num_workers, transform, pin_memory
        self.augmented = augmented and self.train
        self.random_transform = per_image_draws  # the transform draws (RandAugment)

    def batches(self, order):
        views = self.spec.views if self.spec.views is not None and self.spec.views.per_image \
            else None
        coded = self.train and self.rounds is not None and self.rounds.coded
        items = _Items(self.dataset, self.transform, views,
                       self.round[:, 0] if coded else None)
        per_image_draws = self.augmented or views is not None or self.random_transform
        # Per-image randomness lives in the workers; seeded from the epoch's stream only then,
        # so that without it the batches equal the device loader's.
        seed = int(torch.randint(2 ** 62, (1,), generator=self._draws)) if per_image_draws \
            else 0
        if self.random_transform and self.num_workers == 0:  # RandAugment draws from these
            random.seed(seed)
            np.random.seed(seed % 2 ** 32)
        loader = DataLoader(items, batch_sampler=[c.tolist() for c in self.chunks(order)],
                            num_workers=self.num_workers, collate_fn=_collate,
                            worker_init_fn=_seed_numpy_in_worker, pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(seed))
        for images, teacher, index in loader:
            index = index.to(self.device, non_blocking=True)
            images = images.to(self.device, non_blocking=True)
            if teacher is not None:
                teacher = teacher.to(self.device, non_blocking=True)
            yield self.make_batch(images, index, teacher, augmented=self.augmented
                                  or views is not None)
