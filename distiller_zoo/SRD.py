"""SRD, the "softmax regression" distillation of Yang et al. (ICLR 2021) as the seed repository
(chitraz/KnowledgeDistillationForModelCompression) and SRD_ossl run it: a 1x1 adaptor maps the
map the student's classifier pools onto the teacher's channels; the loss matches that map to
the teacher's and the cross-network logits (the adapted map through the frozen teacher
classifier) to the teacher's logits. ``--distill srd_dist`` (SRDwithDIST) matches the logits by
the row and column correlations of DIST instead, on raw logits."""
import math

import torch.nn as nn
import torch.nn.functional as F

from core.util import non_negative_float
from .base import About, FEATURES, HEAD_MAP, Distiller, Needs, pool_to_smaller, register_method
from .DIST import inter_class_relation, intra_class_relation
from .options import Option


class transfer_conv(nn.Module):
    """The adaptor (SRD_ossl's name and keys, ``Connectors.*``): bias-free 1x1 conv, BN, ReLU,
    He-normal (fan-out) initialised."""

    def __init__(self, in_feature, out_feature):
        super().__init__()
        self.in_feature, self.out_feature = in_feature, out_feature
        self.Connectors = nn.Sequential(
            nn.Conv2d(in_feature, out_feature, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_feature), nn.ReLU())
        conv, bn = self.Connectors[0], self.Connectors[1]
        nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / out_feature))
        nn.init.ones_(bn.weight)
        nn.init.zeros_(bn.bias)

    def forward(self, student):
        return self.Connectors(student)


class statm_loss(nn.Module):
    """The paper's feature loss: squared difference of per-channel spatial means, averaged over
    channels and the batch (maps of any spatial size)."""

    def forward(self, x, y):
        return (x.flatten(2).mean(2) - y.flatten(2).mean(2)).pow(2).mean()


class DISTV2(nn.Module):
    """SRDwithDIST's logit loss: DIST's inter- and intra-class relations on raw logits (no
    softmax, no temperature)."""

    def __init__(self, beta=1.0, gamma=1.0):
        super().__init__()
        self.beta, self.gamma = beta, gamma

    def forward(self, z_s, z_t):
        return (self.beta * inter_class_relation(z_s, z_t)
                + self.gamma * intra_class_relation(z_s, z_t))


@register_method('srd')
class SRD(Distiller):
    about = About('SRD (SRRL as the SRD seed runs it)',
                  'head maps, logits; teacher classifier',
                  '1x1 adaptor')
    needs = Needs(weights=(1.0, 0.0, 1.0), student_reads=FEATURES | {HEAD_MAP},
                    teacher_reads=FEATURES | {HEAD_MAP})

    options = (
        Option('--srd_feat_loss', choices=['mse', 'stat'], default='mse',
               help="feature term: 'mse' of the adapted map (the seed's), or 'stat', the "
                    "paper's squared difference of channel means"),
        Option('--srd_feat_weight', type=non_negative_float, default=None,
               help='weight of the feature term (default: 1; 10 with stat for a ShuffleV1 '
                    'student, as SRD_ossl)'),
        Option('--srd_logit_weight', type=non_negative_float, default=None,
               help="weight of the logit term (default: srd 2 with mse, 1 with stat; srd_dist "
                    "the seed's per-pair weight, 10 or 4)"))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        s, t = self.probe(config.image_size)
        self.adaptor = transfer_conv(s.head_map.shape[1], t.head_map.shape[1])
        o = config.options
        self.feat_loss_name = o.srd_feat_loss
        self.criterion_feat = statm_loss() if o.srd_feat_loss == 'stat' else nn.MSELoss()
        self.criterion_logit = self.logit_criterion()
        feat_weight, logit_weight = self.default_term_weights(config)
        self.feat_weight = feat_weight if o.srd_feat_weight is None else o.srd_feat_weight
        self.logit_weight = logit_weight if o.srd_logit_weight is None else o.srd_logit_weight

    def logit_criterion(self):
        return nn.MSELoss()

    def default_term_weights(self, config):
        if config.options.srd_feat_loss == 'stat':
            return (10.0 if config.model_s == 'ShuffleV1' else 1.0), 1.0
        return 1.0, 2.0

    def describe(self):
        return (f'{self.feat_weight:g} x feature {self.feat_loss_name} + {self.logit_weight:g} x '
                f'logit {type(self.criterion_logit).__name__} (weighted by -b)')

    def kd_loss(self, s, t, batch):
        adapted = self.adaptor(s.head_map)
        # Cross-network logits: the adapted map through the teacher's pooling and classifier.
        cross = self.teacher_net.get_classifier()(F.adaptive_avg_pool2d(adapted, 1).flatten(1))
        return {'feat': self.feat_weight * self.criterion_feat(*pool_to_smaller(adapted,
                                                                                t.head_map)),
                'logit': self.logit_weight * self.criterion_logit(cross, t.logits)}


# The seed's per-pair logit weight for SRDwithDIST (-B; -A, the feature weight, is 1).
SRD_DIST_LOGIT_WEIGHTS = {('wrn_40_4', 'wrn_16_4'): 10.0, ('wrn_40_2', 'wrn_40_1'): 10.0,
                          ('wrn_40_4', 'wrn_16_2'): 4.0}
SRD_DIST_DEFAULT_LOGIT_WEIGHT = 10.0


@register_method('srd_dist')
class SRDwithDIST(SRD):
    about = About('SRDwithDIST (the SRD seed)',
                  'head maps, logits; teacher classifier',
                  '1x1 adaptor')
    def logit_criterion(self):
        return DISTV2()

    def default_term_weights(self, config):
        feat_weight = super().default_term_weights(config)[0]
        return feat_weight, SRD_DIST_LOGIT_WEIGHTS.get((config.model_t, config.model_s),
                                                       SRD_DIST_DEFAULT_LOGIT_WEIGHT)
