"""Wide ResNets (pre-activation blocks, depth 6n+4) as in RepDistiller."""
import torch.nn as nn
import torch.nn.functional as F

from .base import KDModel, global_avg_pool, init_he_conv_unit_bn
from .registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.droprate = dropRate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(
            in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        activated = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        # Blocks that change width take their shortcut from the activated input.
        shortcut = x if self.equalInOut else self.convShortcut(activated)
        return shortcut + out


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1,
                  dropRate)
            for i in range(nb_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(KDModel):
    def __init__(self, depth, num_classes, widen_factor=1, dropRate=0.0):
        super().__init__()
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        assert (depth - 4) % 6 == 0, 'WideResNet depth must be 6n+4'
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], BasicBlock, 1, dropRate)
        self.block2 = NetworkBlock(n, channels[1], channels[2], BasicBlock, 2, dropRate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], BasicBlock, 2, dropRate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(channels[3], num_classes)
        self.nChannels = channels[3]

        init_he_conv_unit_bn(self)
        nn.init.zeros_(self.fc.bias)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.block1, self.block2, self.block3])

    def get_bn_before_relu(self):
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]

    stage_input, num_stages = 'beforebn', 4

    def stage_forward(self, stage, x):
        if stage == 0:
            return self.conv1(x)
        if stage < 3:
            return (self.block1, self.block2)[stage - 1](x)
        return self.bn1(self.block3(x))

    def forward_maps(self, x, preact):
        stem = self.conv1(x)
        f1 = self.block1(stem)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        head_map = self.relu(self.bn1(f3))
        if preact:
            # RepDistiller's convention: apply the BN that follows each stage (a second BN call,
            # which also updates its running statistics in train mode).
            f1, f2, f3 = self.get_bn_before_relu()[0](f1), self.block3.layer[0].bn1(f2), self.bn1(f3)
        return [stem, f1, f2, f3], head_map

    def pool_head_map(self, head_map):
        return global_avg_pool(head_map)


def _wrn(name, depth, width):
    def build(**kwargs):
        return WideResNet(depth=depth, widen_factor=width, **kwargs)
    return register_model(name, build)


wrn_16_1 = _wrn('wrn_16_1', 16, 1)
wrn_16_2 = _wrn('wrn_16_2', 16, 2)
wrn_16_4 = _wrn('wrn_16_4', 16, 4)
wrn_28_2 = _wrn('wrn_28_2', 28, 2)  # OFD's CIFAR-100 settings (clovaai/overhaul-distillation)
wrn_28_4 = _wrn('wrn_28_4', 28, 4)
wrn_40_1 = _wrn('wrn_40_1', 40, 1)
wrn_40_2 = _wrn('wrn_40_2', 40, 2)
wrn_40_4 = _wrn('wrn_40_4', 40, 4)
