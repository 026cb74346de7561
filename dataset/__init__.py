"""Data set registry and loaders.

``build_loaders`` builds the train and test loaders of a data set, both yielding
``dataset.batch.Batch`` tuples through one pipeline (``dataset.loaders``). ``loader='device'``
keeps an in-memory data set on the training device (``DeviceLoader``); ``'classic'`` is a torch
DataLoader whose workers read the images, as RepDistiller. Folders of JPEGs (ImageNet) use the
classic loader unless ``dali`` asks for NVIDIA DALI (``DaliLoader``); without DALI installed,
``dali='gpu'`` on a GPU decodes with torchvision's nvJPEG instead (``JpegLoader``).
"""
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Optional, Tuple

import torch
from torchvision import transforms

from core.distributed import rank_and_world
from core.log import note
from . import folder, stl10, synthetic, tinyimagenet
from .base import ArrayDataset, DatasetError
from .batch import BatchSpec
from .cifar import CIFAR, cifar_splits
from .dali_loader import DaliLoader, dali_available
from .imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD, imagenet_splits
from .jpeg_loader import JpegLoader
from .loaders import ClassicLoader, DeviceLoader


@dataclass(frozen=True)
class DataSource:
    splits: Callable  # (data_folder, splits=('train', 'test')) -> a data set each, untransformed
    num_classes: Optional[int]  # None: counted from the data (--dataset folder)
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    image_size: int = 32
    resize: Optional[int] = None  # resize the images to this side first (TinyImageNet)
    in_memory: bool = True  # one uint8 array (CIFAR, synthetic, STL-10); else files on disk
    batch_resize: Optional[int] = None  # --img_size of 32x32 data: batches resized to it
    augment: Optional[Callable] = None  # () -> the training transform, where not ImageNet's

    @property
    def input_size(self):
        """The side of the images the networks see."""
        return self.batch_resize or self.image_size

    @property
    def codable(self):
        """Whether CKD's coded views and the teacher-output cache work on it (32x32 images
        in memory)."""
        return self.in_memory and self.image_size == 32

    @property
    def batch_crop(self):
        """Whether training crops and flips are made on whole batches (32x32 data, padding 4)
        rather than image by image (ImageNet's random-resized crop)."""
        return self.image_size == 32 and (self.in_memory or self.resize is not None)

    def image_transform(self, train):
        """The work done on each PIL image before batching, or None: TinyImageNet's resize,
        the source's own augmentation (training; its test images as they are), or ImageNet's
        random-resized crop and flip (training) or resize and centre crop."""
        if self.batch_crop:
            return transforms.Resize(self.resize) if self.resize else None
        if self.augment is not None:
            return self.augment() if train else None
        if train:
            return transforms.Compose([transforms.RandomResizedCrop(self.image_size),
                                       transforms.RandomHorizontalFlip()])
        return transforms.Compose([transforms.Resize(int(self.image_size * 256 / 224)),
                                   transforms.CenterCrop(self.image_size)])


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
    # mdistiller's DOT experiments on TinyImageNet at its 64x64
    'tinyimagenet64': DataSource(tinyimagenet.tinyimagenet_splits, 200, tinyimagenet.MEAN,
                                 tinyimagenet.STD_64, 64, in_memory=False,
                                 augment=tinyimagenet.augment_64),
    # A user's class folders (dataset.folder), ImageNet's transforms and normalisation.
    'folder': DataSource(folder.folder_splits, None, IMAGENET_MEAN, IMAGENET_STD, 224,
                         in_memory=False),
}
LOADERS = ('device', 'classic')


