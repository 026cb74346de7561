"""Activation Boundaries (Heo et al., AAAI 2019): in an init stage, train the student's feature
layers (through connectors) so that its pre-activations fall on the teacher's side of every
ReLU boundary, with a margin. Distillation proper is then plain training (loss_kd = 0)."""
import torch
import torch.nn as nn

from models.util import Connector
from core.learner import InitStage
from .base import About, FEATURES, PREACT, Distiller, Needs, register_method
from .options import INIT_EPOCHS


class ABLoss(nn.Module):
    def __init__(self, feat_num, margin=1.0):
        super().__init__()
        self.w = [2 ** (i - feat_num + 1) for i in range(feat_num)]  # deeper stages weigh more
        self.margin = margin

    def forward(self, g_s, g_t):
        bsz = g_s[0].shape[0]
        return [w * self.criterion_alternative_l2(s, t) / bsz / 1000 * 3
                for w, s, t in zip(self.w, g_s, g_t)]

    def criterion_alternative_l2(self, source, target):
        m = self.margin
        loss = ((source + m) ** 2 * ((source > -m) & (target <= 0)).float()
                + (source - m) ** 2 * ((source <= m) & (target > 0)).float())
        return loss.abs().sum()


@register_method('abound', 'ab')
class AB(Distiller):
    about = About('AB',
                  'pre-activation stages',
                  'connectors (init only)',
                  'connectors + student feature layers')
    needs = Needs(weights=(1.0, 0.0, 1.0), student_reads=FEATURES | {PREACT},
                    teacher_reads=FEATURES | {PREACT})
    options = (INIT_EPOCHS,)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        shapes_s = [f.shape for f in feat_s[1:-1]]
        shapes_t = [f.shape for f in feat_t[1:-1]]
        if len(shapes_s) != len(shapes_t):
            raise ValueError(f'AB pairs stages one to one, but the student has {len(shapes_s)} '
                             f'stages and the teacher {len(shapes_t)}')
        self.connector = Connector(shapes_s, shapes_t)
        self.criterion_kd = ABLoss(len(shapes_s))
        self.frozen = [self.connector]  # used only by the init stage

    def init_stage(self):
        return InitStage(nn.ModuleList([self.connector, self.student.get_feat_modules()]),
                         self.config.options.init_epochs)

    def init_loss(self, feat_s, feat_t):
        return sum(self.criterion_kd(self.connector(feat_s[1:-1]), feat_t[1:-1]))

    def kd_loss(self, s, t, batch):
        return torch.zeros((), device=s.logits.device)
