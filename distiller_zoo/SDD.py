"""SDD (Wei et al., "Scale Decoupled Distillation", CVPR 2024; shicaiwei123/SDD-CVPR2024): the
map each network's classifier pools is average-pooled into regions at several scales (M: 1x1,
2x2, 4x4, the coarser ones pooled from the 4x4), each region's vector goes through that
network's classifier, and every region's logits are distilled (KD, DKD or NKD per row). A region
whose teacher prediction disagrees in correctness with the global one (global right and local
wrong, or the reverse) counts twice; the sum is divided by the number of rows."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int, positive_float
from .base import About, FEATURES, HEAD_MAP, LOGITS, Distiller, Needs, register_method
from .DKD import decoupled_kl_rows
from .LSKD import Standardised
from .NKD import nkd_rows
from .options import Option

SCALES = {'[1]': (1,), '[1,2]': (1, 2), '[1,2,4]': (1, 2, 4)}


def spp_regions(x, scales):
    """(B, C, N): the region vectors of the map ``x`` at ``scales``, in the authors' order (1x1,
    then 2x2, then 4x4, each row-major), the coarser scales pooled from the 4x4 pooling."""
    fine = F.adaptive_avg_pool2d(x, 4)
    pooled = {1: F.adaptive_avg_pool2d(fine, 1), 2: F.adaptive_avg_pool2d(fine, 2), 4: fine}
    return torch.cat([pooled[m].flatten(2) for m in scales], 2)


class SPP(nn.Module):
    """The authors' module: ``forward(x)`` -> (region vectors (B, C, N), their batch means
    (N, B)) for ``M`` one of '[1]', '[1,2]', '[1,2,4]'."""

    def __init__(self, M=None):
        super().__init__()
        if M not in SCALES:
            raise ValueError(f"M must be one of {', '.join(SCALES)}, got {M!r}")
        self.M = M

    def forward(self, x):
        feature = spp_regions(x, SCALES[self.M])
        return feature, feature.permute(2, 0, 1).mean(2)


def sdd_logits(head_map, classifier, M):
    """(B, K, N): the classifier's logits of every region of ``head_map`` (region 0 is the
    ordinary logit)."""
    return classifier(spp_regions(head_map, SCALES[M]).transpose(1, 2)).transpose(1, 2)


def rows_of(multi):
    """(N * B, K) rows of (B, K, N) multi-scale logits, region by region."""
    return multi.permute(2, 0, 1).reshape(-1, multi.shape[1])


def region_weights(out_t, target_r, batch):
    """Per row: 2 where the teacher's region prediction is right and its global one wrong, or
    the reverse; 1 otherwise (the global rows, the first ``batch``, always 1)."""
    correct = out_t.argmax(1) == target_r
    return 1.0 + (correct != correct[:batch].repeat(len(correct) // batch)).float()


def weighted_mean(rows, out_t, target):
    """``sum_r w_r l_r / (N B)`` of per-row losses ``rows``."""
    target_r = target.repeat(len(rows) // len(target))
    return ((rows * region_weights(out_t, target_r, len(target))).sum() / len(rows)).reshape(())


def kd_rows(out_s, out_t, T):
    """``T^2 KL(p_t || p_s)`` of each row, entries that are NaN counted as 0 (as the authors')."""
    kl = F.kl_div(F.log_softmax(out_s / T, 1), F.softmax(out_t / T, 1), reduction='none')
    return torch.nan_to_num(kl * T ** 2, nan=0.0).sum(1)


def sdd_kd_loss(out_s_multi, out_t_multi, T, target):
    """SD-KD (the authors' name and arguments): (B, K, N) logits of both networks."""
    out_s, out_t = rows_of(out_s_multi), rows_of(out_t_multi)
    return weighted_mean(kd_rows(out_s, out_t, T), out_t, target)


def multi_dkd(out_s_multi, out_t_multi, target, alpha, beta, temperature):
    """SD-DKD (the authors' name and arguments)."""
    out_s, out_t = rows_of(out_s_multi), rows_of(out_t_multi)
    target_r = target.repeat(out_s_multi.shape[2])
    rows = decoupled_kl_rows(out_s, out_t, target_r, alpha, beta, temperature)
    return weighted_mean(rows, out_t, target)


def multi_nkd_loss(logit_s, logit_t, gt_label, temp, gamma, drop_target=False):
    """SD-NKD (the authors' name and arguments); as their code, the label's column stays in
    the non-target term unless ``drop_target`` (NKD's own code today)."""
    out_s, out_t = rows_of(logit_s), rows_of(logit_t)
    target_r = gt_label.repeat(logit_s.shape[2])
    rows = nkd_rows(out_s, out_t, target_r, temp, gamma, drop_target)
    return weighted_mean(rows, out_t, gt_label)


def scales_option(column):
    """``--sdd_m`` with its per-pair default from ``column`` of ``per_pair/sdd.toml``."""
    return Option('--sdd_m', choices=list(SCALES), default=None,
                  pair_default=('sdd', column, 'm'),
                  help='SDD: the scales of the regions (default: the authors\' for the pair: '
                       '[1,2] for resnet32x4 -> resnet8x4 and vgg13 -> vgg8, else [1,2,4])')


class ScaleDecoupled(Distiller):
    """What the three SDD methods share: the multi-scale logits of both networks, through
    each one's own classifier, and the run's logit KL component for their rows."""

    def __init__(self, student, teacher, config, T):
        super().__init__(student, teacher, config)
        self.M = config.options.sdd_m
        self.probe(config.image_size)  # refuses a network without the map
        self.sdd_kl = self.logit_kl(T)

    def multi_scale(self, s, t):
        """Both networks' region logits, as rows (N * B, K) transformed by the modifiers."""
        out_s = rows_of(sdd_logits(s.head_map, self.student.get_classifier(), self.M))
        with torch.no_grad():
            out_t = rows_of(sdd_logits(t.head_map, self.teacher_net.get_classifier(), self.M))
        return self.sdd_kl.logits(out_s.float(), out_t.float())


@register_method('sdd_kd')
class SDDKD(ScaleDecoupled):
    about = About('SD-KD (Wei et al., CVPR 2024)', 'head maps through each classifier')
    # mdistiller's KD weights (CE 0.1, KD 0.9) on the region logits; no warm-up (the authors'
    # is commented out)
    needs = Needs(weights=(0.1, 0.0, 0.9), student_reads=FEATURES | {HEAD_MAP},
                    teacher_reads=frozenset({LOGITS, HEAD_MAP}), lskd=Standardised(weight='beta'))
    logit_kl_weights = ('alpha', 'beta')
    options = (scales_option('sdd_kd'),)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config, config.kd_T)

    def describe(self):
        return f'regions at {self.M}, KD at {self.sdd_kl.describe()}'

    def kd_loss(self, s, t, batch):
        out_s, out_t = self.multi_scale(s, t)
        return weighted_mean(kd_rows(out_s, out_t, self.sdd_kl.temperature()), out_t,
                             batch.target)


