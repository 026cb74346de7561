"""CRD's loss (Tian et al., ICLR 2020): embed both networks' penultimate features, score them
against a memory bank of the other network's embeddings, and apply an NCE loss to each side."""
import torch.nn as nn

from models.util import Embed
from .memory import ContrastMemory

NCE_EPS = 1e-7


class CRDLoss(nn.Module):
    """``opt`` needs ``s_dim``, ``t_dim``, ``feat_dim``, ``nce_k``, ``nce_t``, ``nce_m`` and
    ``n_data``. Call with ``(f_s, f_t, idx, contrast_idx=None)``."""

    def __init__(self, opt):
        super().__init__()
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)
        self.contrast = ContrastMemory(opt.feat_dim, opt.n_data, opt.nce_k, opt.nce_t, opt.nce_m)
        self.criterion_t = ContrastLoss(opt.n_data)
        self.criterion_s = ContrastLoss(opt.n_data)

    def forward(self, f_s, f_t, idx, contrast_idx=None):
        f_s, f_t = self.embed_s(f_s), self.embed_t(f_t)
        out_s, out_t = self.contrast(f_s, f_t, idx, contrast_idx)
        return self.criterion_s(out_s) + self.criterion_t(out_t)


class ContrastLoss(nn.Module):
    """NCE with one positive (column 0) and M noise samples drawn uniformly from N."""

    def __init__(self, n_data):
        super().__init__()
        self.n_data = n_data

    def forward(self, x):
        bsz, m = x.shape[0], x.shape[1] - 1
        noise = m / self.n_data  # m * P_n
        log_d1 = (x[:, 0] / (x[:, 0] + noise + NCE_EPS)).log()
        log_d0 = (noise / (x[:, 1:] + noise + NCE_EPS)).log()
        return -(log_d1.sum(0) + log_d0.reshape(-1, 1).sum(0)) / bsz
