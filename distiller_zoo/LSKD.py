"""Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR
2024; sunshangquan/logit-standardization-KD): a modifier of every logit KL of the toolbox (the
``-a`` KD term of any method, DKD, MLLD's instance terms, CTKD's KL). Both logits are z-scored
per sample, ``(z - mean) / (1e-7 + std)`` with torch's unbiased std, before the temperature.

Unless given, the authors' per-pair temperature and weight (and DKD's beta) apply: KD ``-a w
--kd_T tau``; DKD ``--dkd_T tau --dkd_alpha w --dkd_beta w * beta``; MLLD temperature tau and
kd weight w (``-a``); CTKD ``-a w``.
"""
from core.util import positive_float
from .options import Option


def normalize(logit):
    """The authors' name: each row of ``logit`` z-scored over its classes."""
    mean = logit.mean(dim=-1, keepdim=True)
    std = logit.std(dim=-1, keepdim=True)
    return (logit - mean) / (1e-7 + std)


logit_standardize = normalize

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

DEFAULT = {'kd': (2.0, 9.0), 'dkd': (2.0, 9.0, None), 'mlld': (2.0, 9.0), 'ctkd': (2.0, 9.0)}
# The authors' (tau, w) per teacher/student pair and method (DKD: (tau, w, beta), beta then
# multiplied by w), from the names of their log files.
SETTINGS = {
    ('resnet32x4', 'resnet8x4'): {'kd': (2, 9), 'dkd': (2, 9, 8), 'mlld': (2, 9)},
    ('vgg13', 'vgg8'): {'kd': (3, 9), 'dkd': (2, 15, 2), 'mlld': (2, 6)},
    ('wrn_40_2', 'wrn_16_2'): {'kd': (2, 9), 'dkd': (2, 12, 2), 'mlld': (2, 9)},
    ('wrn_40_2', 'wrn_40_1'): {'kd': (2, 9), 'dkd': (2, 12, 2), 'mlld': (2, 9)},
    ('resnet56', 'resnet20'): {'kd': (2, 9), 'dkd': (3, 18, 2)},
    ('resnet110', 'resnet32'): {'kd': (2, 9), 'dkd': (2, 15, 2), 'mlld': (2, 9)},
    ('resnet110', 'resnet20'): {'kd': (4, 12), 'dkd': (2, 15, 2), 'mlld': (2, 9)},
    ('resnet32x4', 'ShuffleV2'): {'kd': (2, 9), 'dkd': (2, 9, 8), 'mlld': (2, 6)},
    ('resnet32x4', 'wrn_16_2'): {'kd': (3, 9), 'dkd': (2, 9, 2), 'mlld': (2, 9)},
    ('resnet32x4', 'wrn_40_2'): {'kd': (3, 9), 'dkd': (2, 9, 8), 'mlld': (2, 9)},
    ('wrn_40_2', 'resnet8x4'): {'kd': (2, 9), 'dkd': (2, 18, 2), 'mlld': (2, 9)},
    ('wrn_40_2', 'MobileNetV2'): {'kd': (3, 9), 'dkd': (2, 15, 2)},
    ('vgg13', 'MobileNetV2'): {'kd': (3, 9), 'dkd': (3, 9, 2), 'mlld': (2, 6)},
    ('ResNet50', 'MobileNetV2'): {'kd': (3, 1), 'dkd': (2, 15, 2), 'mlld': (2, 9)},
}


def run_defaults(method, column, learned, teacher, student, opt):
    """``{dest: value}`` that ``--logit_stand`` sets unless the command line gives them: for a
    method with a column in the authors' table (``column``: ``method.lskd_settings``, or a
    preset's), its per-pair temperature and weight; for any other, ``--base_temp`` and
    ``--kd_weight`` as given (its own temperature and ``-a`` otherwise). A ``learned``
    temperature takes none: only the weight applies."""
    if column is None:
        tau, weight, beta = opt.base_temp, opt.kd_weight, None
    else:
        tau, weight, *beta = setting(column, teacher, student, opt)
        beta = beta[0] if beta else None
    values = method.logit_stand_defaults(None if learned else tau, weight, beta, teacher,
                                         student)
    return {dest: value for dest, value in values.items() if value is not None}


def has_setting(column, teacher, student):
    """Whether the authors ran the method of LSKD's ``column`` on the pair; without, LSKD's
    values are their fallback (2 and 9) or the ones given."""
    return column in SETTINGS.get((teacher, student), {})


def setting(method, teacher, student, opt):
    """``(tau, w[, beta])`` of ``method`` (kd, dkd, mlld, ctkd) for the pair: ``--base_temp``
    and ``--kd_weight`` when given, else the authors' for the pair, else 2 and 9 (DKD's beta:
    None, its own per-pair default)."""
    authors = SETTINGS.get((teacher, student), {}).get(method, DEFAULT[method])
    tau, weight, *beta = (float(v) if v is not None else None for v in authors)
    return ((opt.base_temp or tau), (opt.kd_weight or weight), *beta)
