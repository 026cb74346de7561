"""NVIDIA DALI for folders of JPEGs: SimKD's ``--dali gpu|cpu``.

The epoch order, sharding and CRD sampling stay ``BatchLoader``'s, so a DALI run sees the same
samples per rank and per epoch as the other loaders. Each epoch builds a pipeline, seeded from
the loader's generator, whose external source is fed the encoded files in that order (with
their indices, which travel through the pipeline beside the images). ``gpu`` decodes with
nvJPEG (DALI's ``mixed`` decoder) and augments on the GPU; ``cpu`` decodes and augments in DALI's
CPU threads. The augmentation is the standard one: random-resized crop (fused into decoding)
and horizontal flip. It is a training loader only (see ``dataset._batch_loaders``).
"""
import importlib.util

import torch

from .jpeg_loader import ATTEMPTS, RATIO, SCALE, EncodedLoader


def dali_available():
    """Whether NVIDIA DALI is installed; it is imported only by a run that uses it (the import
    takes seconds)."""
    try:
        return importlib.util.find_spec('nvidia.dali') is not None
    except ModuleNotFoundError:  # no 'nvidia' package at all
        return False


class DaliLoader(EncodedLoader):
    def __init__(self, *args, backend='gpu', **kwargs):
        super().__init__(*args, **kwargs)
        if not self.train:
            raise ValueError('DaliLoader is a training loader')
        on_gpu = self.device.type == 'cuda'
        if backend == 'gpu' and not on_gpu:
            raise ValueError("DALI's gpu backend needs a CUDA training device")
        self.decoder = 'mixed' if backend == 'gpu' else 'cpu'
        self.device_id = (self.device.index or 0) if on_gpu else None

    def batches(self, order):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        def encoded():
            for index, files in self.encoded_batches(order):
                yield [data.numpy() for data in files], list(index.numpy())

        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=self._draws))
        pipe = self._pipeline(encoded, batch_size=self.batch_size,
                              num_threads=self.num_threads, device_id=self.device_id, seed=seed)
        pipe.build()
        for out in DALIGenericIterator(pipe, ['images', 'index'],
                                       last_batch_policy=LastBatchPolicy.PARTIAL):
            yield self.make_batch(out[0]['images'].to(self.device),
                                  out[0]['index'].view(-1).to(self.device), normalized=True)

    def _pipeline(self, source, **pipeline_args):
        from nvidia import dali
        from nvidia.dali import fn, types

        @dali.pipeline_def(**pipeline_args)
        def pipeline():
            jpegs, index = fn.external_source(source=source, num_outputs=2, batch=True,
                                              dtype=[types.UINT8, types.INT64])
            images = fn.decoders.image_random_crop(
                jpegs, device=self.decoder, output_type=types.RGB, random_area=list(SCALE),
                random_aspect_ratio=list(RATIO), num_attempts=ATTEMPTS)
            images = fn.resize(images, resize_x=self.image_size, resize_y=self.image_size)
            if self.device_id is not None:
                images = images.gpu()
            images = fn.crop_mirror_normalize(
                images, dtype=types.FLOAT, output_layout='CHW',
                mean=[255 * m for m in self.mean], std=[255 * s for s in self.std],
                mirror=fn.random.coin_flip(probability=0.5))
            return images, index
        return pipeline()
