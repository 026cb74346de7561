"""Stored rounds: per image and round, a crop, a flip and (for CKD, Salamah et al., "A Coded
Knowledge Distillation framework for Image Classification Based on Adaptive JPEG Encoding") the
JPEG quality of the teacher's view. Each epoch takes one round, cycling through them in a
shuffled order; the loaders crop with the round's crops instead of random ones and, when the
rounds are ``coded``, give the teacher a JPEG-coded copy of each image (``Batch.teacher_image``)
with the same crop and flip. Nothing coded is stored: each epoch's teacher views are coded when
needed, by the process that trains on them.

CKD's preparation (``helper.ckd``) chooses the rounds; the teacher-output cache
(``helper.teacher_cache``) draws plain ones.
"""
import io
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from PIL import Image

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


def round_for_epoch(epoch, count, seed):
    """The round (of ``count``) that epoch ``epoch`` (from 1) uses: the rounds are taken in a
    shuffled order, a new order each time all have been used."""
    cycle, position = divmod(epoch - 1, count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(
        seed * 1_000_003 + cycle))
    return int(order[position])


@dataclass
class StoredRounds:
    """``choices`` (R, N, 4) of ``FIELDS``; ``seed`` orders the rounds; ``coded``: the teacher
    sees each image's JPEG-coded copy at the chosen quality."""
    choices: np.ndarray
    seed: int = 0
    coded: bool = False

    def round_for_epoch(self, epoch):
        return round_for_epoch(epoch, len(self.choices), self.seed)

    def of_epoch(self, epoch):
        """The epoch's choices, (N, 4)."""
        return self.choices[self.round_for_epoch(epoch)]
