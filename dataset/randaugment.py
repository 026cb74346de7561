"""FixMatch's RandAugment as MLLD's authors build their strong view (Jin-Ying/Multi-Level-Logit-
Distillation, ``mdistiller/dataset/cifar100.py``): two operations drawn with replacement from 14,
each at a magnitude drawn uniformly from its range (the ``m`` of RandAugment(2, 10) is unused),
then a Cutout of a side drawn from [0, 0.5] of the image, filled with (125, 123, 114). PIL
operations on one image at a time; ``rng`` is a numpy random state (``np.random`` in a
DataLoader worker, seeded per worker)."""
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

CUTOUT_FILL = (125, 123, 114)


def _affine(img, coefficients):
    return img.transform(img.size, Image.AFFINE, coefficients)


# (operation, low, high): the magnitude is uniform in [low, high).
OPERATIONS = (
    (lambda img, v: ImageOps.autocontrast(img), 0, 1),
    (lambda img, v: ImageEnhance.Brightness(img).enhance(v), 0.05, 0.95),
    (lambda img, v: ImageEnhance.Color(img).enhance(v), 0.05, 0.95),
    (lambda img, v: ImageEnhance.Contrast(img).enhance(v), 0.05, 0.95),
    (lambda img, v: ImageOps.equalize(img), 0, 1),
    (lambda img, v: img, 0, 1),  # identity
    (lambda img, v: ImageOps.posterize(img, max(1, int(v))), 4, 8),
    (lambda img, v: img.rotate(v), -30, 30),
    (lambda img, v: ImageEnhance.Sharpness(img).enhance(v), 0.05, 0.95),
    (lambda img, v: _affine(img, (1, v, 0, 0, 1, 0)), -0.3, 0.3),  # shear x
    (lambda img, v: _affine(img, (1, 0, 0, v, 1, 0)), -0.3, 0.3),  # shear y
    (lambda img, v: ImageOps.solarize(img, v), 0, 256),
    (lambda img, v: _affine(img, (1, 0, v * img.size[0], 0, 1, 0)), -0.3, 0.3),  # translate x
    (lambda img, v: _affine(img, (1, 0, 0, 0, 1, v * img.size[1])), -0.3, 0.3),  # translate y
)


def cutout(img, side, rng):
    """A ``side`` x ``side`` square of ``CUTOUT_FILL`` at a uniform centre (clipped to the
    image)."""
    if side <= 0:
        return img
    w, h = img.size
    x0 = int(max(0, rng.uniform(w) - side / 2))
    y0 = int(max(0, rng.uniform(h) - side / 2))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + side), min(h, y0 + side)), CUTOUT_FILL)
    return img


def rand_augment(img, rng, count=2):
    """``count`` random operations, then Cutout (a PIL image in, a PIL image out)."""
    for choice in rng.randint(len(OPERATIONS), size=count):
        operation, low, high = OPERATIONS[choice]
        img = operation(img, low + (high - low) * rng.random_sample())
    return cutout(img, rng.random_sample() * 0.5 * img.size[0], rng)
