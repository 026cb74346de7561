"""CRD's memory bank: one row per training sample for student and teacher embeddings."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ContrastMemory(nn.Module):
    """Scores each anchor against memory rows of the other network, then moves the rows of the
    batch's samples towards the new embeddings (momentum, then L2 normalisation).

    ``params`` holds ``[K, T, Z_s, Z_t, momentum]``; the normalisers Z are set from the first
    batch (mean score times N) and then stay fixed."""

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
        weight_v2 = self.memory_v2[idx.reshape(-1)].reshape(batch_size, K + 1, -1).detach()
        out_v1 = torch.exp(torch.bmm(weight_v2, v1.unsqueeze(2)) / T)
        weight_v1 = self.memory_v1[idx.reshape(-1)].reshape(batch_size, K + 1, -1).detach()
        out_v2 = torch.exp(torch.bmm(weight_v1, v2.unsqueeze(2)) / T)

        if self.params[2].item() < 0:
            self.params[2] = out_v1.mean().item() * self.nLem
            self.params[3] = out_v2.mean().item() * self.nLem
        out_v1 = out_v1 / self.params[2].item()
        out_v2 = out_v2 / self.params[3].item()

        with torch.no_grad():
            y = y.long()
            for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
                rows = memory[y] * momentum + v.detach() * (1 - momentum)
                memory[y] = F.normalize(rows, dim=1, eps=0.0)
        return out_v1, out_v2
