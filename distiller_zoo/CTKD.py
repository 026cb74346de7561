"""CTKD (Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023;
zhengli97/CTKD): KD whose temperature is learned adversarially on a curriculum
(``distiller_zoo.temperature``). ``--distill ctkd`` is the authors' KD+CTKD; the ``--ctkd``
flag gives any method's ``-a`` term (and DKD) the same learned temperature."""
from .base import register_method
from .KD import KD


@register_method('ctkd')
class CTKD(KD):
    learns_temperature = True
    lskd_settings = 'ctkd'

    @classmethod
    def logit_stand_defaults(cls, tau, weight, beta, teacher, student):
        return {'alpha': weight}  # the temperature is learned: LSKD's tau does not apply
