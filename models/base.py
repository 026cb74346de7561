"""The feature contract every model in the registry follows.

``model(x)`` returns logits. ``model(x, is_feat=True)`` returns ``(feats, logits)`` where
``feats = [stem, stage_1, ..., stage_K, embedding]``; with ``preact=True`` the stage outputs are
taken before their final ReLU where the architecture has one. Methods rely on this contract only,
so no method ever special-cases a model.

The head contract: ``feats[-2]`` keeps RepDistiller's meaning (the last stage's output), which
is not always the map the classifier pools (WRN applies BN and ReLU after it; MobileNetV2 and
ShuffleV2 a 1x1 conv, BN and ReLU). ``model(x, with_head_map=True)`` returns
``(feats, logits, head_map)`` with the map the classifier pools, and ``model.head(head_map)``
gives the logits from such a map (pool, flatten, classifier), for methods that push a map
through a classifier (SimKD, SRD).

The stage contract (FCFD's, Liu et al., ICLR 2023; the splits of its authors' CIFAR models): the
network as ``num_stages`` stages run one after another, ``x = model.stage_forward(k, x)`` for
k = 0 .. num_stages - 1, then ``model.forward_classifier(x)`` gives the logits. ``stage_input``
says what a stage hands the next: ``'afterrelu'`` (its output after the ReLU), ``'beforerelu'``
(before it: the next stage begins with the ReLU) or ``'beforebn'`` (WRN: before the next block's
BN and ReLU). A model without stages (the ImageNet ones) has ``stage_input`` None.
"""
import math

import torch.nn as nn
import torch.nn.functional as F


class KDModel(nn.Module):
    classifier_name = 'fc'

    def forward(self, x, is_feat=False, preact=False, with_head_map=False):
        maps, head_map = self.forward_maps(x, preact)
        embedding = self.pool_head_map(head_map)
        logits = getattr(self, self.classifier_name)(embedding)
        if with_head_map:
            return maps + [embedding], logits, head_map
        return (maps + [embedding], logits) if is_feat else logits

    def forward_maps(self, x, preact):
        """Return ``([stem, stage_1, ..., stage_K], head_map)``: the feature maps of the
        contract and the map the classifier pools."""
        raise NotImplementedError

    def pool_head_map(self, head_map):
        """The embedding (B x D) the classifier takes: global average pooling by default."""
        return F.adaptive_avg_pool2d(head_map, 1).flatten(1)

    def head(self, head_map):
        """Logits of a map shaped like the one the classifier pools."""
        return getattr(self, self.classifier_name)(self.pool_head_map(head_map))

    def get_classifier(self):
        """The final linear layer (methods such as SimKD reuse the teacher's)."""
        layer = getattr(self, self.classifier_name)
        return layer[-1] if isinstance(layer, nn.Sequential) else layer

    stage_input = None
    num_stages = 0

    def stage_forward(self, stage, x):
        raise NotImplementedError(f'{type(self).__name__} is not split into stages')

    def forward_classifier(self, x):
        """The logits of the last stage's output: its ReLU, then the head."""
        return self.head(F.relu(x))

    def get_feat_modules(self):
        raise NotImplementedError

    def get_bn_before_relu(self):
        raise NotImplementedError(f'{type(self).__name__} has no BN-before-ReLU list')


def global_avg_pool(head_map):
    """The mean of each channel over the whole map (B x C): at CIFAR's 32x32 inputs the same
    fixed-size pooling as RepDistiller's models, and any other input size works too."""
    return F.avg_pool2d(head_map, head_map.shape[-2:]).flatten(1)


def run_stages(x, stages, preact):
    """Run ``stages`` in turn; each returns ``(out, pre_relu)``. Collect one feature per stage."""
    feats = []
    for stage in stages:
        x, pre = stage(x)
        feats.append(pre if preact else x)
    return x, feats


def init_kaiming_bn(model):
    """ResNet initialisation: He-normal (fan-out) convs, BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def last_bn(block):
    """The BN whose output feeds a residual block's final ReLU."""
    return block.bn3 if hasattr(block, 'bn3') else block.bn2


def init_he_conv_unit_bn(model):
    """The Wide ResNet / PyramidNet initialisation: He-normal (fan-out) convs, BN weight 1 and
    bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_he_conv_small_linear(model):
    """RepDistiller's VGG/MobileNetV2 initialisation: He-normal convs, N(0, 0.01) linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class ShuffleBlock(nn.Module):
    """Channel shuffle: interleave the channels of ``groups`` equal groups."""

    def __init__(self, groups=2):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleStages(KDModel):
    """What ShuffleNet v1 and v2 share: a conv-BN-ReLU stem, three stages and a 4x4 pool."""

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def stem_and_stages(self, x, preact):
        """``([stem, stage 1, 2, 3], the last stage's output)``."""
        stem = F.relu(self.bn1(self.conv1(x)))
        out, stages = run_stages(stem, [self.layer1, self.layer2, self.layer3], preact)
        return [stem, *stages], out

    def pool_head_map(self, head_map):
        return global_avg_pool(head_map)
