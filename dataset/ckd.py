"""CKD's coded teacher inputs (Salamah et al., "A Coded Knowledge Distillation framework for
Image Classification Based on Adaptive JPEG Encoding"): the frozen teacher sees a JPEG-coded
copy of each training image, the student the clean image, both with the same crop and flip.

The quality of each image's copy, and its crop and flip, come from stored *rounds* (chosen
once per teacher by ``helper.ckd.prepare_rounds``): one round per epoch, cycling through the
rounds in a shuffled order. Nothing coded is stored: each epoch's teacher views are coded when
needed, by the process that trains on them, spread over the data-loading workers.

Batches hold both views, ``(B, 2, C, H, W)``: ``[:, 0]`` for the student, ``[:, 1]`` for the
teacher (``distiller_zoo.base.Distiller`` splits them).
"""
import io
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .base import DatasetError
from .batch_loader import BatchLoader
from .device_loader import PAD

CLEAN = -1  # the "quality" of the uncoded candidate
FIELDS = ('quality', 'row', 'col', 'flip')  # one chosen candidate: its coding, crop and flip


def jpeg_round_trip(image, quality):
    """``image`` (H, W, 3 uint8) JPEG-coded at ``quality`` with the standard tables and no
    chroma subsampling (4:4:4), decoded back to RGB; ``CLEAN`` returns it as it is."""
    if quality == CLEAN:
        return image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=int(quality), subsampling=0)
    buffer.seek(0)
    return np.array(Image.open(buffer).convert('RGB'))


def _code_chunk(args):
    images, qualities = args
    return np.stack([jpeg_round_trip(im, q) for im, q in zip(images, qualities)])


def code_images(images, qualities, workers=0):
    """JPEG round trips of ``images`` (N, H, W, 3) at per-image ``qualities``, spread over
    ``workers`` processes (0: this one)."""
    qualities = np.asarray(qualities)
    if workers <= 1 or len(images) < 256:
        return _code_chunk((images, qualities))
    bounds = np.linspace(0, len(images), workers * 4 + 1).astype(int)
    chunks = [(images[a:b], qualities[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with get_context('fork').Pool(workers) as pool:
        return np.concatenate(pool.map(_code_chunk, chunks))


def candidate_qualities(delta):
    """The candidates of one image: the clean image, then qualities 0, delta, ..., 100."""
    return [CLEAN] + list(range(0, 101, delta))


@dataclass
class CodedRounds:
    """Stored rounds, ``choices`` (R, N, 4) of ``FIELDS``; ``mode`` 'ckd' codes the teacher's
    view, 'clean' (the authors' control) gives the teacher the clean view with the same crops
    and flips, 'student' yields the student's view alone (the teacher's outputs come from a
    store, ``helper.teacher_cache``); ``seed`` orders the rounds."""
    choices: np.ndarray
    mode: str = 'ckd'
    seed: int = 0

    def round_for_epoch(self, epoch):
        """Epochs (from 1) take the rounds in a shuffled order, a new order each time all
        have been used."""
        count = len(self.choices)
        cycle, position = divmod(epoch - 1, count)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + cycle))
        return int(order[position])


def crop_and_flip(images, rows, cols, flips):
    """Zero-pad 4, take the 32x32 window at (row, col), flip where asked; (B, C, H, W)."""
    b, _, h, w = images.shape
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    r = (rows[:, None] + torch.arange(h, device=images.device))[:, :, None]
    c = (cols[:, None] + torch.arange(w, device=images.device))[:, None, :]
    c = torch.where(flips[:, None, None], c.flip(2), c)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, r, c].permute(0, 3, 1, 2)


class CodedPairLoader(BatchLoader):
    """The device loader for CKD: the clean set lives on the device; at each epoch this
    process codes the teacher views of its share of the round, in ``workers`` processes."""

    def __init__(self, dataset, batch_size, device, mean, std, coded, workers=0, train=True,
                 **kwargs):
        super().__init__(dataset, batch_size, device, mean, std, train=train, **kwargs)
        self.coded, self.workers = coded, workers
        self.clean = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).contiguous().to(device)
        self.round = None

    def set_epoch(self, epoch):
        """The epoch's round; its crops and flips go to the device once, here."""
        self.round = self.coded.choices[self.coded.round_for_epoch(epoch)]
        self.crops = torch.from_numpy(self.round[:, 1:].astype(np.int64)).to(self.device)

    def batches(self, order, augment):
        if self.round is None:
            raise RuntimeError('CodedPairLoader.set_epoch must be called before iterating')
        if self.coded.mode == 'ckd':
            coded = code_images(self.dataset.images[order.numpy()], self.round[order.numpy(), 0],
                                self.workers)
            self._coded = torch.from_numpy(coded).permute(0, 3, 1, 2).to(self.device)
            position = torch.empty(len(self.dataset), dtype=torch.long)
            position[order] = torch.arange(len(order))  # where each sample's coded view sits
            self._position = position.to(self.device)
        return super().batches(order, augment)

    def load(self, index, augment):
        rows, cols, flips = self.crops[index].unbind(1)
        student = crop_and_flip(self.clean[index], rows, cols, flips.bool())
        if self.coded.mode == 'student':
            return self.normalize(student)
        teacher = student  # 'clean': the same view
        if self.coded.mode == 'ckd':
            teacher = crop_and_flip(self._coded[self._position[index]], rows, cols, flips.bool())
        return self.normalize(torch.stack([student, teacher], 1))


class CodedPairs(Dataset):
    """The classic-loader counterpart: ``(views (2, C, H, W), target)`` per image, the
    teacher's view coded in the data-loading worker that loads it."""

    def __init__(self, base, coded, normalize):
        self.base, self.coded, self.normalize = base, coded, normalize
        self.targets = base.targets
        self.choices = None

    def set_epoch(self, epoch):
        self.choices = self.coded.choices[self.coded.round_for_epoch(epoch)]

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        quality, row, col, flip = (int(v) for v in self.choices[index])
        image = self.base.images[index]
        teacher = jpeg_round_trip(image, quality) if self.coded.mode == 'ckd' else image
        views = torch.from_numpy(np.stack([image, teacher])).permute(0, 3, 1, 2)
        crops = crop_and_flip(views, torch.tensor([row] * 2), torch.tensor([col] * 2),
                              torch.tensor([bool(flip)] * 2))
        crops = self.normalize(crops.float() / 255)
        return crops[0] if self.coded.mode == 'student' else crops, self.base.targets[index]


def check_codable(train_set, flag='--ckd'):
    """CKD and the teacher-output cache (``flag``) work on in-memory 32x32 data sets (CIFAR,
    synthetic)."""
    images = getattr(train_set, 'images', None)
    if images is None or images.shape[1:3] != (32, 32):
        raise DatasetError(f'{flag} works on 32x32 in-memory data sets (CIFAR-10/100, '
                           f'synthetic)')
    return images


