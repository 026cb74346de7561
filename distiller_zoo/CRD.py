"""Contrastive Representation Distillation (Tian et al., ICLR 2020); the loss lives in ``crd/``.
Batches carry each sample's index and its contrast indices (``--nce_k`` negatives)."""
from types import SimpleNamespace

from crd import CRDLoss
from dataset.batch import BatchSpec, ContrastSampling
from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method
from .options import FEAT_DIM, MODE, NCE_K, NCE_M, NCE_T


@register_method('crd')
class CRD(Distiller):
    about = About('CRD (CRD+KD: `-a 1`)',
                  'embeddings + sample indices',
                  '2 embeddings, memory bank')
    needs = Needs(weights=(1.0, 0.0, 0.8), teacher_reads=frozenset({LOGITS, EMBEDDING}))
    options = (FEAT_DIM, NCE_K, MODE, NCE_T, NCE_M)
    criterion = CRDLoss  # a variant's own loss module (TeKAP-F), built from the same opt

    @classmethod
    def batch_spec(cls, options):
        return BatchSpec(contrast=ContrastSampling(options.nce_k, options.mode))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        o = config.options
        self.criterion_kd = self.criterion(SimpleNamespace(
            s_dim=feat_s[-1].shape[1], t_dim=feat_t[-1].shape[1], feat_dim=o.feat_dim,
            nce_k=o.nce_k, nce_t=o.nce_t, nce_m=o.nce_m, n_data=config.n_data))

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.feats[-1], t.feats[-1], batch.index, batch.contrast_idx)
