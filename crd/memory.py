"""CRD's memory bank: one row per training sample for student and teacher embeddings."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import distributed


class ContrastMemory(nn.Module):
    """Scores each anchor against memory rows of the other network, then moves the rows of the
    batch's samples towards the new embeddings (momentum, then L2 normalisation).

    ``params`` holds ``[K, T, Z_s, Z_t, momentum]``; the normalisers Z are set from the first
    batch (mean score times N) and then stay fixed. In a multi-process run every process applies
    the whole global batch's update, so the memories stay identical everywhere."""

    def __init__(self, inputSize, outputSize, K, T=0.07, momentum=0.5):
        super().__init__()
        self.nLem = outputSize
        self.K = K
        self.register_buffer('params', torch.tensor([K, T, -1, -1, momentum], dtype=torch.float))
        stdv = 1.0 / math.sqrt(inputSize / 3)
        self.register_buffer('memory_v1', torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))
        self.register_buffer('memory_v2', torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))

    def forward(self, v1, v2, y, idx=None):
        K, T, momentum = int(self.params[0].item()), self.params[1].item(), self.params[4].item()
        batch_size = v1.shape[0]
        if idx is None:  # uniform negatives, the positive first
            idx = torch.randint(0, self.nLem, (batch_size, K + 1), device=v1.device)
            idx[:, 0] = y
        idx = idx.long()
        # v1 (student) is scored against the teacher memory, v2 (teacher) against the student's.
        out_v1 = torch.exp(self._scores(self.memory_v2, v1, idx) / T)
        out_v2 = torch.exp(self._scores(self.memory_v1, v2, idx) / T)

        if self.params[2].item() < 0:
            means = torch.stack([out_v1.mean(), out_v2.mean()]).detach()
            means = distributed.all_reduce_sum(means) / distributed.rank_and_world()[1]
            self.params[2:4] = means * self.nLem
        out_v1 = out_v1 / self.params[2].item()
        out_v2 = out_v2 / self.params[3].item()

        with torch.no_grad():
            y = distributed.all_gather_rows(y.long())
            for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
                v = distributed.all_gather_rows(v.detach())
                rows = memory[y] * momentum + v * (1 - momentum)
                memory[y] = F.normalize(rows, dim=1, eps=0.0)
        return out_v1, out_v2

    @staticmethod
    def _scores(memory, v, idx):
        """``<memory[idx[i, k]], v[i]>`` as a (B, K+1, 1) tensor, memory rows detached.
        When the sampled rows cover much of the memory, one product with the whole memory is
        far cheaper than gathering a (B, K+1, dim) copy of the rows."""
        memory = memory.detach()
        if idx.numel() > memory.shape[0]:
            # A copy: the product keeps it for backward, and the memory is updated in place.
            return torch.gather(v @ memory.clone().t(), 1, idx).unsqueeze(2)
        rows = memory[idx.reshape(-1)].reshape(*idx.shape, -1)
        return torch.bmm(rows, v.unsqueeze(2))
