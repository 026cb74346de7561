"""GDKD (Zheng, Cheng et al., "Rethinking Decoupled Knowledge Distillation: A Predictive
Distribution Perspective", 2025; ZaberKo/GDKD): DKD's split generalised. The classes are split by
the teacher's own ranking (its k largest logits, or k smallest), not by the label: a KL of the two
groups' masses, and a KL of the distribution inside each group, weighted w0, w1 and w2. GDKD3
splits into the top class, the next k - 1 and the rest. With k = 1 and a teacher right on every
sample, GDKD is DKD."""
import torch
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int, positive_float, positive_int
from .base import About, LOGITS, Distiller, Needs, register_method
from .options import Option
from .pairs import pair_settings, settings_by_pair

# Logits outside a group are lowered by this much (after dividing by T) to leave its softmax.
MASK_MAGNITUDE = 1000.0
KL_TYPES = ('forward', 'reverse', 'both')
# {(teacher, student): (w0, w1, w2, k, T)} of the authors' CIFAR-100 configs
GDKD_SETTINGS = settings_by_pair('gdkd', 'gdkd', ('w0', 'w1', 'w2', 'k', 'T'))


def teacher_groups(logits_teacher, k, strategy='best'):
    """The mask of each sample's k largest ('best') or smallest ('worst') teacher logits."""
    if strategy not in ('best', 'worst'):
        raise ValueError(f"unknown strategy {strategy!r}; choose 'best' or 'worst'")
    chosen = logits_teacher.topk(k, 1, largest=strategy == 'best', sorted=False).indices
    return torch.zeros_like(logits_teacher, dtype=torch.bool).scatter_(1, chosen, True)


def group_masses_kl(p_student, p_teacher, groups, temperature):
    """``T^2`` batch-mean KL of the probability mass of each group (a list of masks)."""
    def masses(p):
        return torch.stack([p.masked_fill(~g, 0).sum(1) for g in groups], 1)
    return F.kl_div(masses(p_student).log(), masses(p_teacher), reduction='batchmean') * (
        temperature ** 2)


def within_group_kl(z_student, z_teacher, group, temperature, kl_type='forward'):
    """``T^2`` batch-mean KL of the softmax over the classes of ``group`` only (``z``: logits
    divided by T): forward KL(teacher || student), reverse, or the mean of both."""
    outside = MASK_MAGNITUDE * ~group
    log_s, log_t = F.log_softmax(z_student - outside, 1), F.log_softmax(z_teacher - outside, 1)
    forward = F.kl_div(log_s, log_t, reduction='batchmean', log_target=True)
    if kl_type == 'forward':
        kl = forward
    elif kl_type == 'reverse':
        kl = F.kl_div(log_t, log_s, reduction='batchmean', log_target=True)
    elif kl_type == 'both':
        kl = 0.5 * (forward + F.kl_div(log_t, log_s, reduction='batchmean', log_target=True))
    else:
        raise ValueError(f"unknown kl_type {kl_type!r}; choose one of {', '.join(KL_TYPES)}")
    return kl * temperature ** 2


def grouped_kl(logits_student, logits_teacher, groups, weights, temperature, kl_type):
    """``weights[0]`` x the KL of the masses of ``groups`` + ``weights[1]`` x the KL inside the
    last-but-one group + ``weights[2]`` x the KL inside the last (a group of GDKD3's top class
    alone has no distribution inside), and those three parts (detached), in fp32 (a group's
    mass can underflow in fp16)."""
    with torch.autocast(logits_student.device.type, enabled=False):
        z_s = logits_student.float() / temperature
        z_t = logits_teacher.float() / temperature
        parts = [group_masses_kl(z_s.softmax(1), z_t.softmax(1), groups, temperature)]
        parts += [within_group_kl(z_s, z_t, g, temperature, kl_type) for g in groups[-2:]]
        loss = sum(w * part for w, part in zip(weights, parts))
        return (loss, *(part.detach() for part in parts))


def gdkd_loss(logits_student, logits_teacher, target, k, strategy, w0, w1, w2, temperature,
              kl_type):
    """The authors' function: ``(loss, high, low_top, low_other)``, the loss of the two groups
    (the teacher's top-k or bottom-k classes and the rest) and its three parts. ``target`` is
    not read: the groups come from the teacher."""
    top = teacher_groups(logits_teacher, k, strategy)
    return grouped_kl(logits_student, logits_teacher, [top, ~top], (w0, w1, w2), temperature,
                      kl_type)