def data_source(dataset, data_folder='./data', img_size=None):
    """The ``DataSource`` of ``dataset`` as a run uses it: its class count (a folder set's
    counted from ``<data_folder>/train``) and, with ``img_size``, images of that side (32x32
    data resized batch by batch on the device, other sets by their transforms)."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown --dataset '{dataset}'; choose one of: {', '.join(DATASETS)}")
    source = DATASETS[dataset]
    if source.num_classes is None:
        source = replace(source, num_classes=len(folder.class_names(data_folder)))
    if img_size is not None and img_size != source.image_size:
        source = replace(source, **({'batch_resize': img_size} if source.batch_crop
                                    else {'image_size': img_size}))
    return source


class RandAugment:
    """timm's RandAugment of ``config`` (e.g. ``rand-m9-mstd0.5-inc1``), filling with the data
    set's mean colour, as timm's factory. Pillow 12 and later refuse to posterize to 0 bits,
    which timm draws about once in 500 images at magnitude 9 with noise: such an image is
    kept as it was."""

    def __init__(self, config, source):
        from timm.data.auto_augment import rand_augment_transform
        self.augment = rand_augment_transform(config, {
            'translate_const': int(source.input_size * 0.45),
            'img_mean': tuple(round(255 * m) for m in source.mean)})

    def __call__(self, image):
        try:
            return self.augment(image)
        except ValueError:
            return image


def with_randaugment(transform, config, source):
    """``transform`` (None: none) followed by RandAugment of ``config``."""
    augment = RandAugment(config, source)
    return augment if transform is None else transforms.Compose([transform, augment])


def _loader_kinds(source, test_set, loader, dali, device):
    """The kinds of the training and test loaders (``device``, ``classic``, ``jpeg``, ``dali``)
    for this data set and these flags, and DALI's backend. Says once (it is called once per
    run) when ``--dali`` cannot be honoured as asked. DALI trains only: its resize rounds
    output sizes differently from torchvision's, so test images go through ``JpegLoader``,
    which matches Resize+CenterCrop to a grey level."""
    if isinstance(test_set, ArrayDataset):
        if dali:
            note('--dali applies to folders of JPEGs (ImageNet); this data set is in memory '
                  f'and uses --loader {loader}')
        return (loader, loader), None
    if not dali:
        return ('classic', 'classic'), None
    backend = dali
    if dali == 'gpu' and torch.device(device).type != 'cuda':
        if not dali_available():
            note('--dali gpu needs a GPU and NVIDIA DALI; using the standard loader')
            return ('classic', 'classic'), None
        note('--dali gpu needs a GPU; DALI decodes on the CPU instead')
        backend = 'cpu'
    if dali_available():
        return ('dali', 'jpeg'), backend
    install = 'pip install -r requirements-dali.txt to use it'
    if dali == 'gpu':
        note(f"NVIDIA DALI is not installed ({install}); decoding JPEGs on the GPU with "
              f"torchvision's nvJPEG instead")
        return ('jpeg', 'jpeg'), None
    note(f'NVIDIA DALI is not installed ({install}); using the standard loader')
    return ('classic', 'classic'), None


def build_loaders(dataset, data_folder='./data', batch_size=64, num_workers=0, loader='device',
                  device='cpu', dali=None, seed=None, spec=BatchSpec(), rounds=None,
                  train=True, img_size=None, augment=None):
    """``(train_loader, test_loader)`` of ``dataset``, both yielding ``Batch`` tuples; the
    test loader uses half the batch size, as RepDistiller. Training batches carry what
    ``spec`` asks for; ``rounds`` (``dataset.rounds.StoredRounds``) fix their crops (and code
    the teacher's view). ``train=False`` reads the test split alone (no training loader:
    ``None``). ``img_size``: the side of the images (``data_source``); ``augment``: the
    recipes' further training augmentation (``core.config.Augmentation``). Both loaders
    expose ``dataset`` (its ``len``) and ``generator`` (its randomness)."""
    source = data_source(dataset, data_folder, img_size)
    *train_set, test_set = source.splits(data_folder, ('train', 'test') if train else ('test',))
    (train_kind, test_kind), backend = _loader_kinds(source, test_set, loader, dali, device)
    views = spec.views
    if train and views is not None:
        if not source.batch_crop or train_kind not in LOADERS:
            raise DatasetError('a method with several views of each image needs 32x32 data '
                               '(CIFAR, synthetic) and --loader device or classic, without '
                               '--dali')
        if views.per_image and train_kind == 'device':
            note(f'the device loader cannot make {type(views).__name__}, which are made image '
                  f'by image; using --loader classic')
            train_kind = 'classic'
    randaugment = train and augment is not None and augment.randaugment
    if randaugment and train_kind != 'classic':
        if train_kind not in LOADERS:
            raise DatasetError('RandAugment (--randaugment) works with --loader device or '
                               'classic, without --dali')
        note('RandAugment is made image by image: using --loader classic for training')
        train_kind = 'classic'
    rank, world = rank_and_world()  # each process of a multi-process run takes its share

    def make(kind, data, batch, is_train, **kwargs):
        common = dict(device=device, mean=source.mean, std=source.std, train=is_train,
                      rank=rank, world=world, resize=source.batch_resize, **kwargs)
        if kind == 'device':
            return DeviceLoader(data, batch, workers=num_workers, **common)
        if kind == 'classic':
            transform = source.image_transform(is_train)
            if is_train and randaugment:
                transform = with_randaugment(transform, augment.randaugment, source)
            return ClassicLoader(data, batch, num_workers=num_workers, transform=transform,
                                 augmented=not source.batch_crop, crop=source.batch_crop,
                                 pin_memory=torch.device(device).type == 'cuda',
                                 per_image_draws=bool(is_train and randaugment), **common)
        loader_class = JpegLoader if kind == 'jpeg' else partial(DaliLoader, backend=backend)
        return loader_class(data, batch, image_size=source.image_size, num_threads=num_workers,
                            **common)
    test = make(test_kind, test_set, max(1, batch_size // 2), False)
    if not train:
        return None, test
    train_loader = make(train_kind, train_set[0], batch_size, True, spec=spec, rounds=rounds,
                        augment=augment, num_classes=source.num_classes)
    if seed is not None:
        train_loader.generator.manual_seed(seed)
    return train_loader, test
