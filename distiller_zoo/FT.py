"""Factor Transfer (Kim et al., NeurIPS 2018): an auto-encoder (paraphraser) trained in an init
stage compresses the teacher's last feature map into factors; a translator maps the student's
onto them. As in RepDistiller, factors are compared as normalised spatial (AT-style) maps."""
import torch.nn as nn
import torch.nn.functional as F

from models.util import Paraphraser, Translator
from core.learner import InitStage
from .base import About, Distiller, Needs, pool_to_smaller, register_method
from .options import INIT_EPOCHS


class FactorTransfer(nn.Module):
    def __init__(self, p1=2, p2=1):
        super().__init__()
        self.p1 = p1
        self.p2 = p2

    def forward(self, f_s, f_t):
        return self.factor_loss(f_s, f_t)

    def factor_loss(self, f_s, f_t):
        f_s, f_t = pool_to_smaller(f_s, f_t)
        diff = self.factor(f_s) - self.factor(f_t)
        return diff.abs().mean() if self.p2 == 1 else diff.pow(self.p2).mean()

    def factor(self, f):
        return F.normalize(f.pow(self.p1).mean(1).flatten(1))


@register_method('factor', 'ft')
class FT(Distiller):
    about = About('FT', 'last stage', 'translator; paraphraser (init only)', 'paraphraser')
    needs = Needs(weights=(1.0, 0.0, 200.0))
    options = (INIT_EPOCHS,)
    FACTOR_RATE = 0.5
    INIT_LR_RESNET_WRN = 0.01  # RepDistiller's paraphraser lr for resnet*/wrn* students

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.translator = Translator(feat_s[-2].shape, feat_t[-2].shape, k=self.FACTOR_RATE)
        self.paraphraser = Paraphraser(feat_t[-2].shape, k=self.FACTOR_RATE)
        self.criterion_kd = FactorTransfer()
        self.frozen = [self.paraphraser]  # trained only in the init stage

    def init_stage(self):
        resnet_or_wrn = self.config.model_s.startswith(('resnet', 'wrn'))
        return InitStage(nn.ModuleList([self.paraphraser]), self.config.options.init_epochs,
                         self.INIT_LR_RESNET_WRN if resnet_or_wrn else None)

    def init_loss(self, feat_s, feat_t):
        _, reconstruction = self.paraphraser(feat_t[-2])
        return F.mse_loss(reconstruction, feat_t[-2])

    def kd_loss(self, s, t, batch):
        factor_s = self.translator(s.feats[-2])
        factor_t = self.paraphraser(t.feats[-2], is_factor=True)
        return self.criterion_kd(factor_s, factor_t)
