"""SimKD (Chen et al., "Knowledge Distillation with the Reused Teacher Classifier", CVPR 2022):
a projector turns the map the student's classifier pools into the teacher's, trained by MSE
alone; the student then predicts through the projector and a frozen copy of the teacher's
classifier. A SimKD checkpoint holds both, so it evaluates without the teacher's file."""
import copy

import torch.nn as nn
import torch.nn.functional as F

from core.util import positive_int
from .base import About, FEATURES, HEAD_MAP, Distiller, Needs, register_method
from .options import Option


def _conv(c_in, c_out, kernel):
    return nn.Conv2d(c_in, c_out, kernel_size=kernel, padding=kernel // 2, bias=False)


def align_maps(feat_s, feat_t):
    """Average-pool the student's map to the teacher's side when it is larger, else the
    teacher's to the student's (SimKD's rule: the student is never enlarged)."""
    h_s, h_t = feat_s.shape[2], feat_t.shape[2]
    if h_s > h_t:
        return F.adaptive_avg_pool2d(feat_s, (h_t, h_t)), feat_t
    return feat_s, F.adaptive_avg_pool2d(feat_t, (h_s, h_s))


class SimKD(nn.Module):
    """The projector (the SimKD toolbox's name and state-dict keys, ``transfer.*``): a
    bottleneck of 1x1, 3x3 and 1x1 bias-free convs, each followed by BN and ReLU, from
    ``s_n`` channels through ``t_n // factor`` to ``t_n``."""

    def __init__(self, *, s_n, t_n, factor=2):
        super().__init__()
        mid = t_n // factor
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.transfer = nn.Sequential(
            _conv(s_n, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            _conv(mid, mid, 3), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            _conv(mid, t_n, 1), nn.BatchNorm2d(t_n), nn.ReLU(inplace=True))

    def predict(self, source, cls_t):
        """Projected map of an (aligned) student map, and its logits through ``cls_t``."""
        projected = self.transfer(source)
        return projected, cls_t(self.avg_pool(projected).flatten(1))

    def forward(self, feat_s, feat_t, cls_t):
        """``(projected student map, aligned teacher map, logits through cls_t)``."""
        source, target = align_maps(feat_s, feat_t)
        projected, logits = self.predict(source, cls_t)
        return projected, target, logits


@register_method('simkd')
class SimKDMethod(Distiller):
    about = About('SimKD (Chen et al., CVPR 2022)',
                  'head maps; teacher classifier',
                  'projector (`-f/--factor` 2)')
    # the SimKD toolbox's -c 0 -d 0 -b 1
    needs = Needs(weights=(0.0, 0.0, 1.0), student_reads=FEATURES | {HEAD_MAP},
                    teacher_reads=FEATURES | {HEAD_MAP}, student_predicts=False)

    options = (Option('-f', '--factor', type=positive_int, default=2,
                      help='SimKD: projector bottleneck, teacher channels / factor (the paper '
                           'uses 2, 4 and 8; smaller is larger and better)'),)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        s, t = self.probe(config.image_size)
        self.factor = config.options.factor
        if t.head_map.shape[1] // self.factor < 1:
            raise ValueError(f'--factor {self.factor} leaves no channels of the teacher\'s '
                             f'{t.head_map.shape[1]}')
        self.teacher_side = t.head_map.shape[2]
        self.proj = SimKD(s_n=s.head_map.shape[1], t_n=t.head_map.shape[1], factor=self.factor)
        self.cls_t = copy.deepcopy(self.teacher_net.get_classifier()).requires_grad_(False)
        self.frozen.append(self.cls_t)
        self.criterion_kd = nn.MSELoss()

    def describe(self):
        size = sum(p.numel() for p in self.proj.parameters())
        return (f'projector factor {self.factor} ({size:,} parameters); predictions through the '
                f'teacher\'s classifier')

    def losses(self, s, t, batch):
        """The projector's prediction; CE and KL (-c/-d) on the student's own head."""
        projected, target_map, logits = self.proj(s.head_map, t.head_map, self.cls_t)
        losses = self.base_losses(s.logits, t.logits, batch.cls_target)
        return logits, self.add_method_loss(losses, self.criterion_kd(projected, target_map))

    def prediction_features(self, image):
        """The pooled projection the teacher's classifier takes; no teacher forward is needed:
        the teacher's map only decides whether the student's map is pooled."""
        _, _, head_s = self.student(image, is_feat=True, with_head_map=True)
        if head_s.shape[2] > self.teacher_side:
            head_s = F.adaptive_avg_pool2d(head_s, (self.teacher_side, self.teacher_side))
        return self.proj.avg_pool(self.proj.transfer(head_s)).flatten(1)

    def forward_test(self, image):
        """Student, projector and the teacher's classifier."""
        return self.cls_t(self.prediction_features(image))

    def checkpoint_state(self):
        # 'proj' is where the SimKD toolbox's checkpoints keep the projector.
        return {**super().checkpoint_state(), 'proj': self.proj.state_dict()}
