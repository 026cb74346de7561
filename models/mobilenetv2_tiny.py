"""The MobileNetV2 of mdistiller's TinyImageNet experiments (a08d46f,
mdistiller/models/cifar/mv2_tinyimagenet.py): full width, a 1x1 stem with padding 1 (a 64x64
image gives 66x66 maps), ReLU6, PyTorch's default initialisation, and a 1x1-convolution
classifier on the pooled map (here the equivalent linear layer). Features as mdistiller reads
them: the stem, the outputs of its stages 2, 3 and 4, and the 1280-channel map the classifier
pools."""
import torch.nn as nn

from .base import KDModel
from .registry import register_model


class LinearBottleneck(nn.Module):
    def __init__(self, in_channels, out_channels, stride, expansion):
        super().__init__()
        hidden = in_channels * expansion
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x):
        out = self.residual(x)
        return out + x if self.shortcut else out


def _stage(repeat, in_channels, out_channels, stride, expansion):
    return nn.Sequential(LinearBottleneck(in_channels, out_channels, stride, expansion),
                         *[LinearBottleneck(out_channels, out_channels, 1, expansion)
                           for _ in range(repeat - 1)])


class MobileNetV2TinyImagenet(KDModel):
    classifier_name = 'classifier'

    def __init__(self, num_classes=200):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32),
                                 nn.ReLU6(inplace=True))
        self.stages = nn.ModuleList([
            LinearBottleneck(32, 16, 1, 1), _stage(2, 16, 24, 2, 6), _stage(3, 24, 32, 2, 6),
            _stage(4, 32, 64, 2, 6), _stage(3, 64, 96, 1, 6), _stage(3, 96, 160, 1, 6),
            LinearBottleneck(160, 320, 1, 6)])
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280),
                                   nn.ReLU6(inplace=True))
        self.classifier = nn.Linear(1280, num_classes)

    FEATURE_STAGES = (1, 2, 3)  # mdistiller's f1-f3: after its stage2, stage3 and stage4

    def get_feat_modules(self):
        return nn.ModuleList([self.pre, self.stages, self.conv1])

    def forward_maps(self, x, preact):
        # Stage outputs are linear-bottleneck outputs (no ReLU), so `preact` changes nothing.
        out = self.pre(x)
        feats = [out]
        for i, stage in enumerate(self.stages):
            out = stage(out)
            if i in self.FEATURE_STAGES:
                feats.append(out)
        head_map = self.conv1(out)
        return feats + [head_map], head_map


@register_model('MobileNetV2_TinyImagenet', family='tinyimagenet')
def mobilenetv2_tinyimagenet(num_classes=200):
    return MobileNetV2TinyImagenet(num_classes)
