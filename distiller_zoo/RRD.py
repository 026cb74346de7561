"""RRD (Giakoumoglou & Stathaki, "Relational Representation Distillation"; first named RCD): the
student's embedding, compared with a FIFO queue of past teacher embeddings, must give the same
distribution over the queue as the teacher's embedding does, with a sharper student
temperature. The queue is a buffer, so checkpoints carry it and resume is exact."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import distributed
from core.util import UserError, positive_float
from core.log import note
from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method, with_embedding_dims
from .options import FEAT_DIM, NCE_K, Option


class RRDLoss(nn.Module):
    """The authors' name and signature: ``opt`` carries ``s_dim``, ``t_dim``, ``feat_dim``,
    ``nce_k`` (queue length), ``nce_t_s`` and ``nce_t_t``; buffers ``queue`` and
    ``queue_ptr``; ``forward(f_s, f_t[, idx, contrast_idx])``. The loss is computed, then the
    batch's teacher embeddings are enqueued (the 2024 code behind the published numbers), at
    any batch size: the pointer wraps around the queue."""

    def __init__(self, opt):
        super().__init__()
        self.nce_k, self.nce_t_s, self.nce_t_t = opt.nce_k, opt.nce_t_s, opt.nce_t_t
        self.embed_s = nn.Linear(opt.s_dim, opt.feat_dim)
        self.embed_t = nn.Linear(opt.t_dim, opt.feat_dim)
        self.register_buffer('queue', F.normalize(torch.randn(opt.nce_k, opt.feat_dim), dim=0))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    def forward(self, f_s, f_t, idx=None, contrast_idx=None):
        z_s = F.normalize(self.embed_s(f_s), dim=1)
        z_t = F.normalize(self.embed_t(f_t), dim=1)
        queue = self.queue.clone().detach()
        target = F.softmax((z_t @ queue.t()).detach() / self.nce_t_t, dim=1)
        loss = -(target * F.log_softmax(z_s @ queue.t() / self.nce_t_s, dim=1)).sum(1).mean()
        self.enqueue(z_t.detach())
        return loss

    @torch.no_grad()
    def enqueue(self, keys):
        """Write ``keys`` (every process's, so the queues stay identical) after the pointer,
        wrapping around."""
        keys = distributed.all_gather_rows(keys)
        count = len(keys)
        keys = keys[-self.nce_k:]  # a batch longer than the queue: only its last keys stay
        slots = (self.queue_ptr + count - len(keys)
                 + torch.arange(len(keys), device=keys.device)) % self.nce_k
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + count) % self.nce_k)


@register_method('rrd', 'rcd')
class RRD(Distiller):
    about = About('RRD (Giakoumoglou & Stathaki, 2024)',
                  'embeddings',
                  '2 linear embeddings, FIFO queue')
    # the authors' "-a 0 -b 1"; "-a 1 -b 1" adds KD
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS, EMBEDDING}))

    options = (FEAT_DIM, NCE_K,
               Option('--nce_t_s', type=positive_float, default=0.04,
                      help='RRD: student temperature (the sharper one)'),
               Option('--nce_t_t', type=positive_float, default=0.10,
                      help='RRD: teacher temperature'))

    @classmethod
    def check_options(cls, config):
        k = config.options.nce_k
        if k < 2:
            raise UserError(f'--distill {config.name} compares each student embedding with a '
                            f'queue of --nce_k teacher embeddings; a queue of {k} makes its loss '
                            f'exactly 0: give --nce_k 2 or more (the authors: 16384)')
        batch = config.batch_size * int(os.environ.get('WORLD_SIZE', '1'))
        if k < batch:
            note(f'RRD\'s queue (--nce_k {k}) is shorter than a (global) batch ({batch}): each '
                 f'step compares with the last {k} teacher embeddings of the step before only')

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.criterion_kd = RRDLoss(with_embedding_dims(config, feat_s, feat_t))
        # The teacher's embedding only ever meets detached targets, so it gets no gradient;
        # the authors' weight decay on it scales weight and bias alike, which the L2 norm
        # cancels. It is kept fixed (and out of the optimizer, which DDP needs).
        self.criterion_kd.embed_t.requires_grad_(False)
        self.frozen.append(self.criterion_kd.embed_t)

    def describe(self):
        c = self.criterion_kd
        return (f'queue of {c.nce_k} teacher embeddings, temperatures {c.nce_t_s:g} (student) '
                f'and {c.nce_t_t:g} (teacher)')

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.feats[-1], t.feats[-1])
