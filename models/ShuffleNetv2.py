"""CIFAR ShuffleNet V2 as in RepDistiller (net size 1) and the SimKD toolbox (net size 1.5)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import ShuffleBlock, ShuffleStages
from .registry import register_model


class SplitBlock(nn.Module):
    def __init__(self, ratio):
        super().__init__()
        self.ratio = ratio

    def forward(self, x):
        c = int(x.size(1) * self.ratio)
        return x[:, :c], x[:, c:]


class BasicBlock(nn.Module):
    def __init__(self, in_channels, split_ratio=0.5, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.split = SplitBlock(split_ratio)
        c = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.shuffle = ShuffleBlock()

    def forward(self, x):
        x1, x2 = self.split(x)
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        branch_pre = self.bn3(self.conv3(out))
        out = self.shuffle(torch.cat([x1, F.relu(branch_pre)], 1))
        # The pre-activation feature is taken before the shuffle.
        return (out, torch.cat([x1, branch_pre], 1)) if self.is_last else out


class DownBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1,
                               groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid,
                               bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.shuffle = ShuffleBlock()

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], 1))


CONFIGS = {
    1: {'out_channels': (116, 232, 464, 1024), 'num_blocks': (3, 7, 3)},
    1.5: {'out_channels': (176, 352, 704, 1024), 'num_blocks': (3, 7, 3)},
}


class ShuffleNetV2(ShuffleStages):
    classifier_name = 'linear'

    def __init__(self, net_size, num_classes=10):
        super().__init__()
        out_channels = CONFIGS[net_size]['out_channels']
        num_blocks = CONFIGS[net_size]['num_blocks']
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], num_blocks[0])
        self.layer2 = self._make_layer(out_channels[1], num_blocks[1])
        self.layer3 = self._make_layer(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_layer(self, out_channels, num_blocks):
        layers = [DownBlock(self.in_channels, out_channels)]
        layers += [BasicBlock(out_channels, is_last=(i == num_blocks - 1))
                   for i in range(num_blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*layers)

    stage_input, num_stages = 'afterrelu', 4

    def stage_forward(self, stage, x):
        if stage == 0:
            return F.relu(self.bn1(self.conv1(x)))
        x = (self.layer1, self.layer2, self.layer3)[stage - 1](x)[0]
        return F.relu(self.bn2(self.conv2(x))) if stage == 3 else x

    def forward_maps(self, x, preact):
        feats, out = self.stem_and_stages(x, preact)
        return feats, F.relu(self.bn2(self.conv2(out)))


@register_model('ShuffleV2', small_lr=True)
def ShuffleV2(**kwargs):
    return ShuffleNetV2(net_size=1, **kwargs)


@register_model('ShuffleV2_1_5', small_lr=True)
def ShuffleV2_1_5(**kwargs):
    return ShuffleNetV2(net_size=1.5, **kwargs)
