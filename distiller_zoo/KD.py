"""Vanilla knowledge distillation (Hinton et al., 2015): the KL term of the base recipe."""
from .base import About, LOGITS, Distiller, Needs, register_method
from .LSKD import Standardised


@register_method('kd')
class KD(Distiller):
    about = About('KD (Hinton et al.)', 'logits')
    needs = Needs(weights=(0.1, 0.9, 0.0), teacher_reads=frozenset({LOGITS}),
                    lskd=Standardised('kd'))
