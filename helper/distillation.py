"""Methods built from parsed options, and rebuilt from checkpoints."""
import json
import os
from types import SimpleNamespace

from distiller_zoo import get_method
from models import get_model
from .teachers import load_weights


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
    method_opt = SimpleNamespace(**ckpt['method_opt'])
    teacher = get_model(method_opt.model_t, num_classes, dataset)
    distiller = get_method(method_opt.distill)(model, teacher, method_opt, method_opt.image_size)
    distiller.load_checkpoint_state(ckpt)
    return distiller