@register_method('sdd_dkd')
class SDDDKD(ScaleDecoupled):
    about = About('SD-DKD', 'head maps through each classifier')
    # CE 1 + warm-up x (alpha TCKD + beta NCKD) per region; DKD's per-pair beta, T 4
    needs = Needs(weights=(1.0, 0.0, 1.0), student_reads=FEATURES | {HEAD_MAP},
                    teacher_reads=frozenset({LOGITS, HEAD_MAP}),
                    lskd=Standardised('dkd', 'sdd_dkd_T', 'sdd_dkd_alpha', 'sdd_dkd_beta'))
    logit_kl_weights = ('alpha', 'beta')
    options = (scales_option('sdd_dkd'),
               Option('--sdd_dkd_alpha', type=non_negative_float, default=1.0,
                      help='SD-DKD: weight of the target-class term'),
               Option('--sdd_dkd_beta', type=non_negative_float, default=None,
                      pair_default=('sdd', 'sdd_dkd', 'beta'),
                      help='SD-DKD: weight of the non-target term (default: the SDD configs\' '
                           'DKD.BETA for the pair: 8; 6 for wrn_40_2 and vgg13 teachers and '
                           'resnet32x4 -> MobileNetV2, 2 for resnet56/resnet110 -> '
                           'resnet20/resnet32)'),
               Option('--sdd_dkd_T', type=positive_float, default=4.0,
                      help='SD-DKD: temperature'),
               Option('--sdd_warmup', type=non_negative_int, default=20,
                      help='SD-DKD, SD-NKD: epochs of the linear warm-up'))

    def __init__(self, student, teacher, config):
        o = config.options
        super().__init__(student, teacher, config, o.sdd_dkd_T)
        self.alpha_dkd, self.beta_dkd = o.sdd_dkd_alpha, o.sdd_dkd_beta
        self.warmup = o.sdd_warmup

    def describe(self):
        return (f'regions at {self.M}, alpha {self.alpha_dkd:g}, beta {self.beta_dkd:g}, '
                f'{self.sdd_kl.describe()}, warm-up {self.warmup} epochs')

    def kd_loss(self, s, t, batch):
        out_s, out_t = self.multi_scale(s, t)
        target_r = batch.target.repeat(len(out_s) // len(batch.target))
        rows = decoupled_kl_rows(out_s, out_t, target_r, self.alpha_dkd, self.beta_dkd,
                                 self.sdd_kl.temperature())
        return self.warmup_weight(self.warmup) * weighted_mean(rows, out_t, batch.target)


@register_method('sdd_nkd')
class SDDNKD(ScaleDecoupled):
    about = About('SD-NKD', 'head maps through each classifier')
    # CE 1 + warm-up x NKD per region, at DKD's config values (T 4, gamma = the config's
    # DKD.BETA: 8 unless the pair's sets it, the authors' recipe for the pair)
    needs = Needs(weights=(1.0, 0.0, 1.0), student_reads=FEATURES | {HEAD_MAP},
                    teacher_reads=frozenset({LOGITS, HEAD_MAP}),
                    lskd=Standardised(temperature='sdd_nkd_T', weight='beta'),
                    pair_table=('sdd', 'sdd_nkd_recipe'))
    logit_kl_weights = ('alpha', 'beta')
    options = (scales_option('sdd_nkd'),
               Option('--sdd_nkd_T', type=positive_float, default=4.0,
                      help='SD-NKD: temperature of the non-target term'),
               Option('--sdd_nkd_gamma', type=non_negative_float, default=8.0,
                      help='SD-NKD: weight gamma of the non-target term (the authors\' for the '
                           'pair where their config sets one: 6 for wrn_40_2 and vgg13 teachers '
                           'and resnet32x4 -> MobileNetV2, 2 for resnet56/resnet110 -> '
                           'resnet20/resnet32)'),
               Option('--sdd_nkd_drop_target', action='store_true',
                      help='SD-NKD: leave the label\'s column out of the non-target term, as '
                           'NKD\'s own code does (the SDD authors\' copy keeps it)'),
               SDDDKD.options[-1])

    def __init__(self, student, teacher, config):
        o = config.options
        super().__init__(student, teacher, config, o.sdd_nkd_T)
        self.gamma_nkd, self.drop_target = o.sdd_nkd_gamma, o.sdd_nkd_drop_target
        self.warmup = o.sdd_warmup

    def describe(self):
        kept = 'dropped' if self.drop_target else 'kept (the authors\' code)'
        return (f'regions at {self.M}, gamma {self.gamma_nkd:g}, non-target term at '
                f'{self.sdd_kl.describe()}, label column {kept}, warm-up {self.warmup} epochs')

    def kd_loss(self, s, t, batch):
        out_s, out_t = self.multi_scale(s, t)
        target_r = batch.target.repeat(len(out_s) // len(batch.target))
        rows = nkd_rows(out_s, out_t, target_r, self.sdd_kl.temperature(), self.gamma_nkd,
                        self.drop_target)
        return self.warmup_weight(self.warmup) * weighted_mean(rows, out_t, batch.target)
