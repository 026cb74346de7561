"""The contract every model in the registry follows: timm's, with RepDistiller's forward on
top of it.

timm's contract: ``forward_features(x)`` is the map the classifier pools (the head map);
``forward_head(x, pre_logits=False)`` gives the logits of such a map, or with ``pre_logits``
the pooled embedding (B x D) the final linear layer takes; ``forward_intermediates(x,
indices=None, preact=False)`` gives ``(head map, [stem, stage_1, ..., stage_K])``, the stage
outputs taken before their final ReLU with ``preact`` where the architecture has one;
``feature_info`` says the channels and the reduction of each of those maps.

RepDistiller's forward stays as it was, built on that contract: ``model(x)`` returns logits,
``model(x, is_feat=True)`` returns ``(feats, logits)`` with ``feats = [stem, stage_1, ...,
stage_K, embedding]``, and ``with_head_map=True`` adds the head map. Methods read networks
through it (``distiller_zoo.base.run_network``), a timm model's too (``models.timm_models``
gives its class the same forward on timm's contract), so no method ever special-cases a model,
and what acts on a module's call (a teacher's input renormalisation hook, ``torch.compile``)
acts on what the methods read.

``feats[-2]`` keeps RepDistiller's meaning (the last stage's output), which is not always the
head map (WRN applies BN and ReLU after it; MobileNetV2 and ShuffleV2 a 1x1 conv, BN and ReLU).

The stage contract (FCFD's, Liu et al., ICLR 2023; the splits of its authors' CIFAR models): the
network as ``num_stages`` stages run one after another, ``x = model.stage_forward(k, x)`` for
k = 0 .. num_stages - 1, then ``model.forward_classifier(x)`` gives the logits. ``stage_input``
says what a stage hands the next: ``'afterrelu'`` (its output after the ReLU), ``'beforerelu'``
(before it: the next stage begins with the ReLU) or ``'beforebn'`` (WRN: before the next block's
BN and ReLU). A model without stages (the ImageNet ones) has ``stage_input`` None.
"""
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class KDModel(nn.Module):
    classifier_name = 'fc'

    def forward(self, x, is_feat=False, preact=False, with_head_map=False):
        if not (is_feat or with_head_map):
            return self.forward_head(self.forward_features(x))
        head_map, maps = self.forward_intermediates(x, preact=preact)
        embedding = self.forward_head(head_map, pre_logits=True)
        logits = getattr(self, self.classifier_name)(embedding)
        if with_head_map:
            return maps + [embedding], logits, head_map
        return (maps + [embedding], logits) if is_feat else logits

    def forward_maps(self, x, preact):
        """Return ``([stem, stage_1, ..., stage_K], head_map)``: what each architecture
        computes, read through ``forward_intermediates`` and ``forward_features``."""
        raise NotImplementedError

    def forward_features(self, x):
        return self.forward_maps(x, False)[1]

    def forward_head(self, x, pre_logits=False):
        embedding = self.pool_head_map(x)
        return embedding if pre_logits else getattr(self, self.classifier_name)(embedding)

    def forward_intermediates(self, x, indices=None, preact=False, norm=False,
                              stop_early=False, output_fmt='NCHW', intermediates_only=False):
        """timm's: ``(head map, maps)`` of the stem and the stages (``indices``: None for all,
        n for the last n, or a list of positions); ``preact``: the stage outputs before their
        final ReLU. Every map is computed (``stop_early`` saves nothing here); the maps are
        NCHW and there is no final norm to apply."""
        if norm or output_fmt != 'NCHW':
            raise ValueError(f'{type(self).__name__} gives NCHW maps and has no final norm')
        maps, head_map = self.forward_maps(x, preact)
        maps = [maps[i] for i in feature_indices(indices, len(maps))]
        return maps if intermediates_only else (head_map, maps)

    @property
    def feature_info(self):
        """timm's: ``{'num_chs', 'reduction', 'index'}`` of each map ``forward_intermediates``
        gives (stem, then stages), measured once at CIFAR's 32x32 (RepDistiller's VGG pools
        a fourth time at 64x64 only); no statistic moves."""
        if '_feature_info' not in self.__dict__:
            weight = next(self.parameters())
            probe = torch.zeros(1, 3, 32, 32, device=weight.device, dtype=weight.dtype)
            with torch.no_grad(), evaluating(self):
                maps = self.forward_intermediates(probe, intermediates_only=True)
            self.__dict__['_feature_info'] = [
                {'num_chs': m.shape[1], 'reduction': max(1, round(32 / m.shape[-1])), 'index': i}
                for i, m in enumerate(maps)]
        return self.__dict__['_feature_info']

    def pool_head_map(self, head_map):
        """The embedding (B x D) the classifier takes: global average pooling by default."""
        return F.adaptive_avg_pool2d(head_map, 1).flatten(1)

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
        return self.forward_head(F.relu(x))

    def get_feat_modules(self):
        raise NotImplementedError

    def get_bn_before_relu(self):
        raise NotImplementedError(f'{type(self).__name__} has no BN-before-ReLU list')


def feature_indices(indices, count):
    """The positions timm's ``indices`` names among ``count`` maps."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        return list(range(count - indices, count))
    return [i % count for i in indices]


@contextlib.contextmanager
def evaluating(model):
    """``model`` and all its modules in eval mode for the block, their modes restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


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
