"""ImageNet loading speed: images/s that each training loader delivers, without a network.

    python scripts/benchmark_loaders.py                      # generated JPEGs, every loader here
    python scripts/benchmark_loaders.py --data_folder ./data --images 20000 --num_workers 16

Loaders: ``classic`` (DataLoader workers with PIL, the default for ImageNet), ``nvjpeg``
(torchvision's batched ``decode_jpeg`` on the training device, what ``--dali gpu`` falls back
to), ``dali-cpu`` and ``dali-gpu`` (``--dali cpu|gpu``; need NVIDIA DALI, and a GPU for
``dali-gpu``). Each reads the first ``--images`` training images of
``<data_folder>/imagenet/train``, or, without ``--data_folder``, that many generated 500x375
JPEGs (ImageNet's typical size), with the standard random-resized-crop augmentation, and is timed
after ``--warmup`` batches. Files are read once beforehand, so the figures are for a warm page
cache.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(SCRIPTS), SCRIPTS]

from benchmark import device_label  # noqa: E402
from dataset import DATASETS  # noqa: E402
from dataset.dali_loader import DaliLoader, dali_available  # noqa: E402
from dataset.jpeg_loader import JpegLoader  # noqa: E402
from dataset.loaders import ClassicLoader  # noqa: E402

LOADERS = ('classic', 'nvjpeg', 'dali-cpu', 'dali-gpu')


def write_jpegs(root, n, classes=10):
    """``n`` 500x375 JPEGs of smooth random content, about the size of ImageNet's files."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500] / 60.0
    for i in range(n):
        folder = os.path.join(root, f'n{i % classes:02d}')
        os.makedirs(folder, exist_ok=True)
        phase = rng.uniform(0, 6, (3, 3))
        image = np.stack([np.sin(x * a + y * b + c) for a, b, c in phase], -1) * 90 + 128
        image += rng.normal(0, 12, image.shape)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
            os.path.join(folder, f'{i}.JPEG'), quality=90)


class Subfolder(ImageFolder):
    """The first ``n`` samples of an ImageFolder (sorted by class and name)."""

    def __init__(self, root, n):
        super().__init__(root)
        self.samples = self.imgs = self.samples[:n]
        self.targets = self.targets[:n]


def build(name, data, args, device):
    source = DATASETS['imagenet']
    if name == 'classic':
        return ClassicLoader(data, args.batch_size, device, source.mean, source.std,
                             num_workers=args.num_workers, transform=source.image_transform(True),
                             augmented=True, crop=False, pin_memory=device.type == 'cuda')
    common = dict(mean=source.mean, std=source.std, image_size=source.image_size,
                  num_threads=args.num_workers)
    if name == 'nvjpeg':
        return JpegLoader(data, args.batch_size, device, **common)
    return DaliLoader(data, args.batch_size, device, backend=name.split('-')[1], **common)


def measure(loader, warmup, device):
    count, start = 0, None
    for step, batch in enumerate(loader):
        images = batch[0].to(device, non_blocking=True)
        if step == warmup:
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start, count = time.perf_counter(), 0
        count += len(images)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main(argv=None):
    from core.log import log_to_stdout
    log_to_stdout()  # the library's lines (a note on the data, say) reach the terminal
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_folder', default=None,
                        help='holds imagenet/train (default: generate JPEGs in a temporary folder)')
    parser.add_argument('--images', type=int, default=512, help='training images to load')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--num_workers', type=int, default=os.cpu_count() or 1,
                        help='DataLoader processes, or reading/decoding threads')
    parser.add_argument('--warmup', type=int, default=2, help='untimed batches first')
    parser.add_argument('--loaders', default=','.join(LOADERS))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', default='benchmark_loaders.json')
    args = parser.parse_args(argv)
    if args.images < (args.warmup + 1) * args.batch_size:
        parser.error('--images must cover the warm-up batches and at least one more')
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_folder:
            root = os.path.join(args.data_folder, 'imagenet', 'train')
        else:
            root = tmp
            write_jpegs(root, args.images)
        data = Subfolder(root, args.images)
        for path, _ in data.samples:  # warm the page cache
            with open(path, 'rb') as f:
                f.read()
        results = {}
        for name in args.loaders.split(','):
            if name.startswith('dali') and not dali_available():
                print(f'{name:9s} skipped: NVIDIA DALI is not installed')
                continue
            if name == 'dali-gpu' and device.type != 'cuda':
                print(f'{name:9s} skipped: needs a GPU')
                continue
            results[name] = measure(build(name, data, args, device), args.warmup, device)
            print(f'{name:9s} {results[name]:8.1f} images/s', flush=True)
    with open(args.json, 'w') as f:
        json.dump({'device': device_label(device.type), 'args': vars(args),
                   'images_per_second': results}, f, indent=2)
    print(f'figures written to {args.json}')


if __name__ == '__main__':
    main()
