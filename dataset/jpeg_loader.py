"""Loaders for folders of JPEGs (ImageNet) that decode whole batches on the training device.

``EncodedLoader`` holds what they share: the file list, a thread pool that reads files (reading
releases the GIL), and the standard recipe's sizes: RandomResizedCrop(224) and a horizontal
flip for training, Resize(256) and CenterCrop(224) for testing. ``JpegLoader`` decodes with
torchvision's batched ``decode_jpeg`` (nvJPEG on a GPU) and crops and resizes there, reading
one batch ahead; files that are not baseline JPEGs (ImageNet holds a PNG and some CMYK JPEGs)
are decoded on the CPU. ``DaliLoader`` (dali_loader.py) hands the bytes to NVIDIA DALI instead.
"""
import math
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from .loaders import BatchLoader

SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop defaults
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10


class EncodedLoader(BatchLoader):
    def __init__(self, dataset, batch_size, device, mean, std, image_size=224, num_threads=8,
                 **kwargs):
        super().__init__(dataset, batch_size, device, mean, std, crop=False, **kwargs)
        self.paths = [path for path, _ in dataset.samples]
        self.image_size = image_size
        self.num_threads = max(1, num_threads)
        self.pool = ThreadPoolExecutor(self.num_threads)

    def encoded_batches(self, order):
        """``(index, [encoded file as a uint8 tensor, ...])`` per batch of ``order``; the files
        of the next batch are read while this one is used."""
        def read(index):
            return [self.pool.submit(read_file, self.paths[i]) for i in index.tolist()]

        chunks = self.chunks(order)
        pending = read(chunks[0]) if chunks else []
        for step, index in enumerate(chunks):
            encoded = [future.result() for future in pending]
            if step + 1 < len(chunks):
                pending = read(chunks[step + 1])
            yield index, encoded


def random_resized_boxes(sizes, generator):
    """``(top, left, height, width)`` per image of ``sizes`` ``[(h, w), ...]``, drawn as
    torchvision's ``RandomResizedCrop.get_params``: up to 10 tries at a random area and log-
    uniform aspect ratio, else the central crop with the ratio clamped to ``RATIO``."""
    draws = torch.rand(len(sizes), ATTEMPTS, 4, generator=generator, dtype=torch.float64)
    boxes = []
    for (h, w), tries in zip(sizes, draws.tolist()):
        for area_u, ratio_u, top_u, left_u in tries:
            area = h * w * (SCALE[0] + (SCALE[1] - SCALE[0]) * area_u)
            log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
            ratio = math.exp(log_lo + (log_hi - log_lo) * ratio_u)
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                boxes.append((int(top_u * (h - ch + 1)), int(left_u * (w - cw + 1)), ch, cw))
                break
        else:
            if w / h < RATIO[0]:
                cw, ch = w, round(w / RATIO[0])
            elif w / h > RATIO[1]:
                ch, cw = h, round(h * RATIO[1])
            else:
                ch, cw = h, w
            boxes.append(((h - ch) // 2, (w - cw) // 2, ch, cw))
    return boxes


def center_boxes(sizes, short, crop):
    """Per image, the size Resize(short) gives it and the top-left corner of CenterCrop(crop)
    in that resized image: ``((height, width), (top, left))``."""
    boxes = []
    for h, w in sizes:
        rh, rw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        top, left = int(round((rh - crop) / 2)), int(round((rw - crop) / 2))
        boxes.append(((rh, rw), (top, left)))
    return boxes


class JpegLoader(EncodedLoader):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resize_to = int(self.image_size * 256 / 224)  # the short side before the crop

    def batches(self, order):
        for index, encoded in self.encoded_batches(order):
            index = index.to(self.device, non_blocking=True)
            yield self.make_batch(self.transform(self.decode(encoded), self.train), index,
                                  augmented=True)

    def decode(self, encoded):
        """RGB uint8 ``(3, H, W)`` tensors on the device."""
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # one file of the batch is not a JPEG the decoder takes
            return [self._decode_one(data) for data in encoded]

    def _decode_one(self, data):
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            return decode_image(data, mode=ImageReadMode.RGB).to(self.device)

    def transform(self, images, augment):
        size = self.image_size
        sizes = [tuple(image.shape[1:]) for image in images]
        out = torch.empty(len(images), 3, size, size, device=self.device)
        if augment:
            boxes = random_resized_boxes(sizes, self._draws)
            flips = (torch.rand(len(images), generator=self._draws) < 0.5).tolist()
            for k, (image, (top, left, h, w)) in enumerate(zip(images, boxes)):
                crop = _resize(image[:, top:top + h, left:left + w], (size, size))
                out[k] = crop.flip(-1) if flips[k] else crop
        else:
            for k, (image, (resized, (top, left))) in enumerate(
                    zip(images, center_boxes(sizes, self.resize_to, size))):
                out[k] = _resize(image, resized)[:, top:top + size, left:left + size]
        return out


def _resize(image, size):
    """Bilinear, antialiased resize of a uint8 ``(3, H, W)`` image to float, as torchvision's
    tensor Resize."""
    return F.interpolate(image[None].float(), size=size, mode='bilinear', antialias=True,
                         align_corners=False)[0]
