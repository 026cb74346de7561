"""Methods built from parsed options, and rebuilt from checkpoints."""
import dataclasses
import json
import os
from types import SimpleNamespace

from distiller_zoo import get_method
from distiller_zoo.base import MethodConfig
from distiller_zoo.sources import FrozenTeacher
from models import get_model
from core.util import UserError
from .components import COMPONENTS
from .teachers import load_weights


def method_config(opt, method, model_t, n_data, image_size):
    """The ``MethodConfig`` of a run: its weights, the method's own options (the per-pair
    values of those left to them, when the teacher's architecture ``model_t`` is known), the
    modifiers of its logit KLs and what is derived (the teacher's architecture, the training
    set's size)."""
    weights = (opt.gamma, opt.alpha, opt.beta) + (
        (opt.delta,) if len(method.needs.weights) > 3 else ())
    config = MethodConfig(name=method.names[0], weights=weights, kd_T=opt.kd_T,
                          options=method.typed_options(method.option_values(opt)),
                          model_s=opt.model_s, model_t=model_t, image_size=image_size,
                          n_data=n_data, batch_size=opt.batch_size, epochs=opt.epochs,
                          smoothing=cross_entropy_smoothing(opt), **component_fields(opt))
    return config if model_t is None else for_teacher(config, method, model_t, n_data)


def for_teacher(config, method, model_t, n_data):
    """``config`` (a ``MethodConfig``) for the teacher as loaded (architecture ``model_t``)
    and a training set of ``n_data`` images: the per-pair values still left (the architecture
    was unknown before the file was read) filled in."""
    options = method.resolved_options(vars(config.options), model_t, config.model_s)
    return dataclasses.replace(config, model_t=model_t, n_data=n_data,
                               options=method.typed_options(options))


def component_fields(opt):
    """The ``MethodConfig`` fields the components set (an older run's options lack theirs)."""
    return {k: v for component in COMPONENTS for k, v in component.method_fields(opt).items()}


def cross_entropy_smoothing(opt):
    """The label smoothing of the cross-entropy term: ``--smoothing``, except with mixup or
    CutMix, whose mixed labels carry it."""
    if getattr(opt, 'mixup', 0) or getattr(opt, 'cutmix', 0):
        return 0.0
    return getattr(opt, 'smoothing', 0.0)


def build_distiller(method, student, source, config):
    """The method around ``student`` and the teacher ``source``; a pair it cannot serve is one
    line."""
    try:
        return method(student, source, config)
    except ValueError as e:
        raise UserError(f'--distill {config.name} cannot distil {config.model_t} into '
                        f'{config.model_s}: {e}') from None


def run_options(ckpt, path):
    """The options of the run that wrote a ``Checkpoint``: stored in it (also as RepDistiller's
    Namespace, or an older version's ``'method_opt'``), else in its folder's summary.json;
    ``{}`` when neither says (a checkpoint from elsewhere)."""
    for options in (ckpt.options, ckpt.learner.get('method_opt')):
        if isinstance(options, dict):
            return options
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), 'summary.json')) as f:
            return json.load(f)['args']
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def stored_config(ckpt):
    """The ``MethodConfig`` a ``Checkpoint`` of a method that predicts through its own modules
    carries (``'method'``; older versions stored the run's whole options, ``'method_opt'``);
    None for other checkpoints."""
    state = ckpt.learner
    if 'method' in state:
        return MethodConfig.from_dict(state['method'])
    if 'method_opt' not in state:
        return None
    opt = SimpleNamespace(**state['method_opt'])
    method = get_method(opt.distill)
    return method_config(opt, method, opt.model_t, opt.n_data, opt.image_size)


def rebuild_student(ckpt, arch, num_classes, dataset, path, fix, image_size=None):
    """The network a student checkpoint describes: the model with its weights, or, for a
    method that predicts through modules of its own, the method rebuilt around it. Such a
    checkpoint holds every module the prediction needs (a copy of the teacher's classifier
    included); the teacher's architecture only sizes them. ``fix`` ends the message of a
    checkpoint that does not fit ``arch``."""
    model = load_weights(get_model(arch, num_classes, dataset, image_size), ckpt.learner['model'],
                         path, arch, num_classes, dataset, fix, image_size=image_size)
    config = stored_config(ckpt)
    if config is None:
        return model
    teacher = FrozenTeacher(get_model(config.model_t, num_classes, dataset, config.image_size))
    distiller = get_method(config.name)(model, teacher, config)
    distiller.load_checkpoint_state(ckpt.learner)
    return distiller
