"""Teachers: a ``--path_t`` resolved to a network with its weights, through one registry of
teacher kinds (a checkpoint file; ``torchvision:<name>``; ``timm:<name>``, timm's own weights),
and the checks that name what a file holds when it does not fit an architecture."""
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from models import get_model, imagenet_model_dict, is_model_name, is_timm_name, model_dict
from core.files import file_digest
from core.checkpoint import read_checkpoint
from core.component import Component
from core.util import UserError


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def guess_architecture(state, num_classes, dataset):
    """The registry's architecture whose state dict has exactly ``state``'s keys and shapes (at
    ``num_classes``, else at any class count), as ``'name'`` or ``'name with N classes'``; None
    when none does. Models are built on the meta device, which allocates nothing."""
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
    """The teacher's architecture: the ``Checkpoint``'s ``arch`` when it has one, else parsed
    from the folder name as RepDistiller (``wrn_40_2_vanilla/``) and SimKD (``S:vgg8_T:...``)
    name it."""
    if ckpt is not None and is_model_name(ckpt.arch):
        return ckpt.arch
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if folder.startswith('S:'):
        folder = folder[2:].split('_T:')[0]
    # Longest registry name that the folder name starts with, followed by '_' or nothing.
    matches = [n for n in model_dict if folder == n or folder.startswith(n + '_')]
    if not matches:
        raise UserError(f"cannot tell the teacher's architecture from '{path}': its folder should "
                        f"start with a model name (e.g. save/models/resnet32x4_vanilla/"
                        f"ckpt_epoch_240.pth), or --model_t NAME names it")
    return max(matches, key=len)


# RepDistiller's released CIFAR-100 teachers (scripts/fetch_teachers.py fetches them).
PUBLISHED_TEACHERS = ['wrn_40_2', 'resnet56', 'resnet110', 'resnet32x4', 'vgg13', 'ResNet50']

# torchvision model name -> this repository's name (same state-dict keys)
TORCHVISION_TEACHERS = {
    'resnet18': 'ResNet18', 'resnet34': 'ResNet34', 'resnet50': 'ResNet50',
    'resnet101': 'ResNet101', 'resnet152': 'ResNet152',
    'resnext50_32x4d': 'resnext50_32x4d', 'wide_resnet50_2': 'wrn_50_2',
    'mobilenet_v2': 'MobileNetV2_Imagenet', 'shufflenet_v2_x1_0': 'ShuffleV2_Imagenet',
}


def load_torchvision_teacher(spec, num_classes, image_size=None):
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


def load_timm_teacher(spec, num_classes, image_size=None):
    """``timm:<name>``: timm's own weights of that model (downloaded once into the Hugging Face
    cache)."""
    return get_model(spec, num_classes, image_size=image_size, pretrained=True), spec


def load_teacher_file(path, num_classes, dataset, image_size=None, arch=None):
    """A teacher checkpoint (RepDistiller's layout and the others ``load_checkpoint`` takes, a
    plain timm state dict among them), its architecture ``arch`` when given (``--model_t``),
    else from the file or its folder's name, its weights loaded strictly."""
    ckpt = read_checkpoint(path)
    name = arch or get_teacher_name(path, ckpt)
    fix = ('Check --model_t, --img_size or --dataset' if arch or is_timm_name(name)
           else 'Check the folder name or --dataset')
    model = load_weights(get_model(name, num_classes, dataset, image_size),
                         ckpt.learner['model'], path, name, num_classes, dataset, fix,
                         role='architecture ', image_size=image_size)
    return model, name


# ``--path_t <kind>:<name>`` -> the loader of that kind of teacher; anything else is a file.
TEACHER_KINDS = {'torchvision': load_torchvision_teacher, 'timm': load_timm_teacher}


def teacher_kind(spec):
    """The kind a ``--path_t`` names (``torchvision``, ``timm``), None for a file (a path, which
    may hold a folder named ``timm:<name>_...``)."""
    kind = spec.split(':', 1)[0] if ':' in spec and '/' not in spec else None
    return kind if kind in TEACHER_KINDS else None


def is_teacher_file(spec):
    """Whether a ``--path_t`` names a file (not ``torchvision:<name>`` or another kind)."""
    return teacher_kind(spec) is None


def teacher_identity(spec):
    """What a run records of its teacher, to recognise it on resume: the file's sha256, the
    spec of a named teacher, or that there is none (a DML peer trained from scratch)."""
    if spec is None:
        return 'none (trained from scratch)'
    return f'sha256 {file_digest(spec)}' if is_teacher_file(spec) else spec


def teacher_architecture(spec, named=None):
    """The architecture a ``--path_t`` names, known before the run (for per-pair defaults):
    ``named`` when given (``--model_t``), else from a torchvision or timm name, the folder name,
    or else the checkpoint's entries (its weights mapped, not read); None when the file cannot
    tell (the run then says what is wrong with it)."""
    if spec is None or named is not None:
        return named
    if teacher_kind(spec) == 'torchvision':
        return TORCHVISION_TEACHERS.get(spec.split(':', 1)[1])
    if teacher_kind(spec) == 'timm':
        return spec
    try:
        return get_teacher_name(spec)
    except UserError:
        pass
    try:
        return get_teacher_name(spec, read_checkpoint(spec, mmap=True))
    except (UserError, OSError, RuntimeError, ValueError):
        return None


