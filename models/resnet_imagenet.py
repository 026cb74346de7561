"""ImageNet ResNets with torchvision's state-dict keys, so torchvision weights load as teachers.

Names follow the SimKD toolbox (ResNet18/34/50, resnext50_32x4d, ResNet10x2, ...). As in that
toolbox, a BasicBlock network with ``width_per_group`` 128 widens every stage by 2 (torchvision
itself only widens Bottleneck networks).
"""
import torch.nn as nn

from .base import KDModel, init_kaiming_bn, last_bn, run_stages
from .resnet import BasicBlock, Bottleneck
from .registry import register_model


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ResNet(KDModel):
    def __init__(self, block, layers, num_classes=1000, groups=1, width_per_group=64,
                 zero_init_residual=False):
        super().__init__()
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widen = width_per_group // 64 if block is BasicBlock else 1
        self.layer1 = self._make_layer(block, 64 * widen, layers[0])
        self.layer2 = self._make_layer(block, 128 * widen, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256 * widen, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512 * widen, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * widen * block.expansion, num_classes)
        init_kaiming_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.constant_(last_bn(m).weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        width = dict(groups=self.groups, base_width=self.base_width) if block is Bottleneck else {}
        layers = [block(self.inplanes, planes, stride, downsample, is_last=(blocks == 1), **width)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, is_last=(i == blocks - 1), **width))
        return nn.Sequential(*layers)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.maxpool, self.layer1,
                              self.layer2, self.layer3, self.layer4])

    def get_bn_before_relu(self):
        return [last_bn(layer[-1])
                for layer in (self.layer1, self.layer2, self.layer3, self.layer4)]

    def forward_maps(self, x, preact):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stem = x
        x, stages = run_stages(x, [self.layer1, self.layer2, self.layer3, self.layer4], preact)
        return [stem, *stages], x


def _resnet(name, block, layers, **arch):
    def build(num_classes=1000, **kwargs):
        return ResNet(block, layers, num_classes=num_classes, **arch, **kwargs)
    return register_model(name, build, 'imagenet')


resnet18 = _resnet('ResNet18', BasicBlock, [2, 2, 2, 2])
resnet34 = _resnet('ResNet34', BasicBlock, [3, 4, 6, 3])
resnet50 = _resnet('ResNet50', Bottleneck, [3, 4, 6, 3])
resnet101 = _resnet('ResNet101', Bottleneck, [3, 4, 23, 3])
resnet152 = _resnet('ResNet152', Bottleneck, [3, 8, 36, 3])
resnext50_32x4d = _resnet('resnext50_32x4d', Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)
wide_resnet10_2 = _resnet('ResNet10x2', BasicBlock, [1, 1, 1, 1], width_per_group=128)
wide_resnet18_2 = _resnet('ResNet18x2', BasicBlock, [2, 2, 2, 2], width_per_group=128)
wide_resnet34_2 = _resnet('ResNet34x2', BasicBlock, [3, 4, 6, 3], width_per_group=128)
wide_resnet50_2 = _resnet('wrn_50_2', Bottleneck, [3, 4, 6, 3], width_per_group=128)
