"""Checkpoint files: RepDistiller's layout (``{'model': state_dict, ...}``), written atomically
and read with ``torch.load(weights_only=True)`` so a downloaded file cannot run code."""
import argparse
import os
import pickle
import zipfile

import torch

from models import get_model, model_dict
from .util import UserError


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    tmp = f'{path}.tmp'
    with open(tmp, 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path):
    if not os.path.isfile(path):
        raise UserError(f"checkpoint '{path}' does not exist")
    try:
        # RepDistiller's *_last.pth files store the argparse Namespace of their run.
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read checkpoint '{path}' ({first_line}); the file is truncated, "
                        f"corrupt or not a PyTorch checkpoint: download or train it again") from None
    if not isinstance(ckpt, dict) or 'model' not in ckpt:
        raise UserError(f"'{path}' is not a model checkpoint (expected a dict with a 'model' "
                        f"state dict, as RepDistiller writes)")
    return ckpt


def get_teacher_name(path, ckpt=None):
    """The teacher's architecture: the checkpoint's ``arch`` entry when present, else parsed from
    the folder name as RepDistiller (``wrn_40_2_vanilla/``) and SimKD (``S:vgg8_T:...``) name it."""
    if ckpt is not None and ckpt.get('arch') in model_dict:
        return ckpt['arch']
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if folder.startswith('S:'):
        folder = folder[2:].split('_T:')[0]
    # Longest registry name that the folder name starts with, followed by '_' or nothing.
    matches = [n for n in model_dict if folder == n or folder.startswith(n + '_')]
    if not matches:
        raise UserError(f"cannot tell the teacher's architecture from '{path}': its folder should "
                        f"start with a model name (e.g. save/models/resnet32x4_vanilla/"
                        f"ckpt_epoch_240.pth)")
    return max(matches, key=len)


# torchvision model name -> this repository's name (same state-dict keys)
TORCHVISION_TEACHERS = {
    'resnet18': 'ResNet18', 'resnet34': 'ResNet34', 'resnet50': 'ResNet50',
    'resnext50_32x4d': 'resnext50_32x4d', 'wide_resnet50_2': 'wrn_50_2',
    'mobilenet_v2': 'MobileNetV2_Imagenet', 'shufflenet_v2_x1_0': 'ShuffleV2_Imagenet',
}


def load_torchvision_teacher(spec, num_classes):
    """``torchvision:<name>``: torchvision's ImageNet weights (downloaded once into torch's
    cache) in this repository's architecture."""
    tv_name = spec.split(':', 1)[1]
    if tv_name not in TORCHVISION_TEACHERS:
        raise UserError(f"--path_t {spec}: torchvision teachers are "
                        f"{', '.join('torchvision:' + n for n in TORCHVISION_TEACHERS)}")
    if num_classes != 1000:
        raise UserError(f'--path_t {spec} has 1000 ImageNet classes; use --dataset imagenet')
    from torchvision.models import get_model_weights
    url = get_model_weights(tv_name).DEFAULT.url
    try:
        state = torch.hub.load_state_dict_from_url(url, progress=False, weights_only=True)
    except OSError as e:  # URLError included
        raise UserError(f"could not get torchvision's {tv_name} weights ({getattr(e, 'reason', e)}"
                        f"); offline, put {os.path.basename(url)} into "
                        f"{os.path.join(torch.hub.get_dir(), 'checkpoints')}") from None
    name = TORCHVISION_TEACHERS[tv_name]
    model = get_model(name, num_classes, 'imagenet')
    model.load_state_dict(state)
    return model, name


def load_teacher(path, num_classes, dataset):
    """Build the teacher named by ``path`` and load its weights strictly."""
    if path.startswith('torchvision:'):
        return load_torchvision_teacher(path, num_classes)
    ckpt = load_checkpoint(path)
    name = get_teacher_name(path, ckpt)
    model = get_model(name, num_classes, dataset)
    try:
        model.load_state_dict(ckpt['model'])
    except RuntimeError as e:
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UserError(f"'{path}' does not match architecture {name} with {num_classes} classes "
                        f"({detail}); check the folder name or --dataset") from None
    return model, name
