"""OFA-KD (Hao et al., "One-for-All: Bridge the Gap Between Heterogeneous Architectures in
Knowledge Distillation", NeurIPS 2023; Hao840/OFAKD): each distilled stage of the student is
projected into the logit space by a small branch of its own, and every branch and the
student's own logits learn the teacher's prediction through the target-enhanced loss
``ofa_loss``. Only the teacher's logits are read, so any teacher serves any student.

Branches: for a student of maps, (4 - s) ``SepConv`` blocks (the last to D = max of the two
embedding sizes) or, at the last stage, a 1x1 conv to D, then pooling and a linear layer; for a
student of tokens (ViT, DeiT, MLP-Mixer), ``PatchMerging`` down to a 7x7 grid, max(4 - s, 1)
transformer blocks, the class token (or the tokens' mean) and a linear layer. The student's last
min(n, 4) stages are OFA's stages, numbered so that its last is 4."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import positive_float
from .base import About, EMBEDDING, LOGITS, STAGES, TOKENS, Distiller, Needs, register_method
from .options import Option


def ofa_loss(logits_student, logits_teacher, target_mask, eps, temperature=1.):
    """The target-enhanced loss: ``-sum_c [(p_t + m)^eps - m] log p_s`` averaged over the batch
    (``m`` the one-hot target; eps 1 is the soft cross-entropy)."""
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    weight = (pred_teacher + target_mask) ** eps - target_mask
    return (-weight * torch.log(pred_student)).sum(-1).mean()


class SepConv(nn.Module):
    """Depthwise 3x3 (stride 2) and pointwise convs, BN, ReLU, then depthwise 3x3 and pointwise
    to ``channel_out``, BN, ReLU: halves the map."""

    def __init__(self, channel_in, channel_out, kernel_size=3, stride=2, padding=1, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(channel_in, channel_in, kernel_size, stride, padding, groups=channel_in,
                      bias=False),
            nn.Conv2d(channel_in, channel_in, 1, bias=False),
            nn.BatchNorm2d(channel_in, affine=affine),
            nn.ReLU(),
            nn.Conv2d(channel_in, channel_in, kernel_size, 1, padding, groups=channel_in,
                      bias=False),
            nn.Conv2d(channel_in, channel_out, 1, bias=False),
            nn.BatchNorm2d(channel_out, affine=affine),
            nn.ReLU())

    def forward(self, x):
        return self.op(x)


class PatchMerging(nn.Module):
    """Tokens of a ``grid`` x ``grid`` patch grid (B, grid^2, dim) -> each 2x2 neighbourhood's
    four tokens concatenated, normalised and mapped to ``out_dim``."""

    def __init__(self, grid, dim, out_dim, act_layer=nn.Identity):
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.act = act_layer()

    def forward(self, x):
        b, _, c = x.shape
        x = x.view(b, self.grid, self.grid, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      -1)
        return self.act(self.reduction(self.norm(x.view(b, -1, 4 * c))))


class PrefixKept(nn.Module):
    """``fn`` applied to the patch tokens, the first ``count`` (class) tokens kept in front."""

    def __init__(self, count, fn):
        super().__init__()
        self.count, self.fn = count, fn

    def forward(self, x):
        if not self.count:
            return self.fn(x)
        return torch.cat([x[:, :self.count], self.fn(x[:, self.count:])], 1)


class FirstTokens(nn.Module):
    """The first ``count`` tokens, flattened (the class token's features)."""

    def __init__(self, count):
        super().__init__()
        self.count = count

    def forward(self, x):
        return x[:, :self.count].flatten(1)


class TokenMean(nn.Module):
    def forward(self, x):
        return x.mean(1)


def init_weights(module):
    """The authors' initialisation of the branches (timm's truncated normal, which draws
    otherwise than torch's)."""
    from timm.layers import trunc_normal_
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def map_branch(stage, channels, width, num_classes):
    """The branch of a stage map with ``channels`` channels into ``num_classes`` logits
    (``width``: max of the two embedding sizes)."""
    if stage == 4:
        blocks = [nn.Conv2d(channels, width, 1)]
    else:
        blocks = []
        for i in range(4 - stage):
            last = i == 3 - stage
            blocks.append(SepConv(channels, width if last else channels * 2))
            channels *= 2
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


def token_branch(stage, grid, dim, embedding, prefix, num_classes):
    """The branch of a stage's tokens (``prefix`` class tokens, then ``grid`` x ``grid`` patch
    tokens of ``dim`` features) into ``num_classes`` logits (``embedding``: the student's own
    embedding size)."""
    from timm.models.vision_transformer import Block
    merges = max(int(math.log2(grid / 7)), 0)  # down to a 7x7 grid
    mergers = []
    for i in range(merges):
        mergers.append(PatchMerging(grid // 2 ** i, dim if i == 0 else embedding, embedding,
                                    nn.GELU if i == 0 or i != merges - 1 else nn.Identity))
    return nn.Sequential(
        PrefixKept(prefix, nn.Sequential(*mergers)),
        nn.Sequential(*[Block(dim=embedding, num_heads=4) for _ in range(max(4 - stage, 1))]),
        FirstTokens(prefix) if prefix else TokenMean(),
        nn.Linear(embedding, num_classes))


@register_method('ofa')
class OFA(Distiller):
    about = About('OFA-KD (Hao et al., NeurIPS 2023)',
                  "the student's stages and the teacher's logits",
                  'a branch per chosen stage into the classes')
    # CE 1 + the branches' and the logits' ofa_loss (the authors' gt, kd and ofa weights 1;
    # -b weighs both OFA terms)
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}))
    logit_kl_weights = ()
    options = (Option('--ofa_eps', type=positive_float, nargs='+', default=[1.0],
                      help='OFA: the target-enhancing power, one for all, or one per stage '
                           'and one for the logits (the authors: 1 on CIFAR-100, 1.5 on '
                           'ImageNet)'),
               Option('--ofa_temperature', type=positive_float, default=1.0,
                      help='OFA: softmax temperature of its loss'),
               Option('--ofa_stages', type=int, nargs='+', default=None,
                      choices=[1, 2, 3, 4], help='OFA: the stages with a branch (default: all; '
                                                 '4 is the last, a student of three stages '
                                                 'has 2, 3 and 4)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        tokens = getattr(student, 'token_model', False)
        self.student_reads = frozenset({STAGES, EMBEDDING} | ({TOKENS} if tokens else set()))
        o = config.options
        s, t = self.probe(config.image_size)
        stages = s.feats[1:-1][-4:]
        offered = list(range(5 - len(stages), 5))  # OFA's numbers of the student's stages
        missing = [k for k in o.ofa_stages or () if k not in offered]
        if missing:
            raise ValueError(f'--ofa_stages {" ".join(map(str, missing))}: {config.model_s} has '
                             f'{len(stages)} stages, OFA\'s {", ".join(map(str, offered))}')
        chosen = sorted(set(o.ofa_stages or offered))
        if len(o.ofa_eps) not in (1, len(chosen) + 1):
            raise ValueError(f'--ofa_eps takes one value, or one per stage and one for the '
                             f'logits ({len(chosen) + 1}); got {len(o.ofa_eps)}')
        self.eps = list(o.ofa_eps) * (len(chosen) + 1) if len(o.ofa_eps) == 1 else list(
            o.ofa_eps)
        self.temperature = o.ofa_temperature
        self.feature_index = {k: 1 + len(s.feats[1:-1]) - len(stages) + offered.index(k)
                              for k in chosen}
        embedding = s.feats[-1].shape[1]
        classes = s.logits.shape[1]
        self.projector = nn.ModuleDict()
        for k in chosen:
            feat = s.feats[self.feature_index[k]]
            if tokens:
                prefix = getattr(student, 'num_prefix_tokens', 0)
                self.projector[str(k)] = token_branch(k, student.token_grid, feat.shape[-1],
                                                      embedding, prefix, classes)
            else:
                if feat.dim() != 4:
                    raise ValueError(f'OFA\'s branches take maps or tokens; stage {k} of '
                                     f'{config.model_s} is {tuple(feat.shape[1:])}')
                self.projector[str(k)] = map_branch(k, feat.shape[1],
                                                    max(embedding, t.feats[-1].shape[1]),
                                                    classes)
        self.projector.apply(init_weights)

    def describe(self):
        count = sum(p.numel() for p in self.projector.parameters())
        return (f'stages {", ".join(self.projector)}, eps {" ".join(f"{e:g}" for e in self.eps)}'
                f', T {self.temperature:g}; branches {count:,} parameters')

    def kd_loss(self, s, t, batch):
        mask = F.one_hot(batch.target, s.logits.shape[1]).to(s.logits.dtype)
        stages = sum(ofa_loss(branch(s.feats[self.feature_index[int(k)]]), t.logits, mask, eps,
                              self.temperature)
                     for (k, branch), eps in zip(self.projector.items(), self.eps))
        return {'ofa': stages,
                'logit': ofa_loss(s.logits, t.logits, mask, self.eps[-1], self.temperature)}
