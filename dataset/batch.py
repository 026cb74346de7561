"""What a training batch carries, and what a method can ask its batches to carry.

Every loader yields ``Batch`` tuples: the normalised images, the targets and the sample indices,
plus what the method's ``BatchSpec`` asks for (CRD's contrast indices, several views of each
image) and what a teacher plug-in adds (CKD's coded teacher view).
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


class Batch(NamedTuple):
    image: torch.Tensor  # (B, C, H, W), or (B, V, C, H, W) with views
    target: torch.Tensor
    index: Optional[torch.Tensor] = None  # each sample's position in the data set
    contrast_idx: Optional[torch.Tensor] = None  # CRD: (B, k + 1), the positive first
    teacher_image: Optional[torch.Tensor] = None  # the teacher's own view (CKD)

    @property
    def cls_target(self):
        """What the cross-entropy term takes: the labels (``MixedBatch``: the mixed ones)."""
        return self.target

    def to(self, device, channels_last=False):
        """On ``device`` (a no-op where it already is); ``channels_last`` for the images of
        single-view batches."""
        def move(t):
            if t is None:
                return None
            t = t.to(device, non_blocking=True)
            if channels_last and t.dim() == 4 and t.is_floating_point():
                t = t.contiguous(memory_format=torch.channels_last)
            return t
        return Batch(*(move(t) for t in self))


class MixedBatch(Batch):
    """A ``Batch`` of mixup/CutMix images: ``target`` is each mixed label's largest class (for
    the methods), ``soft_target`` (B, classes) the mixed labels the cross-entropy term takes."""

    @classmethod
    def of(cls, batch, soft_target):
        mixed = cls(*batch)
        mixed.soft_target = soft_target
        return mixed

    @property
    def cls_target(self):
        return self.soft_target

    def to(self, device, channels_last=False):
        return MixedBatch.of(super().to(device, channels_last),
                             self.soft_target.to(device, non_blocking=True))


@dataclass(frozen=True)
class ContrastSampling:
    """CRD's sampling (RepDistiller's ``InstanceSample``): each sample's positive (itself in
    mode ``exact``, a random sample of its class in mode ``relax``) and ``k`` negatives from the
    other classes, without replacement when there are enough."""
    k: int = 16384
    mode: str = 'exact'

    def __post_init__(self):
        if self.mode not in ('exact', 'relax'):
            raise ValueError(f"mode must be 'exact' or 'relax', got {self.mode!r}")

    def sampler(self, targets):
        return ContrastSampler(self, targets)


class ContrastSampler:
    """``ContrastSampling`` over one data set's targets (a tensor on the training device)."""

    def __init__(self, spec, targets):
        self.k, self.mode = spec.k, spec.mode
        self.targets, device = targets, targets.device
        cpu = targets.cpu()
        classes = int(cpu.max()) + 1
        negatives = [torch.nonzero(cpu != c).flatten() for c in range(classes)]
        self.neg_count = torch.tensor([len(n) for n in negatives], device=device)
        longest = int(self.neg_count.max())
        self.neg_table = torch.stack([F.pad(n, (0, longest - len(n))) for n in negatives]).to(
            device)
        self.positives = [torch.nonzero(cpu == c).flatten().to(device) for c in range(classes)]

    def __call__(self, index, draws):
        """``(B, k+1)`` for the samples ``index``, drawn from ``draws``."""
        device = index.device
        target = self.targets[index]
        count = self.neg_count[target]
        if self.k <= int(count.min()):
            keys = torch.rand(len(index), self.neg_table.shape[1], generator=draws).to(device)
            slots = torch.arange(self.neg_table.shape[1], device=device)
            keys[slots[None, :] >= count[:, None]] = -1.0  # padding is never drawn
            picks = keys.topk(self.k, dim=1).indices
        else:
            draws_ = torch.rand(len(index), self.k, generator=draws).to(device)
            picks = (draws_ * count[:, None]).long()
        negatives = self.neg_table[target[:, None], picks]
        if self.mode == 'exact':
            positive = index
        else:
            positive = torch.stack([
                self.positives[t][torch.randint(len(self.positives[t]), (1,),
                                                generator=draws).item()]
                for t in target.tolist()])
        return torch.cat([positive[:, None], negatives], dim=1)


class Views:
    """How each training image becomes several views: batches of ``(B, count, C, H, W)``.
    ``joint``: the networks see all views of a batch in one pass (``B * count`` images, image
    by image); otherwise one pass per view (each with its own BatchNorm statistics).
    A subclass makes its views either from whole batches on the training device
    (``make(images, draws)``; both loaders), or, when ``per_image``, one image at a time in the
    DataLoader workers (``make_one(image, rng)``, for PIL work; the classic loader only)."""
    count = 2
    joint = False
    per_image = False
    name = 'views'  # in messages: "builds its own <name> of each image"

    def make(self, images, draws):
        """uint8 ``(B, C, H, W)`` on the training device -> ``(B, count, C, H, W)`` (0-255)."""
        raise NotImplementedError

    def make_one(self, image, rng):
        """One uint8 ``(H, W, C)`` array -> ``(count, H, W, C)`` uint8 (per-image views)."""
        raise NotImplementedError


@dataclass(frozen=True)
class BatchSpec:
    """What a method's training batches carry besides images, targets and sample indices."""
    contrast: Optional[ContrastSampling] = None
    views: Optional[Views] = None
