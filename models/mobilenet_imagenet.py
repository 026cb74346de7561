"""ImageNet MobileNets: MobileNetV1 (the usual CRD/OFD student) and torchvision's MobileNetV2
and ShuffleNetV2 under the feature contract, keeping torchvision's state-dict keys."""
import torch.nn as nn
import torch.nn.functional as F
from torchvision import models as tv

from .base import KDModel
from .registry import register_model


def _conv_bn(inp, oup, stride):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


def _conv_dw(inp, oup, stride):
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True),
    )


@register_model('MobileNetV1', family='imagenet')
class MobileNetV1(KDModel):
    # model[i] indices that end the stem and the four stages (outputs 64/128/256/512/1024 ch).
    STAGE_ENDS = (2, 4, 6, 12, 14)

    def __init__(self, num_classes=1000):
        super().__init__()
        widths = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
                  (256, 512, 2)] + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
        self.model = nn.Sequential(_conv_bn(3, 32, 2), *[_conv_dw(*w) for w in widths],
                                   nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(1024, num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.model[:self.STAGE_ENDS[-1]]])

    def get_bn_before_relu(self):
        return [self.model[end - 1][-2] for end in self.STAGE_ENDS[1:]]

    def forward_maps(self, x, preact):
        feats, start = [], 0
        for i, end in enumerate(self.STAGE_ENDS):
            x = self.model[start:end - 1](x)
            last = self.model[end - 1]
            pre = last[:-1](x)  # the block without its final ReLU
            x = F.relu(pre)
            feats.append(pre if preact and i > 0 else x)
            start = end
        return feats, x

    def pool_head_map(self, head_map):
        return self.model[-1](head_map).flatten(1)


@register_model('MobileNetV2_Imagenet', family='imagenet')
class MobileNetV2Imagenet(KDModel, tv.MobileNetV2):
    classifier_name = 'classifier'
    STAGE_ENDS = (2, 4, 7, 14, 18)  # features[:end] ends the stem and each of four stages

    def __init__(self, num_classes=1000):
        tv.MobileNetV2.__init__(self, num_classes=num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.features[:-1]])

    def forward_maps(self, x, preact):
        feats, start = [], 0
        for end in self.STAGE_ENDS:
            x = self.features[start:end](x)
            feats.append(x)
            start = end
        return feats, self.features[start:](x)


@register_model('ShuffleV2_Imagenet', family='imagenet')
class ShuffleNetV2Imagenet(KDModel, tv.ShuffleNetV2):
    def __init__(self, num_classes=1000):
        tv.ShuffleNetV2.__init__(self, [4, 8, 4], [24, 116, 232, 464, 1024],
                                 num_classes=num_classes)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.maxpool, self.stage2, self.stage3, self.stage4])

    def forward_maps(self, x, preact):
        stem = self.maxpool(self.conv1(x))
        f1 = self.stage2(stem)
        f2 = self.stage3(f1)
        f3 = self.stage4(f2)
        return [stem, f1, f2, f3], self.conv5(f3)
