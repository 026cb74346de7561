"""CIFAR ResNet18/34/50 (3x3 stem, no max-pool, four stages), RepDistiller's ``resnetv2``."""
import torch.nn as nn
import torch.nn.functional as F

from .base import KDModel, init_kaiming_bn, last_bn, run_stages
from .registry import register_model


def _shortcut(in_planes, out_planes, stride):
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        pre = self.bn2(self.conv2(out)) + self.shortcut(x)
        out = F.relu(pre)
        return (out, pre) if self.is_last else out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(in_planes, planes * 4, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        pre = self.bn3(self.conv3(out)) + self.shortcut(x)
        out = F.relu(pre)
        return (out, pre) if self.is_last else out


class ResNet(KDModel):
    classifier_name = 'linear'

    def __init__(self, block, num_blocks, num_classes=10, zero_init_residual=False):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(512 * block.expansion, num_classes)
        init_kaiming_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.constant_(last_bn(m).weight, 0)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for i, s in enumerate([stride] + [1] * (num_blocks - 1)):
            layers.append(block(self.in_planes, planes, s, i == num_blocks - 1))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3,
                              self.layer4])

    def get_bn_before_relu(self):
        return [last_bn(layer[-1])
                for layer in (self.layer1, self.layer2, self.layer3, self.layer4)]

    stage_input, num_stages = 'afterrelu', 5

    def stage_forward(self, stage, x):
        if stage == 0:
            return F.relu(self.bn1(self.conv1(x)))
        return (self.layer1, self.layer2, self.layer3, self.layer4)[stage - 1](x)[0]

    def forward_maps(self, x, preact):
        x = F.relu(self.bn1(self.conv1(x)))
        stem = x
        x, stages = run_stages(x, [self.layer1, self.layer2, self.layer3, self.layer4], preact)
        return [stem, *stages], x


@register_model('ResNet18')
def ResNet18(**kwargs):
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model('ResNet34')
def ResNet34(**kwargs):
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model('ResNet50')
def ResNet50(**kwargs):
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)
