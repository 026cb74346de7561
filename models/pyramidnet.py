"""PyramidNets as OFD's CIFAR-100 settings use them (clovaai/overhaul-distillation 76344a8,
CIFAR-100/models/PyramidNet.py; Han et al., CVPR 2017): widths grow by alpha / (3 n) each
block, stride-2 shortcuts average-pool, wider outputs zero-pad the shortcut, and no block ends
with a ReLU. The state-dict keys are the authors', so their teacher file loads.

With ``preact`` the stage features are OFD's: each stage's output taken up to the first ReLU
that follows it, the next stage's first block's BN, 1x1 conv and BN with bottlenecks (its first
BN alone with basic blocks, as the authors' code), and the final BN for the last stage; their
last BNs are ``get_bn_before_relu`` (the authors' list for bottlenecks)."""
import torch.nn as nn
import torch.nn.functional as F

from .base import KDModel, global_avg_pool, init_he_conv_unit_bn
from .registry import register_model


def _add_shortcut(out, shortcut):
    """``out + shortcut``, the shortcut zero-padded to ``out``'s channels."""
    extra = out.shape[1] - shortcut.shape[1]
    return out + (F.pad(shortcut, (0, 0, 0, 0, 0, extra)) if extra else shortcut)


class BasicBlock(nn.Module):
    outchannel_ratio = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def pre_relu(self, x):
        return self.bn1(x)

    def forward(self, x):
        out = self.bn3(self.conv2(F.relu(self.bn2(self.conv1(self.bn1(x))))))
        return _add_shortcut(out, x if self.downsample is None else self.downsample(x))


class Bottleneck(nn.Module):
    outchannel_ratio = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def pre_relu(self, x):
        return self.bn2(self.conv1(self.bn1(x)))

    def forward(self, x):
        out = F.relu(self.pre_relu(x))
        out = self.bn4(self.conv3(F.relu(self.bn3(self.conv2(out)))))
        return _add_shortcut(out, x if self.downsample is None else self.downsample(x))


class PyramidNet(KDModel):
    def __init__(self, depth, alpha, num_classes, bottleneck=False):
        super().__init__()
        block = Bottleneck if bottleneck else BasicBlock
        n = (depth - 2) // (9 if bottleneck else 6)
        self.addrate = alpha / (3 * n)
        self.input_featuremap_dim = self.featuremap_dim = 16
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(block, n)
        self.layer2 = self._make_layer(block, n, stride=2)
        self.layer3 = self._make_layer(block, n, stride=2)
        self.bn_final = nn.BatchNorm2d(self.input_featuremap_dim)
        self.fc = nn.Linear(self.input_featuremap_dim, num_classes)
        init_he_conv_unit_bn(self)

    def _make_layer(self, block, count, stride=1):
        downsample = nn.AvgPool2d(2, stride=2, ceil_mode=True) if stride != 1 else None
        layers, inplanes = [], self.input_featuremap_dim
        for i in range(count):
            self.featuremap_dim += self.addrate
            planes = int(round(self.featuremap_dim))
            layers.append(block(inplanes, planes, stride if i == 0 else 1,
                                downsample if i == 0 else None))
            inplanes = planes * block.outchannel_ratio
        self.input_featuremap_dim = inplanes
        return nn.Sequential(*layers)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        if isinstance(self.layer1[0], Bottleneck):
            return [self.layer2[0].bn2, self.layer3[0].bn2, self.bn_final]
        return [self.layer2[0].bn1, self.layer3[0].bn1, self.bn_final]

    def forward_maps(self, x, preact):
        stem = self.bn1(self.conv1(x))
        f1 = self.layer1(stem)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        head_map = F.relu(self.bn_final(f3))
        if preact:
            # a second call of those BNs, which also updates their running statistics in
            # train mode, as RepDistiller's and the authors' models do
            f1, f2, f3 = self.layer2[0].pre_relu(f1), self.layer3[0].pre_relu(f2), \
                self.bn_final(f3)
        return [stem, f1, f2, f3], head_map

    def pool_head_map(self, head_map):
        return global_avg_pool(head_map)


@register_model('pyramidnet200_240')
def pyramidnet200_240(num_classes):
    return PyramidNet(200, 240, num_classes, bottleneck=True)


@register_model('pyramidnet110_84')
def pyramidnet110_84(num_classes):
    return PyramidNet(110, 84, num_classes, bottleneck=False)

