"""Distillation losses under RepDistiller's class names, and the method registry."""
from .base import METHODS, Distiller, DistillKL, get_method, register_method
from . import KD  # noqa: F401  (registers the method)
