"""Data set registry and loaders.

``get_dataloaders`` builds the train and test loaders of a data set; ``variant`` selects what a
training batch holds: ``plain`` ``(img, target)``, ``instance`` ``(img, target, index)`` or
``sample`` ``(img, target, index, sample_idx)`` (CRD). ``loader='device'`` keeps an in-memory
data set on the training device (``DeviceLoader``); ``'classic'`` is a torch DataLoader with
PIL transforms, as RepDistiller. Folders of JPEGs (ImageNet) use the classic loader unless
``dali`` asks for NVIDIA DALI (``DaliLoader``); without DALI installed, ``dali='gpu'`` on a GPU
decodes with torchvision's nvJPEG instead (``JpegLoader``).
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision import transforms

from helper.core.distributed import is_main, rank_and_world
from . import synthetic
from .base import ArrayDataset, ContrastSampleDataset, DatasetError, IndexedDataset, RotationViews
from .cifar import CIFAR, cifar_splits
from .dali_loader import DaliLoader, dali_available
from .device_loader import DeviceLoader
from .imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD, imagenet_splits
from .jpeg_loader import JpegLoader
from .ckd import CodedPairLoader, CodedPairs, check_codable
from . import stl10, tinyimagenet


@dataclass(frozen=True)
class DataSource:
    splits: Callable  # (data_folder, splits=('train', 'test')) -> a data set each, untransformed
    num_classes: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    image_size: int = 32
    resize: Optional[int] = None  # resize the images to this side first (TinyImageNet)
    in_memory: bool = True  # one uint8 array (CIFAR, synthetic, STL-10); else files on disk

    @property
    def codable(self):
        """Whether CKD's coded views and the teacher-output cache work on it (32x32 images
        in memory)."""
        return self.in_memory and self.image_size == 32


DATASETS = {
    'cifar100': DataSource(partial(cifar_splits, 'cifar100'), 100, CIFAR['cifar100']['mean'],
                           CIFAR['cifar100']['std']),
    'cifar10': DataSource(partial(cifar_splits, 'cifar10'), 10, CIFAR['cifar10']['mean'],
                          CIFAR['cifar10']['std']),
    'synthetic': DataSource(synthetic.synthetic_splits, synthetic.NUM_CLASSES, synthetic.MEAN,
                            synthetic.STD),
    'imagenet': DataSource(imagenet_splits, 1000, IMAGENET_MEAN, IMAGENET_STD, 224,
                           in_memory=False),
    # Transfer targets of linear probes (transfer_student.py), at CIFAR's 32x32.
    'stl10': DataSource(stl10.stl10_splits, 10, stl10.MEAN, stl10.STD),
    'tinyimagenet': DataSource(tinyimagenet.tinyimagenet_splits, 200, tinyimagenet.MEAN,
                               tinyimagenet.STD, resize=32, in_memory=False),
}
VARIANTS = ('plain', 'instance', 'sample')
LOADERS = ('device', 'classic')


def get_transforms(source, flip=True):
    """Train and test transforms: RepDistiller's crop+flip for 32x32 data, the standard
    random-resized-crop recipe for ImageNet (without the flip when ``flip`` is False)."""
    normalize = transforms.Normalize(source.mean, source.std)
    flips = [transforms.RandomHorizontalFlip()] if flip else []
    if source.image_size == 32:
        resize = [transforms.Resize(source.resize)] if source.resize else []
        train = resize + [transforms.RandomCrop(32, padding=4)] + flips
        test = resize
    else:
        train = [transforms.RandomResizedCrop(source.image_size)] + flips
        test = [transforms.Resize(int(source.image_size * 256 / 224)),
                transforms.CenterCrop(source.image_size)]
    return (transforms.Compose(train + [transforms.ToTensor(), normalize]),
            transforms.Compose(test + [transforms.ToTensor(), normalize]))


def _batch_loaders(source, test_set, loader, dali, device, num_workers):
    """The training and test ``BatchLoader`` (classes with their loader-specific arguments
    bound) for this data set and these flags, ``None`` for the classic DataLoader. Says once
    (it is called once per run) when ``--dali`` cannot be honoured as asked. DALI trains only:
    its resize rounds output sizes differently from torchvision's, so test images go through
    ``JpegLoader``, which matches Resize+CenterCrop to a grey level."""
    if isinstance(test_set, ArrayDataset):
        if dali:
            _note('--dali applies to folders of JPEGs (ImageNet); this data set is in memory '
                  f'and uses --loader {loader}')
        return (DeviceLoader, DeviceLoader) if loader == 'device' else None
    if not dali:
        return None
    jpeg = partial(JpegLoader, image_size=source.image_size, num_threads=num_workers)
    backend = dali
    if dali == 'gpu' and torch.device(device).type != 'cuda':
        if not dali_available():
            _note('--dali gpu needs a GPU and NVIDIA DALI; using the standard loader')
            return None
        _note('--dali gpu needs a GPU; DALI decodes on the CPU instead')
        backend = 'cpu'
    if dali_available():
        return partial(DaliLoader, backend=backend, image_size=source.image_size,
                       num_threads=num_workers), jpeg
    install = 'pip install -r requirements-dali.txt to use it'
    if dali == 'gpu':
        _note(f"NVIDIA DALI is not installed ({install}); decoding JPEGs on the GPU with "
              f"torchvision's nvJPEG instead")
        return jpeg, jpeg
    _note(f'NVIDIA DALI is not installed ({install}); using the standard loader')
    return None


def _note(message):
    if is_main():
        print(f'note: {message}', flush=True)


def _seed_numpy_in_worker(worker_id):
    # Workers inherit the parent's numpy state; reseed so CRD's negatives differ per worker.
    np.random.seed(torch.initial_seed() % 2 ** 32)


def get_dataloaders(dataset, data_folder='./data', batch_size=64, num_workers=8,
                    variant='instance', k=4096, mode='exact', percent=1.0, seed=None,
                    pin_memory=False, loader='classic', device='cpu', dali=None, train=True,
                    rotations=False, coded=None):
    """Return ``(train_loader, test_loader, num_classes)``; the test loader uses half the batch
    size, as RepDistiller. Both loaders expose ``dataset`` (its ``len``) and the training
    loader ``generator`` (its randomness). ``train=False`` reads the test split alone and gives
    no training loader (``None``). ``rotations``: training images come as their four rotations
    (``RotationViews``; MLKD). ``coded`` (``dataset.ckd.CodedRounds``): training batches are
    CKD's pairs of clean and coded views, from the stored rounds."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown --dataset '{dataset}'; choose one of: {', '.join(DATASETS)}")
    source = DATASETS[dataset]
    *train_set, test_set = source.splits(data_folder, ('train', 'test') if train else ('test',))
    train_set = train_set[0] if train else None
    if coded is not None:
        check_codable(train_set)
    rank, world = rank_and_world()  # each process of a multi-process run takes its share
    test_batch = max(1, batch_size // 2)
    batch_loaders = _batch_loaders(source, test_set, loader, dali, device, num_workers)
    if batch_loaders is not None:
        shared = dict(rank=rank, world=world, device=device, mean=source.mean, std=source.std)
        test = batch_loaders[1](test_set, test_batch, train=False, **shared)
        if not train:
            return None, test, source.num_classes
        if rotations and batch_loaders[0] is not DeviceLoader:
            raise DatasetError('rotated views (--distill mlkd) need --loader device or '
                               'classic, without --dali')
        extra = {'rotations': True} if rotations else {}
        make = batch_loaders[0]
        if coded is not None:
            make, extra = CodedPairLoader, {'coded': coded, 'workers': num_workers}
        train = make(train_set, batch_size, train=True, variant=variant, k=k, mode=mode,
                     **shared, **extra)
        if seed is not None:
            train.generator.manual_seed(seed)
        return train, test, source.num_classes
    train_transform, test_set.transform = get_transforms(source, flip=not rotations)
    common = dict(pin_memory=pin_memory, worker_init_fn=_seed_numpy_in_worker)
    if world > 1:
        test_set = Subset(test_set, range(rank, len(test_set), world))
    test_loader = DataLoader(test_set, batch_size=test_batch, shuffle=False,
                             num_workers=num_workers // 2, **common)
    if not train:
        return None, test_loader, source.num_classes
    pairs = None
    if coded is not None:
        train_set = pairs = CodedPairs(train_set, coded, transforms.Normalize(source.mean,
                                                                               source.std))
    elif rotations:
        train_set = RotationViews(train_set, train_transform)
    else:
        train_set.transform = train_transform
    if variant == 'instance':
        train_set = IndexedDataset(train_set)
    elif variant == 'sample':
        train_set = ContrastSampleDataset(train_set, k=k, mode=mode, percent=percent)
    elif variant != 'plain':
        raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sampler = None
    if world > 1:
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                     seed=seed or 0)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=sampler is None,
                              sampler=sampler, num_workers=num_workers, generator=generator,
                              **common)
    if pairs is not None:
        train_loader.set_epoch = pairs.set_epoch  # the epoch's round, before the workers start
    return train_loader, test_loader, source.num_classes
