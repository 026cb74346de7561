"""Model registry.

Each model registers where it is defined (``models.registry.register_model``). ``model_dict``
maps RepDistiller's and the SimKD toolbox's CIFAR names (and the ImageNet-only
and TinyImageNet-only names) to constructors taking ``num_classes``. ``ResNet18``, ``ResNet34``
and ``ResNet50`` name a CIFAR network in ``model_dict`` (as RepDistiller) and the
torchvision-style ImageNet network in ``imagenet_model_dict`` (as SimKD); ``get_model`` picks by
data set. ``timm:NAME`` names any timm model (``models.timm_models``).
"""
# Importing a model's module registers it; the registry lists them in this order.
from .resnet import (resnet8, resnet8x4, resnet14, resnet14x2, resnet14x4, resnet20, resnet32,
                     resnet32x4, resnet38, resnet38x2, resnet38x4, resnet44, resnet56,
                     resnet110, resnet110x2, resnet116)
from .resnetv2 import ResNet18, ResNet34, ResNet50
from .wrn import wrn_16_1, wrn_16_2, wrn_16_4, wrn_28_2, wrn_28_4, wrn_40_1, wrn_40_2, wrn_40_4
from .pyramidnet import pyramidnet110_84, pyramidnet200_240
from .vgg import vgg8_bn, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn
from .mobilenetv2 import mobile_half, mobile_half_double
from .ShuffleNetv1 import ShuffleV1
from .ShuffleNetv2 import ShuffleV2, ShuffleV2_1_5
from .resnet_imagenet import (resnet18, resnet34, resnet50, resnet101, resnet152,
                              resnext50_32x4d, wide_resnet10_2, wide_resnet18_2, wide_resnet34_2,
                              wide_resnet50_2)
from .mobilenet_imagenet import MobileNetV1, MobileNetV2Imagenet, ShuffleNetV2Imagenet
from .mobilenetv2_tiny import mobilenetv2_tinyimagenet
from .registry import REGISTRY, builders
from .timm_models import check_timm_name, create_timm_model, is_timm_name

# RepDistiller's names (``from models import resnet56``) and the registry's functions.
__all__ = [
    'model_dict', 'cifar_model_dict', 'imagenet_model_dict', 'tinyimagenet_model_dict',
    'get_model', 'check_model_name', 'is_model_name', 'is_timm_name', 'trains_at_small_lr',
    'small_lr_models', 'resnet8', 'resnet8x4', 'resnet14', 'resnet14x2', 'resnet14x4',
    'resnet20', 'resnet32', 'resnet32x4', 'resnet38', 'resnet38x2', 'resnet38x4',
    'resnet44', 'resnet56', 'resnet110', 'resnet110x2', 'resnet116', 'ResNet18', 'ResNet34',
    'ResNet50', 'wrn_16_1', 'wrn_16_2', 'wrn_16_4', 'wrn_28_2', 'wrn_28_4', 'wrn_40_1',
    'wrn_40_2', 'wrn_40_4', 'pyramidnet110_84', 'pyramidnet200_240', 'vgg8_bn', 'vgg11_bn',
    'vgg13_bn', 'vgg16_bn', 'vgg19_bn', 'mobile_half', 'mobile_half_double', 'ShuffleV1',
    'ShuffleV2', 'ShuffleV2_1_5', 'resnet18', 'resnet34', 'resnet50', 'resnet101',
    'resnet152', 'resnext50_32x4d', 'wide_resnet10_2', 'wide_resnet18_2', 'wide_resnet34_2',
    'wide_resnet50_2', 'MobileNetV1', 'MobileNetV2Imagenet', 'ShuffleNetV2Imagenet',
    'mobilenetv2_tinyimagenet'
]

cifar_model_dict = builders('cifar')
imagenet_model_dict = builders('imagenet')
# mdistiller's TinyImageNet-only network (its ResNet18 and ShuffleV2 there are the CIFAR ones)
tinyimagenet_model_dict = builders('tinyimagenet')

# RepDistiller's name space: CIFAR networks win where a name is shared.
model_dict = {**imagenet_model_dict, **tinyimagenet_model_dict, **cifar_model_dict}


def trains_at_small_lr(name):
    """Whether the student ``name`` is trained at lr 0.01 instead of 0.05 (its registration
    says so, after RepDistiller's and SimKD's scripts)."""
    return name in REGISTRY['cifar'] and REGISTRY['cifar'][name].small_lr


def small_lr_models():
    return [name for name in REGISTRY['cifar'] if trains_at_small_lr(name)]


def is_model_name(name):
    """Whether ``name`` names a model: one of the registry's, or ``timm:NAME``."""
    return name in model_dict or is_timm_name(name)


def check_model_name(name):
    """Refuse (``KeyError``, one line) a name that names no model."""
    if is_timm_name(name):
        check_timm_name(name)
    elif name not in model_dict:
        raise KeyError(f"invalid choice: '{name}' (choose from {', '.join(sorted(model_dict))}"
                       f", or timm:NAME)")


def get_model(name, num_classes, dataset='cifar100', image_size=None, pretrained=False):
    """Build ``name`` for ``dataset``: ImageNet data sets prefer the ImageNet architectures.
    A timm model is made for ``image_size`` inputs (timm's default size when None), with
    timm's own weights when ``pretrained``."""
    if is_timm_name(name):
        return create_timm_model(name, num_classes, image_size, pretrained)
    if dataset == 'imagenet' and name in imagenet_model_dict:
        return imagenet_model_dict[name](num_classes=num_classes)
    check_model_name(name)
    return model_dict[name](num_classes=num_classes)
