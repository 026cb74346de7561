"""Where the models register: ``register_model(name)`` beside each definition, with what the
recipes need to know of it, instead of hand-kept dicts."""
from dataclasses import dataclass
from typing import Callable

FAMILIES = ('cifar', 'imagenet', 'tinyimagenet')


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable  # build(num_classes=...) -> the model
    family: str  # the data sets it is built for (FAMILIES)
    small_lr: bool  # as a student, trained at lr 0.01 (RepDistiller's and SimKD's scripts)


REGISTRY = {family: {} for family in FAMILIES}


def register_model(name, build=None, family='cifar', small_lr=False):
    """Register ``build`` as ``name`` of ``family``; without ``build``, a decorator."""
    def add(build):
        assert name not in REGISTRY[family], f'model {name} registered twice for {family}'
        REGISTRY[family][name] = ModelEntry(name, build, family, small_lr)
        return build
    return add if build is None else add(build)


def builders(family):
    """``{name: build}`` of ``family``'s models, in the order they registered."""
    return {name: entry.build for name, entry in REGISTRY[family].items()}
