"""CTKD (Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023;
zhengli97/CTKD): KD whose temperature is learned adversarially on a curriculum
(``distiller_zoo.temperature``). ``--distill ctkd`` is a preset, the authors' KD+CTKD: KD with
the ``--ctkd`` modifier, which gives any method's logit KLs the same learned temperature. With
``--logit_stand`` it takes LSKD's ``ctkd`` column (the weight only: the temperature is
learned)."""
from . import KD  # noqa: F401 (registers kd first)
from .base import About, register_preset

register_preset('ctkd', 'kd', lskd_column='ctkd',
                about=About('CTKD (Li et al., AAAI 2023): KD at a learned temperature', 'logits',
                            'the temperature'),
                ctkd=True)
