"""FitNets: Hints for Thin Deep Nets (Romero et al., ICLR 2015). A regressor maps the student's
hint-layer feature onto the teacher's; the loss is their mean squared error."""
import torch.nn as nn

from models.util import ConvReg
from .base import About, Distiller, Needs, register_method
from .options import HINT_LAYER


class HintLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.crit = nn.MSELoss()

    def forward(self, f_s, f_t):
        return self.crit(f_s, f_t)


@register_method('hint', 'fitnet')
class FitNet(Distiller):
    about = About('FitNet', '`feat[--hint_layer]` (2)', 'ConvReg')
    needs = Needs(weights=(1.0, 0.0, 100.0))
    options = (HINT_LAYER,)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.hint_layer = config.options.hint_layer
        feat_s, feat_t = self.probe_features(config.image_size)
        for role, feats in (('student', feat_s), ('teacher', feat_t)):
            if self.hint_layer >= len(feats) or feats[self.hint_layer].dim() != 4:
                maps = sum(f.dim() == 4 for f in feats)
                raise ValueError(f'--hint_layer {self.hint_layer} is not a feature map of the '
                                 f'{role}, whose maps are 0-{maps - 1} (then the pooled '
                                 f'embedding)')
        self.regress_s = ConvReg(feat_s[self.hint_layer].shape, feat_t[self.hint_layer].shape)
        self.criterion_kd = HintLoss()

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(self.regress_s(s.feats[self.hint_layer]),
                                 t.feats[self.hint_layer])
