"""Methods built for tests: the options train_student.py resolves, the ``MethodConfig`` and
the method around fresh networks, a fixed batch, deterministic parameters and what gradients
are compared by."""
from types import SimpleNamespace

import torch

import train_student
from distiller_zoo import MethodConfig, get_method
from distiller_zoo.sources import FrozenTeacher, TrainedPeer
from helper.distillation import method_config
from models import get_model
from reference import det


def method_opt(name, **over):
    """train_student.py's options for ``--distill name`` (every method's own defaults), with
    small sizes for tests."""
    weight = ['-b', '1'] if get_method(name).needs.weights[2] is None else []  # no default
    opt = dict(train_student.parse_option(['--path_t', 'unused.pth', '--distill', name]
                                          + weight).options)
    opt.update(feat_dim=16, nce_k=20, model_s='resnet8', init_epochs=1, seed=0, batch_size=8)
    opt.update(over)
    return SimpleNamespace(**opt)


def config_for(name, teacher='resnet14', student='resnet8', n_data=64, **over):
    """The ``MethodConfig`` train_student.py builds for these options and sizes."""
    return method_config(method_opt(name, model_s=student, **over), get_method(name), teacher,
                         n_data, 32)


def make(name, s, t, model_s, model_t, image_size=32, **over):
    """The method around the networks ``s`` (a ``model_s``) and ``t`` (a ``model_t``)."""
    method = get_method(name)
    source = (TrainedPeer if method.needs.teacher_trains else FrozenTeacher)(t)
    config = method_config(method_opt(name, model_s=model_s, **over), method, model_t, 64,
                           image_size)
    return method(s, source, config)


def build(name, teacher='resnet14', student='resnet8', num_classes=10, **over):
    """The method around fresh networks (a frozen teacher, or a peer that trains)."""
    torch.manual_seed(0)
    t, s = get_model(teacher, num_classes), get_model(student, num_classes)
    method = get_method(name)
    source = (TrainedPeer if method.needs.teacher_trains else FrozenTeacher)(t)
    return method(s, source, config_for(name, teacher, student, **over)), t, s


def fixed_batch(n=8, num_classes=10):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    index = torch.arange(n)
    contrast_idx = torch.randint(0, 64, (n, 21), generator=g)
    contrast_idx[:, 0] = index
    return x, y, index, contrast_idx


def plain_config(method, weights=None):
    """A ``MethodConfig`` with the method's default weights (or ``weights``) and T = 4."""
    return MethodConfig(name=method.names[0], weights=weights or method.needs.weights, kd_T=4,
                        options=SimpleNamespace(), model_s='resnet8', model_t='resnet14')


def fill_by_name(module):
    """Deterministic parameters from each parameter's name (the reference has the same names)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(det(*p.shape, phase=sum(map(ord, name)) * 0.01) * 0.3)
    return module


def grad_ends(g):
    return [g.sum().item(), g.abs().sum().item(), g.flatten()[0].item(), g.flatten()[-1].item()]


def run_config(*flags, teacher='vgg13', student='vgg8'):
    """The ``RunConfig`` of a distillation command line for the pair (the teacher's file never
    opened: its folder names its architecture)."""
    return train_student.parse_option(['--path_t', f'save/models/{teacher}_vanilla/ckpt.pth',
                                       '--model_s', student] + list(flags))


def run_options(*flags, teacher='resnet32x4', student='resnet8x4'):
    """The options a run with these flags records (its ``RunConfig.options``)."""
    return SimpleNamespace(**run_config(*flags, teacher=teacher, student=student).options)
