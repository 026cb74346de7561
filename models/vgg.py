"""CIFAR VGGs with BatchNorm (RepDistiller's ``vgg*_bn``) split into five blocks."""
import torch.nn as nn
import torch.nn.functional as F

from .base import KDModel, init_he_conv_small_linear
from .registry import register_model


class VGG(KDModel):
    classifier_name = 'classifier'

    def __init__(self, cfg, batch_norm=False, num_classes=1000):
        super().__init__()
        in_channels = [3] + [block[-1] for block in cfg[:-1]]
        for i, (block, c_in) in enumerate(zip(cfg, in_channels)):
            setattr(self, f'block{i}', self._make_layers(block, batch_norm, c_in))
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(512, num_classes)
        init_he_conv_small_linear(self)

    @staticmethod
    def _make_layers(widths, batch_norm, in_channels):
        layers = []
        for width in widths:
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            in_channels = width
        # The block's last ReLU is applied in forward, so its pre-activation stays reachable.
        return nn.Sequential(*layers[:-1])

    def get_feat_modules(self):
        return nn.ModuleList([self.block0, self.pool0, self.block1, self.pool1, self.block2,
                              self.pool2, self.block3, self.pool3, self.block4, self.pool4])

    def get_bn_before_relu(self):
        return [self.block1[-1], self.block2[-1], self.block3[-1], self.block4[-1]]

    stage_input, num_stages = 'beforerelu', 5

    def stage_forward(self, stage, x):
        if stage == 0:
            return self.block0(x)
        x = F.relu(x)
        # The 4th pooling only runs on 64x64 inputs (an 8x8 map here), as in forward_maps.
        if stage < 4 or x.shape[2] >= 8:
            x = (self.pool0, self.pool1, self.pool2, self.pool3)[stage - 1](x)
        return (self.block1, self.block2, self.block3, self.block4)[stage - 1](x)

    def forward_maps(self, x, preact):
        height = x.shape[2]
        x = F.relu(self.block0(x))
        feats = [x]
        for i, (block, pool) in enumerate([(self.block1, self.pool0), (self.block2, self.pool1),
                                           (self.block3, self.pool2), (self.block4, self.pool3)]):
            # The 4th pooling only runs on 64x64 inputs, so CIFAR stages 3 and 4 are both 4x4.
            if i < 3 or height == 64:
                x = pool(x)
            pre = block(x)
            x = F.relu(pre)
            feats.append(pre if preact else x)
        return feats, x


CFG = {
    'A': [[64], [128], [256, 256], [512, 512], [512, 512]],
    'B': [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    'D': [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    'E': [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512],
          [512, 512, 512, 512]],
    'S': [[64], [128], [256], [512], [512]],
}


def _vgg_bn(name, cfg):
    def build(**kwargs):
        return VGG(CFG[cfg], batch_norm=True, **kwargs)
    return register_model(name, build)


vgg8_bn = _vgg_bn('vgg8', 'S')
vgg11_bn = _vgg_bn('vgg11', 'A')
vgg13_bn = _vgg_bn('vgg13', 'B')
vgg16_bn = _vgg_bn('vgg16', 'D')
vgg19_bn = _vgg_bn('vgg19', 'E')
