"""Modifiers of a method's logit KLs, each chosen by its own flags and usable with every method
that has one: LSKD's logit standardisation (``--logit_stand``) and CTKD's learned temperature
(``--ctkd``). They reach the method through its ``MethodConfig`` (``logit_stand``,
``learned_T``); the run's folder name and its resume checks include their options."""
from typing import NamedTuple

from . import LSKD, temperature


class Modifier(NamedTuple):
    title: str  # the --help group
    flag: str  # the flag that turns it on
    options: tuple  # distiller_zoo.options.Option


LOGIT_STAND = Modifier('logit standardisation (LSKD): every logit KL of the method',
                       '--logit_stand', LSKD.OPTIONS)
LEARNED_T = Modifier('learned temperature (CTKD): the -a term\'s KL and DKD\'s',
                     '--ctkd', temperature.OPTIONS)
MODIFIERS = (LOGIT_STAND, LEARNED_T)


def learns_temperature(opt, method):
    return method.learns_temperature or getattr(opt, 'ctkd', False)


def config_fields(opt, method):
    """The ``MethodConfig`` fields of the modifiers (an older run's options lack them)."""
    learned = None
    if learns_temperature(opt, method):
        learned = dict(t_start=opt.ctkd_t_start, t_end=opt.ctkd_t_end, decay=opt.ctkd_decay,
                       lambda_max=opt.ctkd_lambda_max, lambda_min=opt.ctkd_lambda_min,
                       lambda_epochs=opt.ctkd_lambda_epochs)
    return {'logit_stand': getattr(opt, 'logit_stand', False), 'learned_T': learned}


def describe(config):
    """What the modifiers change, for the start of a run ('' when none is on)."""
    parts = []
    if config.logit_stand:
        parts.append('logits standardised per sample before every logit KL (LSKD)')
    learned = config.learned_T
    if learned:
        parts.append(f'temperature learned (CTKD): {learned["t_start"]:g} + '
                     f'{learned["t_end"]:g} * sigmoid(theta), reversal strength '
                     f'{learned["lambda_max"]:g} -> {learned["lambda_min"]:g} over '
                     f'{learned["lambda_epochs"]} epochs ({learned["decay"]}), logged each epoch')
    return '; '.join(parts)
