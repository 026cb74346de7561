"""MGD (Yang et al., "Masked Generative Distillation", ECCV 2022; yzd-v/MGD), for
classification: the student's last stage map (aligned by a 1x1 conv when the channel counts
differ) has random whole channels zeroed (each with probability lambda, drawn anew every step),
and a generator (3x3 conv, ReLU, 3x3 conv) must produce the teacher's map from it; the squared
error is summed over channels and positions, averaged over the batch, times alpha."""
import torch
import torch.nn as nn

from core.util import non_negative_float, unit_interval
from .base import About, Distiller, Needs, register_method
from .options import Option


class MGDLoss(nn.Module):
    """The authors' module (without mmcls's ``name``): ``forward(preds_S, preds_T)``, alpha
    inside. The mask is one ``torch.rand((B, C_t, 1, 1))`` on the CPU generator, drawn first."""

    def __init__(self, student_channels, teacher_channels, alpha_mgd=0.00007, lambda_mgd=0.15):
        super().__init__()
        self.alpha_mgd, self.lambda_mgd = alpha_mgd, lambda_mgd
        self.align = (nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
                      if student_channels != teacher_channels else None)
        self.generation = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels, teacher_channels, kernel_size=3, padding=1))

    def forward(self, preds_S, preds_T):
        n, c = preds_T.shape[:2]
        keep = (torch.rand((n, c, 1, 1)) >= self.lambda_mgd).to(preds_S.device, preds_S.dtype)
        if self.align is not None:
            preds_S = self.align(preds_S)
        generated = self.generation(preds_S * keep)
        return ((generated.float() - preds_T.float()) ** 2).sum() / n * self.alpha_mgd


@register_method('mgd')
class MGD(Distiller):
    about = About('MGD (Yang et al., ECCV 2022)',
                  'last stage',
                  '1x1 aligner (when channels differ), generator')
    # CE 1 + MGD (alpha inside, as the authors); their CIFAR-100 config: alpha 0.0012, lambda
    # 0.15 (their ImageNet: alpha 7e-5)
    needs = Needs(weights=(1.0, 0.0, 1.0))
    options = (Option('--mgd_alpha', type=non_negative_float, default=0.0012,
                      help='MGD: weight of the summed squared error (the authors\' CIFAR-100 '
                           'config; ImageNet: 7e-5)'),
               Option('--mgd_lambda', type=unit_interval, default=0.15,
                      help='MGD: probability that a channel of the student\'s map is masked'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        s, t = feat_s[-2], feat_t[-2]  # the last stage
        if s.shape[2:] != t.shape[2:]:
            raise ValueError(f'MGD generates the teacher\'s last stage map from the student\'s, '
                             f'which must be as large: {tuple(s.shape[2:])} here, '
                             f'{tuple(t.shape[2:])} for the teacher')
        o = config.options
        self.criterion_kd = MGDLoss(s.shape[1], t.shape[1], o.mgd_alpha, o.mgd_lambda)

    def describe(self):
        c = self.criterion_kd
        count = sum(p.numel() for p in c.parameters())
        return (f'alpha {c.alpha_mgd:g}, lambda {c.lambda_mgd:g}; generator'
                f'{" and aligner" if c.align is not None else ""} {count:,} parameters')

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.feats[-2], t.feats[-2])
