"""TeKAP (Hossain et al., "Single Teacher, Multiple Perspectives: Teacher Knowledge Augmentation
for Enhanced Knowledge Distillation", ICLR 2025; mdimtiazh/TeKAP): the teacher's logits are
augmented into three synthetic teachers by Gaussian noise, and the student learns from all of
them. At the logit level (TeKAP-L) it is the ``-a`` term of any method, as the authors' loop
uses it (``--add tekap``); ``--distill tekap`` is KD with it, the authors' ``--distill kd
-r 0.1 -a 0.9 -b 0``. At the feature level (TeKAP-F, ``--distill tekap_crd``) CRD also contrasts
the student with one noisy copy of the teacher's feature, through a second memory call; its
``-a`` term is TeKAP-L (``-a 1``: the authors' TeKAP F+L)."""
import torch
import torch.nn as nn

import crd
from . import KD  # noqa: F401 (registers kd first)
from .base import About, register_method, register_preset
from .CRD import CRD
from .modifiers import TEKAP, TEKAP_NOISE, tekap_kl

FEATURE_NOISE_STD = 0.1  # of the noise TeKAP-F mixes into the teacher's feature (x TEKAP_NOISE)


class DistillKL(nn.Module):
    """The authors' TeKAP-L module (exported as ``TeKAPDistillKL``, the package's ``DistillKL``
    being Hinton's): ``forward(y_s, y_t, target)``, ``target`` unused; the noise is drawn first
    thing in the call."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t, target=None):
        return tekap_kl(y_s, y_t, self.T)


TeKAPDistillKL = DistillKL

register_preset('tekap', 'kd', about=About('TeKAP-L (Hossain et al., ICLR 2025): KD with three '
                                           'noisy teachers (= `kd` `--add tekap`)', 'logits'),
                add='tekap')


class CRDLoss(crd.CRDLoss):
    """The authors' TeKAP-F loss (exported as ``TeKAPCRDLoss``): ``forward(f_s, f_t, idx,
    contrast_idx=None)``. The noisy teacher feature ``0.9 f_t + 0.1 (0.1 e)`` is drawn first
    thing in the call; it is scored in a second memory call, against the memories the first
    call has already moved, and moves them again (the student's with the same embedding). The
    loss is both calls' NCE terms, the student's of the first call counted twice."""

    def forward(self, f_s, f_t, idx, contrast_idx=None):
        noise = torch.randn_like(f_t) * FEATURE_NOISE_STD
        noisy = (1 - TEKAP_NOISE) * f_t + TEKAP_NOISE * noise
        e_s, e_t, e_noisy = self.embed_s(f_s), self.embed_t(f_t), self.embed_t(noisy)
        out_s, out_t = self.contrast(e_s, e_t, idx, contrast_idx)
        _, out_noisy = self.contrast(e_s, e_noisy, idx, contrast_idx)
        student = self.criterion_s(out_s)
        return 2 * student + self.criterion_t(out_t) + self.criterion_t(out_noisy)


TeKAPCRDLoss = CRDLoss


@register_method('tekap_crd')
class TeKAPCRD(CRD):
    about = About('TeKAP-F (Hossain et al., ICLR 2025): CRD with a noisy teacher; its -a term '
                  'TeKAP-L', 'embeddings + sample indices', '2 embeddings, memory bank')
    a_term_is_kd = False  # its -a term is TeKAP-L, as the authors' loop has it
    criterion = CRDLoss

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        if self.alpha:  # at -a 0 its noisy teachers would be drawn and weighted by 0
            self.kl = self.logit_kl(config.kd_T, TEKAP)

    def describe(self):
        return (f'CRD with one noisy teacher feature (noise std '
                f'{TEKAP_NOISE * FEATURE_NOISE_STD:g}); -a term: {self.kl.describe()}')
