"""TinyImageNet-200 from class folders, ``tiny-imagenet-200/{train,val}/<wnid>/...``
(``scripts/get_tinyimagenet.sh`` downloads it and lays the validation images out so):
``tinyimagenet`` resizes the images to 32x32, for linear probes of CIFAR students;
``tinyimagenet64`` keeps their 64x64 and trains as mdistiller's DOT experiments do."""
import os

from torchvision import transforms
from torchvision.datasets import ImageFolder

from .base import DatasetError

FOLDER = 'tiny-imagenet-200'
MEAN, STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
# mdistiller's (a08d46f mdistiller/dataset/tiny_imagenet.py): its std differs from the above
STD_64 = (0.2302, 0.2265, 0.2262)


def augment_64():
    """mdistiller's training augmentation: a rotation of up to 20 degrees, a horizontal flip."""
    return transforms.Compose([transforms.RandomRotation(20), transforms.RandomHorizontalFlip()])


def tinyimagenet_splits(root, splits=('train', 'test')):
    folders = [os.path.join(root, FOLDER, 'train' if s == 'train' else 'val') for s in splits]
    for folder in folders:
        if not os.path.isdir(folder):
            raise DatasetError(f"TinyImageNet folder '{folder}' not found; bash "
                               f"scripts/get_tinyimagenet.sh {root} fetches it and puts the "
                               f"validation images into class folders")
    try:
        return [ImageFolder(folder) for folder in folders]
    except (FileNotFoundError, OSError) as e:
        raise DatasetError(f'cannot read TinyImageNet from {root}/{FOLDER}: {e}') from None
