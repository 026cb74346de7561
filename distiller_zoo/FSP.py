"""Flow of Solution Procedure (Yim et al., CVPR 2017): in an init stage, train the student's
feature layers to match the teacher's Gram matrices between consecutive stages. Distillation
proper is then plain training (loss_kd = 0). Needs equal channel counts stage by stage."""
import torch
import torch.nn as nn

from core.learner import InitStage
from .base import About, Distiller, Needs, pool_to_smaller, register_method
from .options import INIT_EPOCHS


class FSP(nn.Module):
    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        if len(s_shapes) != len(t_shapes):
            raise ValueError(f'FSP pairs the stages of student and teacher, which differ in '
                             f'number: student {len(s_shapes)} feature maps, teacher '
                             f'{len(t_shapes)}')
        s_c = [s[1] for s in s_shapes]
        t_c = [t[1] for t in t_shapes]
        if s_c != t_c:
            raise ValueError(f'FSP needs equal channel counts at every stage; student {s_c}, '
                             f'teacher {t_c}')

    def forward(self, g_s, g_t):
        return [(s - t).pow(2).mean() for s, t in zip(self.compute_fsp(g_s),
                                                      self.compute_fsp(g_t))]

    @staticmethod
    def compute_fsp(g):
        matrices = []
        for bot, top in zip(g[:-1], g[1:]):
            bot, top = pool_to_smaller(bot, top)
            # (B, C_top, P) x (B, P, C_bot) / P
            matrices.append(torch.bmm(top.flatten(2), bot.flatten(2).transpose(1, 2))
                            / bot[0, 0].numel())
        return matrices


@register_method('fsp')
class FSPMethod(Distiller):
    about = About('FSP', 'stem + every stage', '', 'student feature layers')
    needs = Needs(weights=(1.0, 0.0, 50.0))
    options = (INIT_EPOCHS,)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.criterion_kd = FSP([f.shape for f in feat_s[:-1]], [f.shape for f in feat_t[:-1]])

    def init_stage(self):
        return InitStage(nn.ModuleList([self.student.get_feat_modules()]),
                         self.config.options.init_epochs)

    def init_loss(self, feat_s, feat_t):
        return sum(self.criterion_kd(feat_s[:-1], feat_t[:-1]))

    def kd_loss(self, s, t, batch):
        return torch.zeros((), device=s.logits.device)
