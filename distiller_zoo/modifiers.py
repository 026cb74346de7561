"""Modifiers of a method's logit KLs, each chosen by its own flags and usable with every method
that has one: LSKD's logit standardisation (``--logit_stand``) and CTKD's learned temperature
(``--ctkd``). They reach the method through its ``MethodConfig`` (``logit_stand``,
``learned_T``); the run's folder name and its resume checks include their options.

A method never sees them: each of its logit KLs is a ``LogitKL`` component, asked of the base
class with the KL's own temperature (``Distiller.logit_kl(T)``), and the run's modifiers decide
the component's transform of both logits (identity, LSKD's z-score) and its temperature (the
fixed one, or the run's one learned temperature)."""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from . import LSKD, temperature


class Modifier(NamedTuple):
    title: str  # the --help group
    flag: str  # the flag that turns it on
    options: tuple  # distiller_zoo.options.Option


LOGIT_STAND = Modifier('logit standardisation (LSKD): every logit KL of the method',
                       '--logit_stand', LSKD.OPTIONS)
LEARNED_T = Modifier('learned temperature (CTKD): every logit KL of the method',
                     '--ctkd', temperature.OPTIONS)
MODIFIERS = (LOGIT_STAND, LEARNED_T)


def hinton_kl(y_s, y_t, T):
    """``T^2 * KL(softmax(y_t/T) || softmax(y_s/T))`` summed over classes and averaged over the
    batch. ``T`` may be a tensor: of shape (1,), a learned temperature, or (B,), one per sample
    (the batch mean of ``T_i^2 KL_i``)."""
    if torch.is_tensor(T) and T.numel() > 1:  # one temperature per sample
        T = T.reshape(-1, 1)
        log_p_s, log_p_t = F.log_softmax(y_s / T, dim=1), F.log_softmax(y_t / T, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction='none', log_target=True).sum(1)
        return (kl * T.flatten() ** 2).mean()
    log_p_s = F.log_softmax(y_s / T, dim=1)
    log_p_t = F.log_softmax(y_t / T, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction='sum', log_target=True)
    return (kl * T ** 2 / y_s.shape[0]).reshape(())


def transformed_teacher_kl(y_s, y_t, T, power, weighted=False):
    """TTM's divergence (Zheng & Yang, ICLR 2024): ``KL(q || softmax(y_s/T))`` with the teacher
    power-transformed, ``q = p_t^power / sum_c p_t^power = softmax(power * y_t / T)``, times
    ``T^2``, averaged over the batch; ``weighted`` (WTTM) weighs each sample by
    ``sum_c p_t^power``. At ``T = 1`` (the authors'), the student is at T 1 and the teacher at
    T 1/power; ``T`` is what the modifiers may learn. Computed in fp32."""
    with torch.autocast(y_s.device.type, enabled=False):
        y_s, y_t = y_s.float() / T, y_t.float() / T
        log_q = F.log_softmax(power * y_t, dim=1)
        kl = (log_q.exp() * (log_q - F.log_softmax(y_s, dim=1))).sum(1)
        if weighted:
            kl = kl * torch.exp(power * F.log_softmax(y_t, dim=1)).sum(1)
        return (kl.mean() * T ** 2).reshape(())


def identity(logit):
    return logit


class Transform(NamedTuple):
    """What a modifier does to both logits of a KL before its temperature."""
    apply: callable
    label: str  # for the run's describe lines ('' for none)


IDENTITY = Transform(identity, '')
STANDARDISED = Transform(LSKD.normalize, 'logits standardised (LSKD)')


class Divergence(NamedTuple):
    """What a logit KL computes at a temperature: ``compute(y_s, y_t, T)``."""
    compute: callable
    label: str  # for the run's describe lines ('' for Hinton's)


HINTON = Divergence(hinton_kl, '')


def transformed_teacher(power, weighted=False):
    """TTM's (WTTM's with ``weighted``) divergence with the teacher's power ``power``."""
    return Divergence(lambda y_s, y_t, T: transformed_teacher_kl(y_s, y_t, T, power, weighted),
                      f'{"WTTM" if weighted else "TTM"}, teacher power {power:g}')


class LogitKL:
    """One logit KL of a method, as the run's modifiers make it: ``transform`` of both logits,
    then the ``divergence`` (Hinton's KL, or TTM's) at ``temperature()``: ``T``, or ``learned``
    (the run's learned temperature module, owned and saved by the method) when there is one. A
    method whose KL is neither reads ``logits(y_s, y_t)`` and ``temperature()`` and computes its
    own."""

    def __init__(self, T, transform=IDENTITY, learned=None, divergence=HINTON):
        self.T, self.transform, self.learned = T, transform, learned
        self.divergence = divergence

    def temperature(self):
        return self.learned() if self.learned is not None else self.T

    def logits(self, y_s, y_t):
        return self.transform.apply(y_s), self.transform.apply(y_t)

    def __call__(self, y_s, y_t):
        return self.divergence.compute(*self.logits(y_s, y_t), self.temperature())

    def describe(self):
        """``T 4`` or ``T learned (CTKD)``, the divergence if not Hinton's, and the transform,
        if any."""
        text = 'T learned (CTKD)' if self.learned is not None else f'T {self.T:g}'
        return ', '.join(part for part in (self.divergence.label, text, self.transform.label)
                         if part)


def transform_of(config):
    """The transform the run's modifiers give every logit KL of the method."""
    return STANDARDISED if config.logit_stand else IDENTITY


def learned_temperature(config):
    """The run's learned temperature (a module the method owns), or None for fixed ones."""
    return temperature.LearnedTemperature(**config.learned_T) if config.learned_T else None


class Preset(NamedTuple):
    """A ``--distill`` name for another method with modifiers on, as a paper names its
    combination (``ctkd``: KD with the learned temperature): ``modifiers`` are the modifier
    options it implies (not written into the run's options, so its folders keep their names),
    ``lskd_column`` its column of LSKD's per-pair settings, ``about`` its line in the methods
    reference (``distiller_zoo.base.About``)."""
    name: str
    method: str
    modifiers: dict
    lskd_column: Optional[str] = None
    about: Optional[tuple] = None


PRESETS = {}  # --distill name -> Preset (distiller_zoo.base.register_preset)


def modifier_value(opt, dest):
    """A modifier option's value for the run: the preset's, where ``--distill`` names one that
    sets it, else the option's."""
    preset = PRESETS.get(getattr(opt, 'distill', None))
    if preset is not None and dest in preset.modifiers:
        return preset.modifiers[dest]
    return getattr(opt, dest, False)


def learns_temperature(opt):
    """Whether the run's logit KLs take the learned temperature (``--ctkd``, or a preset)."""
    return bool(modifier_value(opt, 'ctkd'))


def config_fields(opt, method):
    """The ``MethodConfig`` fields of the modifiers (an older run's options lack them)."""
    learned = None
    if learns_temperature(opt):
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
