"""CIFAR ShuffleNet V1 (groups 3) as in RepDistiller."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import ShuffleBlock, ShuffleStages
from .registry import register_model


class Bottleneck(nn.Module):
    def __init__(self, in_planes, out_planes, stride, groups, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.stride = stride
        mid_planes = out_planes // 4
        g = 1 if in_planes == 24 else groups  # the first block sees the 24-channel stem
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.shuffle1 = ShuffleBlock(groups=g)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1,
                               groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1))

    def forward(self, x):
        out = self.shuffle1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        pre = torch.cat([out, res], 1) if self.stride == 2 else out + res
        out = F.relu(pre)
        return (out, pre) if self.is_last else out


class ShuffleNet(ShuffleStages):
    classifier_name = 'linear'

    def __init__(self, cfg, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        self.layer1 = self._make_layer(cfg['out_planes'][0], cfg['num_blocks'][0], cfg['groups'])
        self.layer2 = self._make_layer(cfg['out_planes'][1], cfg['num_blocks'][1], cfg['groups'])
        self.layer3 = self._make_layer(cfg['out_planes'][2], cfg['num_blocks'][2], cfg['groups'])
        self.linear = nn.Linear(cfg['out_planes'][2], num_classes)

    def _make_layer(self, out_planes, num_blocks, groups):
        layers = []
        for i in range(num_blocks):
            # The stride-2 first block concatenates its input, so its branch is narrower.
            branch_planes = out_planes - self.in_planes if i == 0 else out_planes
            layers.append(Bottleneck(self.in_planes, branch_planes, stride=2 if i == 0 else 1,
                                     groups=groups, is_last=(i == num_blocks - 1)))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    stage_input, num_stages = 'beforerelu', 4

    def stage_forward(self, stage, x):
        if stage == 0:
            return self.bn1(self.conv1(x))
        return (self.layer1, self.layer2, self.layer3)[stage - 1](F.relu(x))[1]

    def forward_maps(self, x, preact):
        return self.stem_and_stages(x, preact)


@register_model('ShuffleV1', small_lr=True)
def ShuffleV1(**kwargs):
    return ShuffleNet({'out_planes': [240, 480, 960], 'num_blocks': [4, 8, 4], 'groups': 3},
                      **kwargs)
