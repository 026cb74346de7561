"""TeKAP (Hossain et al., "Single Teacher, Multiple Perspectives: Teacher Knowledge Augmentation
for Enhanced Knowledge Distillation", ICLR 2025; mdimtiazh/TeKAP): the teacher's logits are
augmented into three synthetic teachers by Gaussian noise, and the student learns from all of
them. At the logit level (TeKAP-L) it is the ``-a`` term of any method, as the authors' loop
uses it (``--add tekap``); ``--distill tekap`` is KD with it, the authors' ``--distill kd
-r 0.1 -a 0.9 -b 0``."""
import torch.nn as nn

from . import KD  # noqa: F401 (registers kd first)
from .base import About, register_preset
from .modifiers import tekap_kl


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
