"""CIFAR MobileNetV2 as in RepDistiller (``mobile_half`` = width 0.5, stride-2 stem)."""
import torch.nn as nn
import torch.nn.functional as F

from .base import KDModel, global_avg_pool, init_he_conv_small_linear
from .registry import register_model


def conv_bn_relu(inp, oup, kernel, stride):
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        assert stride in (1, 2)
        hidden = inp * expand_ratio
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(KDModel):
    classifier_name = 'classifier'
    # (expansion, channels, blocks, stride); expansion None = the model's T
    SETTING = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
               (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]
    FEATURE_BLOCKS = (1, 2, 4, 6)  # stage features are read after these blocks

    def __init__(self, T, feature_dim, input_size=32, width_mult=1.0, remove_avg=False):
        super().__init__()
        assert input_size % 32 == 0
        self.remove_avg = remove_avg
        input_channel = int(32 * width_mult)
        self.conv1 = conv_bn_relu(3, input_channel, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in self.SETTING:
            output_channel = int(c * width_mult)
            layers = []
            for stride in [s] + [1] * (n - 1):
                layers.append(InvertedResidual(input_channel, output_channel, stride, t or T))
                input_channel = output_channel
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = conv_bn_relu(input_channel, self.last_channel, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, feature_dim))
        init_he_conv_small_linear(self)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.blocks])

    def get_bn_before_relu(self):
        return [self.blocks[i][-1].conv[-1] for i in self.FEATURE_BLOCKS]

    stage_input, num_stages = 'beforerelu', 5
    STAGE_BLOCKS = ((0, 1), (2,), (3, 4), (5, 6))  # the blocks of stages 1-4

    def stage_forward(self, stage, x):
        if stage == 0:
            return self.conv1[:-1](x)  # before its ReLU, which stage 1 begins with
        if stage == 1:
            x = F.relu(x)
        for i in self.STAGE_BLOCKS[stage - 1]:
            x = self.blocks[i](x)
        return self.conv2[:-1](x) if stage == 4 else x  # the last one too, before its ReLU

    def forward_maps(self, x, preact):
        # Stage outputs are linear-bottleneck outputs (no ReLU), so `preact` changes nothing.
        out = self.conv1(x)
        feats = [out]
        for i, block in enumerate(self.blocks):
            out = block(out)
            if i in self.FEATURE_BLOCKS:
                feats.append(out)
        return feats, self.conv2(out)

    def pool_head_map(self, head_map):
        return head_map.flatten(1) if self.remove_avg else global_avg_pool(head_map)


@register_model('MobileNetV2', small_lr=True)
def mobile_half(num_classes):
    return MobileNetV2(T=6, feature_dim=num_classes, width_mult=0.5)


@register_model('MobileNetV2_1_0', small_lr=True)
def mobile_half_double(num_classes):
    return MobileNetV2(T=6, feature_dim=num_classes, width_mult=1.0)
