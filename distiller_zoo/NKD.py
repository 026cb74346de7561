"""NKD (Yang et al., "From Knowledge Distillation to Self-Knowledge Distillation: A Unified
Approach with Normalized Loss and Customized Soft Labels", ICCV 2023; yzd-v/cls_KD): the
teacher's probability of the label weighs the student's log-probability of it (the target
term, at temperature 1), and the non-target classes, the label's column removed from both
logits, are matched by a cross-entropy at temperature T, times gamma T^2. The CE on the label
stays; there is no Hinton KL."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import non_negative_float, positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .LSKD import Standardised
from .options import Option


def labels_of(gt_label):
    """The class of each sample: the label, or the largest entry of a 2-D (mixed) label."""
    return gt_label.argmax(1) if gt_label.dim() > 1 else gt_label


def nkd_loss(logit_s, logit_t, gt_label, temp, gamma):
    """NKD's target and non-target terms (``temp`` may be a learned tensor), averaged over the
    batch, in fp32."""
    return nkd_rows(logit_s, logit_t, gt_label, temp, gamma).mean().reshape(())


def nkd_rows(logit_s, logit_t, gt_label, temp, gamma, drop_target=True):
    """NKD's loss of each row. ``drop_target=False`` keeps the label's column in the non-target
    term, as the cls_KD code of Jul-Oct 2023 did (and SDD's copy of it)."""
    with torch.autocast(logit_s.device.type, enabled=False):
        logit_s, logit_t = logit_s.float(), logit_t.float()
        label = labels_of(gt_label)[:, None]
        n = logit_s.shape[0]
        target_s = F.log_softmax(logit_s, 1).gather(1, label)
        target_t = F.softmax(logit_t, 1).gather(1, label).detach()
        loss_target = -(target_t * target_s).squeeze(1)
        if drop_target:
            others = torch.ones_like(logit_s, dtype=torch.bool).scatter_(1, label, False)
            logit_s, logit_t = logit_s[others].reshape(n, -1), logit_t[others].reshape(n, -1)
        log_q_s = F.log_softmax(logit_s / temp, 1)
        q_t = F.softmax(logit_t / temp, 1)
        return loss_target - gamma * temp ** 2 * (q_t * log_q_s).sum(1)


class NKDLoss(nn.Module):
    """The authors' loss module (without mmcls's ``name`` and ``use_this``):
    ``forward(logit_s, logit_t, gt_label)``, labels 1-D or 2-D."""

    def __init__(self, temp=1.0, gamma=1.5):
        super().__init__()
        self.temp, self.gamma = temp, gamma

    def forward(self, logit_s, logit_t, gt_label):
        return nkd_loss(logit_s, logit_t, gt_label, self.temp, self.gamma)


@register_method('nkd')
class NKD(Distiller):
    about = About('NKD (Yang et al., ICCV 2023)', 'logits, labels')
    # 1 x CE + b x (target + gamma T^2 non-target); the authors' class defaults (their
    # ImageNet configs): T 1, gamma 1.5; their CIFAR-100 config: T 3, gamma 3.5
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised(temperature='nkd_T', weight='beta'))
    logit_kl_weights = ('alpha', 'beta')
    options = (Option('--nkd_T', type=positive_float, default=1.0,
                      help='NKD: temperature of the non-target term (the authors\' CIFAR-100 '
                           'config: 3)'),
               Option('--nkd_gamma', type=non_negative_float, default=1.5,
                      help='NKD: weight gamma of the non-target term (CIFAR-100 config: 3.5)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.gamma_nkd = config.options.nkd_gamma
        self.nkd = self.logit_kl(config.options.nkd_T)

    def describe(self):
        return f'gamma {self.gamma_nkd:g}, non-target term at {self.nkd.describe()}'

    def kd_loss(self, s, t, batch):
        z_s, z_t = self.nkd.logits(s.logits, t.logits)
        return nkd_loss(z_s, z_t, batch.target, self.nkd.temperature(), self.gamma_nkd)
