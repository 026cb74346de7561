"""Contrastive Representation Distillation (Tian et al., ICLR 2020); the loss lives in ``crd/``.
Batches carry each sample's index and its contrast indices (``--nce_k`` negatives)."""
from types import SimpleNamespace

from crd import CRDLoss
from .base import Distiller, register_method
from .options import FEAT_DIM, MODE, NCE_K, NCE_M, NCE_T


@register_method('crd')
class CRD(Distiller):
    default_weights = (1.0, 0.0, 0.8)
    data_variant = 'sample'
    teacher_outputs = ('logits', 'embedding')
    options = (FEAT_DIM, NCE_K, MODE, NCE_T, NCE_M)

    def __init__(self, student, teacher, opt, image_size=32):
        super().__init__(student, teacher, opt, image_size)
        feat_s, feat_t = self.probe_features(image_size)
        self.criterion_kd = CRDLoss(SimpleNamespace(
            s_dim=feat_s[-1].shape[1], t_dim=feat_t[-1].shape[1], feat_dim=opt.feat_dim,
            nce_k=opt.nce_k, nce_t=opt.nce_t, nce_m=opt.nce_m, n_data=opt.n_data))

    def kd_loss(self, feat_s, feat_t, logit_s, logit_t, index=None, contrast_idx=None):
        return self.criterion_kd(feat_s[-1], feat_t[-1], index, contrast_idx)
