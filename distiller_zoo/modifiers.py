"""Modifiers of a method's logit KLs, each chosen by its own flags and usable with every method
that has one: LSKD's logit standardisation (``--logit_stand``, ``distiller_zoo.LSKD``) and
CTKD's learned temperature (``--ctkd``, ``distiller_zoo.temperature``), each a
``LogitModifier`` component (``core.component``). They reach the method through its
``MethodConfig`` (``logit_stand``, ``learned_T``).

A method never sees them: each of its logit KLs is a ``LogitKL`` component, asked of the base
class with the KL's own temperature (``Distiller.logit_kl(T)``), and the run's modifiers decide
the component's transform of both logits (identity, LSKD's z-score) and its temperature (the
fixed one, or the run's one learned temperature)."""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from core.component import Component
from core.util import UserError

FLAGS = {'gamma': '-r', 'alpha': '-a', 'beta': '-b'}


class LogitModifier(Component):
    """A modifier of every logit KL of the method: it acts only where the method has one of
    positive weight. A preset (``--distill ctkd``) may turn it on."""
    instances = []  # every logit modifier, checked together (one line names all that are on)

    def __init__(self):
        LogitModifier.instances.append(self)

    def enabled(self, opt):
        return bool(modifier_value(opt, self.options[0].dest))

    def check_resolved(self, opt, method):
        on = [m for m in LogitModifier.instances if m.enabled(opt)]
        if not on or on[0] is not self:
            return
        what = ' and '.join(m.flag for m in on)
        if not method.logit_kl_weights:
            raise UserError(f'--distill {opt.distill} has no logit KL for {what} to modify')
        if not any(getattr(opt, weight) > 0 for weight in method.logit_kl_weights):
            terms = ' and '.join(FLAGS[w] for w in method.logit_kl_weights)
            raise UserError(f'--distill {opt.distill}: {what} would change nothing: the logit '
                            f'KL of the method is its {terms} term, of weight 0 here (give '
                            f'{FLAGS[method.logit_kl_weights[0]]} W to add it)')


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


class Divergence(NamedTuple):
    """What a logit KL computes at a temperature: ``compute(y_s, y_t, T)``."""
    compute: callable
    label: str  # for the run's describe lines ('' for Hinton's)


HINTON = Divergence(hinton_kl, '')


def transformed_teacher(power, weighted=False):
    """TTM's (WTTM's with ``weighted``) divergence with the teacher's power ``power``."""
    return Divergence(lambda y_s, y_t, T: transformed_teacher_kl(y_s, y_t, T, power, weighted),
                      f'{"WTTM" if weighted else "TTM"}, teacher power {power:g}')


# TeKAP's synthetic teachers (Hossain et al., ICLR 2025): how many, their weight, and the share
# of Gaussian noise in each (the authors' constants)
TEKAP_TEACHERS, TEKAP_WEIGHT, TEKAP_NOISE = 3, 0.8, 0.1


def tekap_kl(y_s, y_t, T):
    """TeKAP-L: Hinton's KL to the teacher plus ``0.8`` x the KLs to three synthetic teachers
    ``0.9 y_t + 0.1 e_k``, ``e_k ~ N(0, 1)`` of the logits' shape, drawn in order from the
    default CPU generator (as the authors' code; a checkpoint keeps its state, so a resumed run
    draws the same noise) and moved to the logits' device."""
    teacher = y_t.detach()
    noisy = [(1 - TEKAP_NOISE) * teacher + TEKAP_NOISE * torch.randn(teacher.shape).to(
        teacher.device, teacher.dtype) for _ in range(TEKAP_TEACHERS)]
    return hinton_kl(y_s, y_t, T) + TEKAP_WEIGHT * sum(hinton_kl(y_s, z, T) for z in noisy)


TEKAP = Divergence(tekap_kl, f'TeKAP, {TEKAP_TEACHERS} noisy teachers')


def a_term_kl(add, kd_T, ttm_l):
    """The temperature and divergence of the ``-a`` term that ``--add`` names: Hinton's KD at
    ``--kd_T``, TTM's or WTTM's with the teacher's power ``ttm_l`` (at T 1), or TeKAP's."""
    if add in ('ttm', 'wttm'):
        return 1.0, transformed_teacher(ttm_l, add == 'wttm')
    return kd_T, TEKAP if add == 'tekap' else HINTON


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
