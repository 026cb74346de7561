"""CIFAR ResNets (depth 6n+2, BasicBlock) of RepDistiller and the SimKD toolbox."""
import torch.nn as nn
import torch.nn.functional as F

from .base import KDModel, global_avg_pool, init_kaiming_bn, last_bn, run_stages
from .registry import register_model


def conv3x3(in_planes, out_planes, stride=1, groups=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                     groups=groups, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        pre = self.bn2(self.conv2(out)) + residual
        out = F.relu(pre)
        return (out, pre) if self.is_last else out


class Bottleneck(nn.Module):
    """Also torchvision's bottleneck (stride on the 3x3 conv; ``groups``/``base_width`` widen
    it for ResNeXt and wide ResNets)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, is_last=False, groups=1,
                 base_width=64):
        super().__init__()
        self.is_last = is_last
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        pre = self.bn3(self.conv3(out)) + residual
        out = F.relu(pre)
        return (out, pre) if self.is_last else out


class ResNet(KDModel):
    def __init__(self, depth, num_filters, block_name='BasicBlock', num_classes=10):
        super().__init__()
        if block_name.lower() == 'basicblock':
            assert (depth - 2) % 6 == 0, 'BasicBlock ResNet depth must be 6n+2'
            n, block = (depth - 2) // 6, BasicBlock
        elif block_name.lower() == 'bottleneck':
            assert (depth - 2) % 9 == 0, 'Bottleneck ResNet depth must be 9n+2'
            n, block = (depth - 2) // 9, Bottleneck
        else:
            raise ValueError(f'block_name must be BasicBlock or Bottleneck, got {block_name}')

        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, num_filters[1], n)
        self.layer2 = self._make_layer(block, num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(block, num_filters[3], n, stride=2)
        self.fc = nn.Linear(num_filters[3] * block.expansion, num_classes)
        init_kaiming_bn(self)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, is_last=(blocks == 1))]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, is_last=(i == blocks - 1)))
        return nn.Sequential(*layers)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.layer1, self.layer2,
                              self.layer3])

    def get_bn_before_relu(self):
        return [last_bn(layer[-1]) for layer in (self.layer1, self.layer2, self.layer3)]

    stage_input, num_stages = 'afterrelu', 4

    def stage_forward(self, stage, x):
        if stage == 0:
            return self.relu(self.bn1(self.conv1(x)))
        return (self.layer1, self.layer2, self.layer3)[stage - 1](x)[0]

    def forward_maps(self, x, preact):
        x = self.relu(self.bn1(self.conv1(x)))
        stem = x
        x, stages = run_stages(x, [self.layer1, self.layer2, self.layer3], preact)
        return [stem, *stages], x

    def pool_head_map(self, head_map):
        return global_avg_pool(head_map)


def _cifar_resnet(name, depth, filters):
    def build(**kwargs):
        return ResNet(depth, filters, 'basicblock', **kwargs)
    return register_model(name, build)


NARROW, X2, X4 = [16, 16, 32, 64], [16, 32, 64, 128], [32, 64, 128, 256]
resnet8 = _cifar_resnet('resnet8', 8, NARROW)
resnet14 = _cifar_resnet('resnet14', 14, NARROW)
resnet20 = _cifar_resnet('resnet20', 20, NARROW)
resnet32 = _cifar_resnet('resnet32', 32, NARROW)
resnet38 = _cifar_resnet('resnet38', 38, NARROW)
resnet44 = _cifar_resnet('resnet44', 44, NARROW)
resnet56 = _cifar_resnet('resnet56', 56, NARROW)
resnet110 = _cifar_resnet('resnet110', 110, NARROW)
resnet116 = _cifar_resnet('resnet116', 116, NARROW)
resnet14x2 = _cifar_resnet('resnet14x2', 14, X2)
resnet38x2 = _cifar_resnet('resnet38x2', 38, X2)
resnet110x2 = _cifar_resnet('resnet110x2', 110, X2)
resnet8x4 = _cifar_resnet('resnet8x4', 8, X4)
resnet14x4 = _cifar_resnet('resnet14x4', 14, X4)
resnet32x4 = _cifar_resnet('resnet32x4', 32, X4)
resnet38x4 = _cifar_resnet('resnet38x4', 38, X4)
