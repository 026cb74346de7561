"""Contrastive representation distillation (CRD): memory bank and NCE loss."""
from .criterion import ContrastLoss, CRDLoss
from .memory import ContrastMemory

__all__ = ['CRDLoss', 'ContrastLoss', 'ContrastMemory']
