"""A small, deterministic, learnable stand-in for CIFAR, generated in memory.

Each class has a smooth random colour pattern; a sample is its class pattern, shifted by a few
pixels, with random contrast and pixel noise. Networks learn it in a few epochs, so the whole
pipeline can be exercised anywhere without a download.
"""
import numpy as np

from .base import ArrayDataset

NUM_CLASSES = 10
TRAIN_SIZE = 5000
TEST_SIZE = 1000
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
SHARED_PART = 0.6
NOISE = 0.25


def _class_patterns(rng, num_classes, size=32, waves=3):
    y, x = np.mgrid[0:size, 0:size] / size
    patterns = np.zeros((num_classes, size, size, 3))
    for c in range(num_classes):
        for ch in range(3):
            for _ in range(waves):
                fy, fx = rng.uniform(0.5, 3.0, size=2)
                phase = rng.uniform(0, 2 * np.pi)
                patterns[c, :, :, ch] += np.sin(2 * np.pi * (fy * y + fx * x) + phase)
    return patterns / waves


def make_synthetic(num_samples, num_classes=NUM_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    # Classes share most of their pattern, so telling them apart takes more than colour.
    shared = _class_patterns(np.random.default_rng(4321), 1)
    patterns = SHARED_PART * shared + (1 - SHARED_PART) * _class_patterns(
        np.random.default_rng(1234), num_classes)
    labels = rng.integers(0, num_classes, size=num_samples)
    shifts = rng.integers(-4, 5, size=(num_samples, 2))
    contrast = rng.uniform(0.6, 1.0, size=(num_samples, 1, 1, 1))
    images = np.stack([np.roll(patterns[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts)])
    images = 0.5 + 0.35 * contrast * images + rng.normal(0, NOISE, size=images.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels


def synthetic_splits(root=None, splits=('train', 'test')):
    sizes = {'train': (TRAIN_SIZE, 0), 'test': (TEST_SIZE, 1)}
    return [ArrayDataset(*make_synthetic(sizes[s][0], seed=sizes[s][1])) for s in splits]
