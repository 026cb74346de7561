"""Checkpoint files: RepDistiller's layout (``{'model': state_dict, ...}``), written atomically
and read with ``torch.load(weights_only=True)`` so a downloaded file cannot run code."""
import argparse
import json
import os
import pickle
from types import SimpleNamespace

import torch

from models import get_model, model_dict
from .files import atomic_open, disk_full, file_digest
from .util import UserError

LAST = 'ckpt_last.pth'  # the full state of a run, written every epoch


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` through a temporary file, so a crash never leaves half a file
    and a failed write leaves no temporary file."""
    try:
        with atomic_open(path) as f:
            torch.save(state, f)
    except BaseException as e:
        if disk_full(e):
            raise UserError(f"the disk is full: could not write '{path}'; {_intact(path)}. Free "
                            f"some space, then add --resume auto to continue") from None
        raise


def _intact(path):
    """Which checkpoint survived a failed write of ``path``: its previous version, else the
    newest checkpoint beside it."""
    if os.path.isfile(path):
        return f"the previous '{path}' is intact"
    folder = os.path.dirname(os.path.abspath(path))
    others = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith('.pth')]
    if not others:
        return 'no checkpoint was written before'
    return f"'{max(others, key=os.path.getmtime)}' (the newest checkpoint) is intact"


def _kind_of_file(head):
    """What the first bytes of a file that is no PyTorch checkpoint look like."""
    text = head.lstrip().lower()
    if text.startswith((b'<!doctype html', b'<html', b'<?xml')):
        return 'an HTML page (a download that saved an error or login page?)'
    try:
        head.decode('utf-8')
        return 'a text file'
    except UnicodeDecodeError:
        return 'not a PyTorch file'


def _as_model_checkpoint(ckpt, path):
    """RepDistiller's ``{'model': state_dict, ...}``; ``{'state_dict': ...}`` (as the MLKD
    scripts save teachers) and a bare state dict are taken too. A DataParallel ``module.``
    prefix is dropped."""
    if isinstance(ckpt, dict) and 'model' not in ckpt:
        if isinstance(ckpt.get('state_dict'), dict):
            ckpt = {**ckpt, 'model': ckpt['state_dict']}
        elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            ckpt = {'model': ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
        found = (f"a dict with keys {', '.join(map(str, list(ckpt)[:6]))}"
                 if isinstance(ckpt, dict) else f'a {type(ckpt).__name__}')
        raise UserError(f"'{path}' is not a model checkpoint: expected a dict with a 'model' (or "
                        f"'state_dict') state dict, as RepDistiller writes, or a bare state "
                        f"dict; found {found}")
    state = ckpt['model']
    if state and all(isinstance(k, str) and k.startswith('module.') for k in state):
        ckpt = {**ckpt, 'model': {k[len('module.'):]: v for k, v in state.items()}}
    return ckpt


def load_checkpoint(path):
    if os.path.isdir(path):
        raise UserError(f"checkpoint '{path}' is a directory; give the .pth file in it")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint '{path}' does not exist")
    with open(path, 'rb') as f:
        head = f.read(64)
    # torch.save writes a zip archive; files of PyTorch before 1.6 are a pickle (0x80, protocol).
    if not (head.startswith(b'PK') or head.startswith(b'\x80')):
        raise UserError(f"cannot read checkpoint '{path}': it is {_kind_of_file(head)}, not a "
                        f"PyTorch checkpoint; download or train it again")
    try:
        # RepDistiller's *_last.pth files store the argparse Namespace of their run.
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' not in str(e):
            raise UserError(f"cannot read checkpoint '{path}' (the file is truncated, corrupt or "
                            f"not a PyTorch checkpoint): download or train it again") from None
        raise UserError(f"cannot read checkpoint '{path}': it stores Python objects other than "
                        f"tensors and plain values, which are not loaded since loading them can "
                        f"run code; save the state dict alone") from None
    except Exception as e:  # torch's reader fails on a damaged file in many ways
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read checkpoint '{path}' ({first_line}); the file is "
                        f"truncated, corrupt or not a PyTorch checkpoint: download or train it "
                        f"again") from None
    return _as_model_checkpoint(ckpt, path)


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def guess_architecture(state, num_classes, dataset):
    """The registry's architecture whose state dict has exactly ``state``'s keys and shapes (at
    ``num_classes``, else at any class count), as ``'name'`` or ``'name with N classes'``; None
    when none does. Models are built on the meta device, which allocates nothing."""
    from models import imagenet_model_dict
    target = _shapes(state)
    names = list(imagenet_model_dict if dataset == 'imagenet' else model_dict)
    with torch.device('meta'):
        for name in names:
            shapes = _shapes(get_model(name, num_classes, dataset).state_dict())
            if shapes == target:
                return name
            if shapes.keys() == target.keys():
                layer = [k for k in shapes if shapes[k] != target[k]]
                if all(len(target[k]) in (1, 2) for k in layer):  # only the classifier differs
                    return f'{name} with {target[layer[-1]][0]} classes'
    return None


def mismatch_summary(model, state):
    """Counts and first keys of what differs between ``model`` and a state dict."""
    want, have = _shapes(model.state_dict()), _shapes(state)
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    reshaped = [k for k in want if k in have and want[k] != have[k]]
    parts = [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
             for label, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                                 ('keys of another shape', reshaped)) if keys]
    return '; '.join(parts) or 'buffers differ'


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


def is_teacher_file(path):
    """Whether a ``--path_t`` names a file (not ``torchvision:<name>``)."""
    return not path.startswith('torchvision:')


def teacher_identity(path):
    """What a run records of its teacher, to recognise it on resume: the file's sha256, the
    torchvision name, or that there is none (a DML peer trained from scratch)."""
    if path is None:
        return 'none (trained from scratch)'
    return f'sha256 {file_digest(path)}' if is_teacher_file(path) else path


def load_teacher(path, num_classes, dataset):
    """Build the teacher named by ``path`` and load its weights strictly."""
    if not is_teacher_file(path):
        return load_torchvision_teacher(path, num_classes)
    ckpt = load_checkpoint(path)
    name = get_teacher_name(path, ckpt)
    model = load_weights(get_model(name, num_classes, dataset), ckpt['model'], path, name,
                         num_classes, dataset, 'Check the folder name or --dataset',
                         role='architecture ')
    return model, name


def run_options(ckpt, path):
    """The options of the run that wrote a checkpoint: stored in it (``'opt'``, also as
    RepDistiller's Namespace, or ``'method_opt'``), else in its folder's summary.json; ``{}``
    when neither says (a checkpoint from elsewhere)."""
    for key in ('opt', 'method_opt'):
        options = ckpt.get(key)
        options = vars(options) if hasattr(options, '__dict__') else options
        if isinstance(options, dict):
            return options
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), 'summary.json')) as f:
            return json.load(f)['args']
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def architecture_mismatch(path, arch, num_classes, dataset, state, fix, role=''):
    """The one-line error for weights in ``state`` that do not fit ``arch``: what differs, and
    which architecture of the registry they fit. ``role`` comes before the name ('architecture
    ')."""
    model = get_model(arch, num_classes, dataset)
    guess = guess_architecture(state, num_classes, dataset)
    hint = (f'the weights look like {guess}' if guess
            else 'the weights match no architecture of the registry')
    return UserError(f"'{path}' does not match {role}{arch} with {num_classes} classes "
                     f"({mismatch_summary(model, state)}); {hint}. {fix}")


def load_weights(model, state, path, arch, num_classes, dataset, fix, role=''):
    """``model`` with ``state`` loaded strictly, else ``architecture_mismatch``'s error."""
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise architecture_mismatch(path, arch, num_classes, dataset, state, fix,
                                    role) from None
    return model


def rebuild_student(ckpt, arch, num_classes, dataset, path, fix):
    """The network a student checkpoint describes: the model with its weights, or, for a
    method that predicts through modules of its own (the checkpoint carries ``'method_opt'``),
    the method rebuilt around it. Such a checkpoint holds every module the prediction needs (a
    copy of the teacher's classifier included); the teacher's architecture only sizes them.
    ``fix`` ends the message of a checkpoint that does not fit ``arch``."""
    model = load_weights(get_model(arch, num_classes, dataset), ckpt['model'], path, arch,
                         num_classes, dataset, fix)
    if 'method_opt' not in ckpt:
        return model
    from distiller_zoo import get_method
    method_opt = SimpleNamespace(**ckpt['method_opt'])
    teacher = get_model(method_opt.model_t, num_classes, dataset)
    distiller = get_method(method_opt.distill)(model, teacher, method_opt, method_opt.image_size)
    distiller.load_checkpoint_state(ckpt)
    return distiller