def gdkd3_loss(logits_student, logits_teacher, target, k, w0, w1, w2, temperature):
    """The authors' GDKD3 ``gdkd_loss``: three groups (the teacher's top class, its next k - 1,
    the rest); w1 weighs the KL inside the second, w2 inside the third. Forward KLs."""
    top1, topk = teacher_groups(logits_teacher, 1), teacher_groups(logits_teacher, k)
    return grouped_kl(logits_student, logits_teacher, [top1, topk & ~top1, ~topk],
                      (w0, w1, w2), temperature, 'forward')


def pair_option(flag, key, kind, what):
    return Option(flag, type=kind, default=None, pair_default=('gdkd', 'gdkd', key),
                  help=f'GDKD: {what}; default: the authors\' value for the pair '
                       f'({GDKD_DEFAULTS[key]:g} elsewhere)')


GDKD_DEFAULTS = pair_settings('gdkd', 'gdkd', None, None)  # the authors' cfg.py's
GDKD_OPTIONS = (
    pair_option('--gdkd_w0', 'w0', non_negative_float, 'weight of the KL of the groups\' masses'),
    pair_option('--gdkd_w1', 'w1', non_negative_float, 'weight of the KL inside the top group'),
    pair_option('--gdkd_w2', 'w2', non_negative_float, 'weight of the KL inside the other group'),
    pair_option('--gdkd_T', 'T', positive_float, 'temperature'),
    Option('--gdkd_warmup', type=non_negative_int, default=20,
           help='GDKD, GDKD3: epochs over which the term grows linearly to full weight'))


@register_method('gdkd')
class GDKD(Distiller):
    about = About('GDKD (Zheng et al., 2025)', 'logits')
    # CE_WEIGHT 1 x CE + b x warm-up x (w0 high + w1 low_top + w2 low_other)
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}))
    options = GDKD_OPTIONS + (
        pair_option('--gdkd_k', 'k', positive_int, 'size of the teacher\'s top (or bottom) group'),
        Option('--gdkd_strategy', default='best', choices=['best', 'worst'],
               help='GDKD: the group is the teacher\'s k largest logits (best) or smallest'),
        Option('--gdkd_kl_type', default='forward', choices=list(KL_TYPES),
               help='GDKD: KL(teacher || student) (forward), the reverse, or their mean (both)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.o = config.options

    def describe(self):
        o = self.o
        return (f'w0 {o.gdkd_w0:g}, w1 {o.gdkd_w1:g}, w2 {o.gdkd_w2:g}, {self.group_line()}, '
                f'T {o.gdkd_T:g}, warm-up {o.gdkd_warmup} epochs')

    def group_line(self):
        return f'teacher\'s {self.o.gdkd_strategy} {self.o.gdkd_k}, {self.o.gdkd_kl_type} KL'

    def grouped_loss(self, z_s, z_t, target):
        o = self.o
        return gdkd_loss(z_s, z_t, target, o.gdkd_k, o.gdkd_strategy, o.gdkd_w0, o.gdkd_w1,
                         o.gdkd_w2, o.gdkd_T, o.gdkd_kl_type)[0]

    def kd_loss(self, s, t, batch):
        return self.warmup_weight(self.o.gdkd_warmup) * self.grouped_loss(
            s.logits, t.logits, batch.target)


@register_method('gdkd3')
class GDKD3(GDKD):
    about = About('GDKD3 (Zheng et al., 2025): three groups', 'logits')
    options = GDKD_OPTIONS + (
        Option('--gdkd3_k', type=positive_int, default=4,
               help='GDKD3: the second group is the teacher\'s classes 2 to k'),)

    def group_line(self):
        return f'groups: teacher\'s top 1, 2-{self.o.gdkd3_k}, the rest'

    def grouped_loss(self, z_s, z_t, target):
        o = self.o
        return gdkd3_loss(z_s, z_t, target, o.gdkd3_k, o.gdkd_w0, o.gdkd_w1, o.gdkd_w2,
                          o.gdkd_T)[0]
