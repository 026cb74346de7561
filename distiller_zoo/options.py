"""Command-line options of the methods.

A method lists the options it reads in its ``options`` tuple; ``train_student.py --distill NAME
--help`` shows them with the common options. An option that several methods read (``--feat_dim``,
``--nce_k``) is one ``Option`` that each of them lists, so it is defined once. Options of the
other methods still parse (RepDistiller's parser took every option with every method), with a
note that the chosen method does not read them.
"""
import argparse

from core.util import non_negative_int, positive_float, positive_int, unit_interval


class Option:
    """The arguments of one ``argparse`` ``add_argument`` call; ``pair_default``: ``(source,
    column, key)`` of ``distiller_zoo/per_pair/`` that gives its value for a pair when it is
    left to None (``Distiller.resolved_options``)."""

    def __init__(self, *flags, pair_default=None, **kwargs):
        self.flags, self.kwargs, self.pair_default = flags, kwargs, pair_default

    @property
    def flag(self):
        """The name messages use: the longest ``--`` flag."""
        return max((f for f in self.flags if f.startswith('--')), key=len,
                   default=self.flags[0])

    @property
    def dest(self):
        if 'dest' in self.kwargs:
            return self.kwargs['dest']
        return self.flag[2:].replace('-', '_')

    @property
    def default(self):
        if self.kwargs.get('action') == 'store_true':
            return self.kwargs.get('default', False)
        return self.kwargs.get('default')

    def add_to(self, parser, hidden=False):
        kwargs = dict(self.kwargs, help=argparse.SUPPRESS) if hidden else self.kwargs
        parser.add_argument(*self.flags, **kwargs)


# The temperature of the -a term (KD's), read by every method.
KD_T = Option('--kd_T', type=positive_float, default=4, help='temperature of the KD loss')
# Read by several methods.
FEAT_DIM = Option('--feat_dim', type=positive_int, default=128,
                  help='embedding size (CRD, CC, ICD, RRD, MLKD)')
NCE_K = Option('--nce_k', type=positive_int, default=16384,
               help='CRD: negatives per sample; RRD: queue length')
INIT_EPOCHS = Option('--init_epochs', type=non_negative_int, default=30,
                     help='epochs of the init stage of the two-stage methods (AB, FT, FSP)')
# CRD's sampling and memory.
MODE = Option('--mode', type=str, default='exact', choices=['exact', 'relax'],
              help='CRD: positive sampling')
NCE_T = Option('--nce_t', type=positive_float, default=0.07, help='CRD: temperature')
NCE_M = Option('--nce_m', type=unit_interval, default=0.5, help='CRD: memory momentum')
HINT_LAYER = Option('--hint_layer', type=int, default=2, choices=[0, 1, 2, 3, 4],
                    help='FitNet: feature index of the hint')


def method_options(methods):
    """Each distinct option of ``methods`` (classes), in order, once."""
    seen = {}
    for method in methods:
        for option in method.options:
            seen.setdefault(option.dest, option)
    return list(seen.values())
