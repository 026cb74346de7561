"""ImageNet from ``<data_folder>/imagenet/{train,val}`` class folders of JPEGs."""
import os

from torchvision.datasets import ImageFolder

from .base import DatasetError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def imagenet_splits(root, splits=('train', 'test')):
    folders = [os.path.join(root, 'imagenet', 'train' if split == 'train' else 'val')
               for split in splits]
    for folder in folders:
        if not os.path.isdir(folder):
            raise DatasetError(f"ImageNet folder '{folder}' not found. Expected layout: "
                               f"{root}/imagenet/{{train,val}}/<class>/<image>.JPEG")
    try:
        return [ImageFolder(folder) for folder in folders]
    except (FileNotFoundError, OSError) as e:
        raise DatasetError(f'cannot read ImageNet from {root}/imagenet: {e}') from None
