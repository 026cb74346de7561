"""A user's own data set: ``<data_folder>/{train,val}/<class>/<image>``, any number of classes
and any image size (ImageNet's transforms at ``--img_size``, 224 by default; ImageNet's mean
and std). Both splits must hold the same classes; every image is opened (its header read)
before training, so an empty class or an unreadable file is named at once, not mid-epoch."""
import os

from PIL import Image
from torchvision.datasets import ImageFolder

from core.log import log
from .base import DatasetError

SPLITS = {'train': 'train', 'test': 'val'}


def split_folder(root, split):
    folder = os.path.join(root, SPLITS[split])
    if not os.path.isdir(folder):
        raise DatasetError(f"--dataset folder: '{folder}' not found. Expected layout: "
                           f"{root}/{{train,val}}/<class>/<image>")
    return folder


def class_names(root):
    """The classes of ``<root>/train`` (its sub-folders, sorted as ImageFolder sorts them)."""
    folder = split_folder(root, 'train')
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not names:
        raise DatasetError(f"--dataset folder: '{folder}' holds no class folder")
    return names


def _readable(dataset):
    for path, _ in dataset.samples:
        try:
            with Image.open(path) as image:
                image.size
        except OSError as e:
            raise DatasetError(f"--dataset folder: cannot read '{path}' ({e}); remove or "
                               f"replace it") from None


def folder_splits(root, splits=('train', 'test')):
    names = class_names(root)
    for split in splits:
        folder = split_folder(root, split)
        found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if found != names:
            differ = sorted(set(found) ^ set(names))
            raise DatasetError(f"--dataset folder: '{folder}' and '{split_folder(root, 'train')}'"
                               f" hold different classes (e.g. {', '.join(differ[:3])})")
    sets = []
    for split in splits:
        folder = split_folder(root, split)
        try:
            dataset = ImageFolder(folder)
        except FileNotFoundError as e:  # a class folder without images
            raise DatasetError(f"--dataset folder: {e}".split(' Supported extensions')[0]
                               + f" (in '{folder}'); add images or remove the class") from None
        _readable(dataset)
        sets.append(dataset)
    shown = ', '.join(names[:10]) + (f', ... ({len(names) - 10} more)' if len(names) > 10 else '')
    log.info(f"folder data set '{root}': {len(names)} classes ({shown}); "
             + ', '.join(f'{SPLITS[s]} {len(d)} images' for s, d in zip(splits, sets)))
    return sets
