"""The loader logic that does not depend on where images come from.

A ``BatchLoader`` draws each epoch's order from ``self.generator`` (a CPU generator, so that runs
are reproducible on any device), splits it across the processes of a run, and turns each chunk
of sample indices into the tuple the classic loaders yield: ``(img, target)``, plus ``index``
(variant ``instance``) and CRD's ``sample_idx`` (variant ``sample``). Subclasses say how a
chunk of indices becomes a batch of normalised images (``load``, or ``batches`` as a whole).

In a run of ``world`` processes, all draw the same permutation and process ``rank`` takes every
``world``-th sample of it (the training order is padded by wrapping, as DistributedSampler
does, so that every process makes the same number of steps); augmentation then draws from a
per-rank stream.
"""
import math

import torch
import torch.nn.functional as F


class BatchLoader:
    def __init__(self, dataset, batch_size, device, mean, std, train=True, variant='plain',
                 k=4096, mode='exact', rank=0, world=1):
        self.dataset = dataset  # the untransformed data set (len, targets)
        self.rank, self.world = rank, world
        self.batch_size, self.device, self.train = batch_size, torch.device(device), train
        self.variant, self.k, self.mode = variant, k, mode
        self.mean, self.std = mean, std
        self.scale = (1 / (255 * torch.tensor(std))).view(1, 3, 1, 1).to(device)
        self.shift = (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1).to(device)
        self.targets = torch.tensor(dataset.targets, dtype=torch.int64, device=device)
        self.generator = torch.Generator().manual_seed(0)
        self._draws = self.generator  # augmentation and CRD sampling
        if variant == 'sample':
            self._build_class_index()

    def _padded_size(self):
        n = len(self.dataset)
        return math.ceil(n / self.world) * self.world if self.train else n

    def __len__(self):
        shard = len(range(self.rank, self._padded_size(), self.world))
        return math.ceil(shard / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        order = torch.cat([order, order[:self._padded_size() - n]])
        self._draws = self.generator
        if self.world > 1:  # the permutation is shared; the augmentation is each rank's own
            stream = int(torch.randint(2 ** 62, (1,), generator=self.generator))
            self._draws = torch.Generator().manual_seed(stream + self.rank)
        return self.batches(order[self.rank::self.world], augment=self.train)

    def chunks(self, order):
        return [order[start:start + self.batch_size]
                for start in range(0, len(order), self.batch_size)]

    def batches(self, order, augment):
        for index in self.chunks(order):
            index = index.to(self.device, non_blocking=True)
            yield self.assemble(self.load(index, augment), index)

    def load(self, index, augment):
        """Normalised float images ``(B, 3, H, W)`` on ``self.device`` for ``index`` (there)."""
        raise NotImplementedError

    def normalize(self, images):
        """Float images of 0-255 values (uint8 too), normalised; fused into one pass."""
        return images.float().mul_(self.scale).add_(self.shift)

    def assemble(self, images, index):
        index = index.to(self.device, non_blocking=True)
        batch = [images, self.targets[index]]
        if self.variant in ('instance', 'sample'):
            batch.append(index)
        if self.variant == 'sample':
            batch.append(self.contrast_indices(index))
        return tuple(batch)

    # -- CRD ---------------------------------------------------------------------------------
    def _build_class_index(self):
        targets = self.targets.cpu()
        classes = int(targets.max()) + 1
        negatives = [torch.nonzero(targets != c).flatten() for c in range(classes)]
        self.neg_count = torch.tensor([len(n) for n in negatives], device=self.device)
        longest = int(self.neg_count.max())
        self.neg_table = torch.stack([F.pad(n, (0, longest - len(n))) for n in negatives]).to(
            self.device)
        self.positives = [torch.nonzero(targets == c).flatten().to(self.device)
                          for c in range(classes)]

    def contrast_indices(self, index):
        """``(B, k+1)``: the positive, then ``k`` negatives drawn from the other classes,
        without replacement when there are enough (as RepDistiller's sample data set)."""
        target = self.targets[index]
        count = self.neg_count[target]
        if self.k <= int(count.min()):
            keys = torch.rand(len(index), self.neg_table.shape[1], generator=self._draws)
            keys = keys.to(self.device)
            slots = torch.arange(self.neg_table.shape[1], device=self.device)
            keys[slots[None, :] >= count[:, None]] = -1.0  # padding is never drawn
            picks = keys.topk(self.k, dim=1).indices
        else:
            draws = torch.rand(len(index), self.k, generator=self._draws).to(self.device)
            picks = (draws * count[:, None]).long()
        negatives = self.neg_table[target[:, None], picks]
        if self.mode == 'exact':
            positive = index
        else:
            positive = torch.stack([
                self.positives[t][torch.randint(len(self.positives[t]), (1,),
                                                generator=self._draws).item()]
                for t in target.tolist()])
        return torch.cat([positive[:, None], negatives], dim=1)
