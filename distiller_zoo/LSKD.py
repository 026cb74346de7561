"""Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR
2024; sunshangquan/logit-standardization-KD): a modifier of every logit KL of the toolbox (the
``-a`` KD term of any method, DKD, MLLD's instance terms, CTKD's KL). Both logits are z-scored
per sample, ``(z - mean) / (1e-7 + std)`` with torch's unbiased std, before the temperature.

Unless given, the authors' per-pair temperature and weight (and DKD's beta) apply: KD ``-a w
--kd_T tau``; DKD ``--dkd_T tau --dkd_alpha w --dkd_beta w * beta``; MLLD temperature tau and
kd weight w (``-a``); CTKD ``-a w --ctkd_t_start tau --ctkd_t_end 40`` (the bounds their logs
imply, derived in ``per_pair/lskd.toml``).
"""
from typing import NamedTuple, Optional

from core.util import positive_float
from .modifiers import IDENTITY, PRESETS, LogitModifier, Transform, modifier_value
from .options import Option
from .pairs import has_pair, pair_settings


def normalize(logit):
    """The authors' name: each row of ``logit`` z-scored over its classes."""
    mean = logit.mean(dim=-1, keepdim=True)
    std = logit.std(dim=-1, keepdim=True)
    return (logit - mean) / (1e-7 + std)


logit_standardize = normalize
STANDARDISED = Transform(normalize, 'logits standardised (LSKD)')


def transform_of(config):
    """The transform the run's modifiers give every logit KL of the method."""
    return STANDARDISED if config.logit_stand else IDENTITY


OPTIONS = (
    Option('--logit_stand', '--logit-stand', action='store_true',
           help='z-score both logits of every logit KL before the temperature (LSKD); unless '
                'given, the authors\' per-pair temperature and weight apply'),
    Option('--base_temp', '--base-temp', type=positive_float, default=None,
           help='LSKD: the temperature of the standardised KL (default: the authors\' for the '
                'pair, else 2)'),
    Option('--kd_weight', '--kd-weight', type=positive_float, default=None,
           help='LSKD: the weight of the standardised KL (default: the authors\' for the '
                'pair, else 9)'))

class Standardised(NamedTuple):
    """How a method takes LSKD's settings (``Needs.lskd``): its ``column`` of
    ``distiller_zoo/per_pair/lskd.toml`` (None: ``--base_temp`` and ``--kd_weight`` alone), the
    options that take the temperature and the weight, and the one that takes beta times the
    weight (DKD's; its own per-pair default where LSKD's table has no beta)."""
    column: Optional[str] = None
    temperature: str = 'kd_T'
    weight: str = 'alpha'
    beta: Optional[str] = None


def run_defaults(method, column, learned, teacher, student, opt):
    """``{dest: value}`` that ``--logit_stand`` sets unless the command line gives them: for a
    method with a column in the authors' table (``column``: ``method.needs.lskd.column``, or a
    preset's), its per-pair temperature and weight; for any other, ``--base_temp`` and
    ``--kd_weight`` as given (its own temperature and ``-a`` otherwise). A ``learned``
    temperature takes no fixed one: the weight applies and, where the authors ran the column
    with it (CTKD+LS: a ``t_end``), tau as its floor ``--ctkd_t_start`` and their
    ``--ctkd_t_end``."""
    spec = method.needs.lskd
    if column is None:
        tau, weight, beta = opt.base_temp, opt.kd_weight, None
    else:
        tau, weight, *beta = setting(column, teacher, student, opt)
        beta = beta[0] if beta else None
    values = {spec.temperature: None if learned else tau, spec.weight: weight}
    if learned and column is not None:
        # the authors ran this column with a learned temperature (CTKD+LS): their tau is its
        # floor, and the range above it theirs
        t_end = pair_settings('lskd', column, teacher, student).get('t_end')
        if t_end is not None:
            values.update(ctkd_t_start=tau, ctkd_t_end=float(t_end))
    if spec.beta is not None and weight is not None:
        if beta is None:
            beta = method.resolved_options({spec.beta: None}, teacher, student)[spec.beta]
        values[spec.beta] = weight * beta
    return {dest: value for dest, value in values.items() if value is not None}


def has_setting(column, teacher, student):
    """Whether the authors ran the method of LSKD's ``column`` on the pair; without, LSKD's
    values are their fallback (2 and 9) or the ones given."""
    return column is not None and has_pair('lskd', column, teacher, student)


def setting(method, teacher, student, opt):
    """``(tau, w[, beta])`` of ``method`` (kd, dkd, mlld, ctkd) for the pair: ``--base_temp``
    and ``--kd_weight`` when given, else the authors' for the pair, else 2 and 9 (DKD's beta:
    None, its own per-pair default), from ``distiller_zoo/per_pair/lskd.toml``."""
    authors = pair_settings('lskd', method, teacher, student)
    beta = authors.get('beta')
    return ((opt.base_temp or float(authors['tau'])), (opt.kd_weight or float(authors['weight'])),
            *([float(beta)] if beta is not None else [None] if method == 'dkd' else []))


class LogitStandardisation(LogitModifier):
    """``--logit_stand``: the authors' per-pair temperature and weight apply unless given."""
    title = 'logit standardisation (LSKD): every logit KL of the method'
    options = OPTIONS
    label = 'LS'
    checks = (('kd --logit_stand', ['--logit_stand']), ('dkd --logit_stand', ['--logit_stand']))

    def run_defaults(self, opt, method, teacher):
        if not self.enabled(opt):
            return '', {}
        preset = PRESETS.get(opt.distill)
        column = preset.lskd_column if preset else method.needs.lskd.column
        pair = f'{teacher or "?"} -> {opt.model_s}'
        what = (f'the authors\' settings for {pair}' if has_setting(column, teacher, opt.model_s)
                else f'the authors\' fallback values (they ran no {pair})')
        learned = bool(modifier_value(opt, 'ctkd'))  # CTKD's temperature
        return f'--logit_stand: {what}', run_defaults(method, column, learned, teacher,
                                                     opt.model_s, opt)

    def method_fields(self, opt):
        return {'logit_stand': self.enabled(opt)}

    def describe(self, config):
        return ('logits standardised per sample before every logit KL (LSKD)'
                if config.method.logit_stand else '')


LOGIT_STAND = LogitStandardisation()
