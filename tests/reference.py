"""Comparing with figures stored from another run (the authors' code, an older checkpoint).

Such figures were computed on another CPU, whose float32 kernels round differently: a value is
compared at a relative tolerance, and an entry that is near zero because large terms cancel (a
softmax gradient's sum, one of its entries) at an absolute tolerance scaled to the size of the
vector it comes from, since its noise is that of the terms, not of the result. Bit-exact
comparisons are kept for two runs of one machine.
"""
import json
import math
import os

import numpy as np
import torch

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'reference')


def reference(*methods):
    """The stored figures of ``methods`` (tests/fixtures/reference/<method>.json, each naming
    the authors' repository and commit it was computed with), in one dict."""
    figures = {}
    for method in methods:
        with open(os.path.join(FOLDER, f'{method}.json')) as f:
            figures.update({k: v for k, v in json.load(f).items() if k != '_source'})
    return figures

# Float32 noise of a sum relative to the sum of its terms' magnitudes: a few units of 2^-24
# times the number of terms (dozens here), with a wide margin.
NOISE = 1e-5


def det(*shape, phase=0.0, scale=1.0):
    """The deterministic inputs that stored figures were computed on (the authors' code got
    the same)."""
    n = math.prod(shape)
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + phase)
            * scale).float().reshape(shape)


def grad_stats(g):
    """What a gradient is compared by: its sum, its absolute sum and its first three entries."""
    return [g.sum().item(), g.abs().sum().item(), g.flatten()[:3].tolist()]


def flat(values):
    return [v for item in values for v in (item if isinstance(item, list) else [item])]


def assert_close(actual, expected, rel=1e-5, abs_=1e-6, scale=0.0):
    """Elementwise ``|a - e| <= abs_ + NOISE * scale + rel * |e|``; ``scale`` is the size of the
    vector the entries come from (an absolute sum), for entries that may be near zero."""
    actual = np.asarray(flat(list(actual)), dtype=float)
    expected = np.asarray(flat(list(expected)), dtype=float)
    assert np.allclose(actual, expected, rtol=rel, atol=abs_ + NOISE * scale), (
        actual.tolist(), expected.tolist())


def assert_stats_close(actual, expected, rel=1e-4, scalars=0):
    """``grad_stats``-shaped lists (sum, absolute sum, entries...), after ``scalars`` values (a
    loss) compared at ``rel``: the absolute sum at ``rel``, the sum and the entries at ``rel``
    or the noise of the absolute sum, whichever is larger."""
    actual, expected = flat(actual), flat(expected)
    assert_close(actual[:scalars], expected[:scalars], rel=rel)
    assert_close(actual[scalars:], expected[scalars:], rel=rel, abs_=1e-6,
                 scale=abs(expected[scalars + 1]))


def assert_loss_and_stats_close(actual, expected, rel=1e-4):
    """A loss, then its gradient's ``grad_stats``."""
    assert_stats_close(actual, expected, rel, scalars=1)


def assert_same_trajectory(resumed, straight, start, rel=1e-2):
    """Two runs from the same ``start`` state (name -> tensor) ended at ``resumed`` and
    ``straight``: their changes from ``start`` agree within ``rel`` of the straight run's change
    (L2 over every float tensor). Float noise across CPUs moves a short run's change by about
    1e-4 of itself; a resume that loses state (optimizer momenta, a memory bank) by over 1e-1."""
    assert resumed.keys() == straight.keys()
    keys = [k for k in straight if straight[k].is_floating_point()]
    gap = sum(((resumed[k].double() - straight[k].double()) ** 2).sum() for k in keys)
    change = sum(((straight[k].double() - start[k].double()) ** 2).sum() for k in keys)
    assert change > 0, 'the straight run did not move'
    assert torch.sqrt(gap) <= rel * torch.sqrt(change), (torch.sqrt(gap / change).item(), keys)


def value_and_grad_stats(fn, x):
    """``[fn(x), *grad_stats of its gradient]``."""
    x = x.clone().requires_grad_()
    value = fn(x)
    g, = torch.autograd.grad(value, x)
    return [value.item()] + grad_stats(g)


def assert_matches(got, expected, scalars=1, rel=1e-5):
    """``scalars`` values, then a gradient's ``grad_stats``, against the authors' figures."""
    assert_stats_close(got, expected, rel, scalars)


def value_and_grad(loss_fn):
    """``[loss, *grad_stats]`` of ``loss_fn(student, teacher)`` on the stored inputs (the
    student's logits ``det(6, 10, phase=0.5) * 3``, the teacher's ``det(6, 10, phase=2.0) * 4``,
    as the authors' code was given them)."""
    s = (det(6, 10, phase=0.5) * 3).requires_grad_()
    t = det(6, 10, phase=2.0) * 4
    loss = loss_fn(s, t)
    loss.backward()
    return [loss.item()] + grad_stats(s.grad)