def load_teacher(spec, num_classes, dataset, image_size=None, arch=None):
    """The teacher network ``spec`` names and its architecture (``arch``: given by
    ``--model_t``)."""
    kind = teacher_kind(spec)
    if kind is None:
        return load_teacher_file(spec, num_classes, dataset, image_size, arch)
    return TEACHER_KINDS[kind](spec, num_classes, image_size)


@dataclass
class Teacher:
    """A run's teacher: the network, its architecture, what identifies it (``teacher_identity``),
    its file (None for a named or a from-scratch network) and the input normalisation its
    weights expect (``(mean, std)``; None: the data set's, as for every teacher trained here)."""
    network: nn.Module
    arch: str
    identity: str
    path: Optional[str] = None
    input_norm: Optional[tuple] = None


def renormalize_inputs(network, data_norm, input_norm):
    """Make ``network`` take images normalised with ``data_norm`` (``(mean, std)``, the data
    set's) as if they were normalised with ``input_norm`` (what its weights expect): one
    per-channel affine map of each batch, on its device, before every forward."""
    (mean_d, std_d), (mean_n, std_n) = [[torch.tensor(v).view(1, -1, 1, 1) for v in norm]
                                        for norm in (data_norm, input_norm)]
    scale, shift = std_d / std_n, (mean_d - mean_n) / std_n

    def hook(module, args, kwargs):
        x = args[0]
        x = x * scale.to(x.device, x.dtype) + shift.to(x.device, x.dtype)
        return (x,) + args[1:], kwargs
    return network.register_forward_pre_hook(hook, with_kwargs=True)


def resolve_teacher(spec, num_classes, dataset, named=None, image_size=None):
    """The ``Teacher`` of ``--path_t spec`` (of architecture ``named`` when ``--model_t``
    gives it), or, without one, a network ``named`` with fresh weights (DML's peer)."""
    if spec is None:
        return Teacher(get_model(named, num_classes, dataset, image_size), named,
                       teacher_identity(None))
    network, arch = load_teacher(spec, num_classes, dataset, image_size, named)
    norm = None
    if teacher_kind(spec) == 'timm':  # timm's weights: the normalisation they were trained with
        norm = tuple(tuple(network.pretrained_cfg[k]) for k in ('mean', 'std'))
    return Teacher(network, arch, teacher_identity(spec), spec if is_teacher_file(spec) else None,
                   norm)


def architecture_mismatch(path, arch, num_classes, dataset, state, fix, role='',
                          image_size=None):
    """The one-line error for weights in ``state`` that do not fit ``arch``: what differs, and
    which architecture of the registry they fit. ``role`` comes before the name ('architecture
    ')."""
    model = get_model(arch, num_classes, dataset, image_size)
    guess = guess_architecture(state, num_classes, dataset)
    hint = (f'the weights look like {guess}' if guess
            else 'the weights match no architecture of the registry')
    return UserError(f"'{path}' does not match {role}{arch} with {num_classes} classes "
                     f"({mismatch_summary(model, state)}); {hint}. {fix}")


def load_weights(model, state, path, arch, num_classes, dataset, fix, role='', image_size=None):
    """``model`` with ``state`` loaded strictly, else ``architecture_mismatch``'s error."""
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise architecture_mismatch(path, arch, num_classes, dataset, state, fix,
                                    role, image_size) from None
    return model


class TeacherPlugin(Component):
    """A component (``core.component``) that changes what the teacher sees or where its
    outputs come from (CKD's coded views, the teacher-output cache). A run applies the enabled
    plug-ins in order: ``check`` before any work; ``source`` chooses the ``TeacherSource`` the
    method is built with; ``prepare``, the long work, runs inside the run and returns the stored
    rounds (``dataset.rounds.StoredRounds``) the training batches then use. Both get the run's
    ``Teacher`` list (the first is the one methods read besides logits). Its options' values
    reach it as ``config.features`` (``config``: the run's ``helper.run_config.RunConfig``)."""

    def check_given(self, opt, method):
        pass  # its further options are read only when it is on, and refused by nothing

    def check_data_and_teacher(self, config, keyed, several=False):
        """What the plug-ins that store data per teacher and image share: 32x32 data held in
        memory, and teacher files (``keyed``: what they key by each; ``several``: whether it
        takes more than one)."""
        if not config.source.codable:
            raise UserError(f'{self.flag} works on 32x32 data sets held in memory (cifar10, '
                            f'cifar100, synthetic), not --dataset {config.data.dataset}')
        paths = (config.teacher.path,) + config.teacher.more
        if config.teacher.path is None or not all(map(is_teacher_file, paths)):
            raise UserError(f'{self.flag} keys {keyed} by the teacher file; give --path_t '
                            f'files')
        if config.teacher.more and not several:
            raise UserError(f'{self.flag} keys {keyed} by one teacher file; give --path_t one '
                            f'teacher')

    def source(self, config, teachers, train_set, seed, previous):
        return previous

    def prepare(self, config, teachers, train_set, device, seed, rounds):
        return rounds
