"""Checkpoint files: RepDistiller's layout (``{'model': state_dict, ...}``), written atomically
and read with ``torch.load(weights_only=True)`` so a downloaded file cannot run code.

A run's files are one record, ``Checkpoint``: ``write_checkpoint`` writes it in that layout and
``read_checkpoint`` reads any checkpoint back into it (this version's, older versions', the
published teachers')."""
import argparse
import dataclasses
import os
import pickle
from typing import Optional

import torch

from .files import atomic_open, disk_full
from .util import UserError

LAST = 'ckpt_last.pth'  # the full state of a run, written every epoch


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a run stands, which ``ckpt_last.pth`` adds to continue it: ``step`` of ``epoch``
    (the record's) of ``stage`` ('init' or 'train'); ``epoch_stats``: that epoch's statistics
    so far; ``identity``: what the run read besides its options (the teacher file's digest);
    ``rng``: the CPU generator's state where a one-process run stopped inside an epoch (what
    a method draws from it in its forward, MGD's masks, continues from there; absent from
    files without it)."""
    stage: str
    step: int
    last_acc: float
    elapsed: float
    scaler: dict
    epoch_stats: Optional[dict] = None
    identity: dict = dataclasses.field(default_factory=dict)
    rng: Optional[torch.Tensor] = None


# The record's own keys in the file; every other key belongs to the learner (its state).
_RECORD_KEYS = ('epoch', 'arch', 'optimizer', 'accuracy', 'best_acc', 'opt')
_PROGRESS_KEYS = tuple(f.name for f in dataclasses.fields(Progress))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file. ``learner``: the learner's state (the student under ``'model'``,
    a method's own modules and what rebuilds it); ``options``: the run's options as resolved
    (``'opt'``); ``accuracy``: the top-1 of ``epoch``; ``best_acc``: the best so far;
    ``progress``: set in ``ckpt_last.pth``, which continues a run."""
    learner: dict
    arch: Optional[str] = None
    epoch: Optional[int] = None
    optimizer: Optional[dict] = None
    accuracy: Optional[float] = None
    best_acc: Optional[float] = None
    options: Optional[dict] = None
    progress: Optional[Progress] = None

    def as_dict(self):
        """RepDistiller's layout: the learner's entries beside the record's, none missing that
        an older version of this code read."""
        record = {'epoch': self.epoch, 'arch': self.arch, 'optimizer': self.optimizer,
                  'accuracy': self.accuracy, 'best_acc': self.best_acc, 'opt': self.options}
        state = {**self.learner, **{k: v for k, v in record.items() if v is not None}}
        if self.progress is not None:
            state.update({k: v for k, v in dataclasses.asdict(self.progress).items()
                          if k != 'rng' or v is not None})
        return state

    @classmethod
    def from_dict(cls, state):
        """The record of a checkpoint dict (``load_checkpoint``'s). RepDistiller's
        ``_last.pth`` stored its options as a Namespace."""
        options = state.get('opt')
        progress = None
        if 'stage' in state:
            progress = Progress(**{k: state[k] for k in _PROGRESS_KEYS if k in state})
        return cls(learner={k: v for k, v in state.items()
                            if k not in _RECORD_KEYS + _PROGRESS_KEYS},
                   options=vars(options) if isinstance(options, argparse.Namespace) else options,
                   progress=progress, **{k: state.get(k) for k in _RECORD_KEYS if k != 'opt'})


def write_checkpoint(checkpoint, path):
    save_checkpoint(checkpoint.as_dict(), path)


def read_checkpoint(path, mmap=False):
    """The ``Checkpoint`` in ``path``; with ``mmap``, its tensors are mapped from the file, not
    read (to look at its other entries)."""
    return Checkpoint.from_dict(load_checkpoint(path, mmap))


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` through a temporary file, so a crash never leaves half a file
    and a failed write leaves no temporary file."""
    try:
        with atomic_open(path) as f:
            torch.save(state, f)
    except BaseException as e:
        if disk_full(e):
            raise UserError(f"the disk is full: could not write '{path}'; {_intact(path)}. Free "
                            f"some space, then add --resume auto to continue") from None
        raise


def _intact(path):
    """Which checkpoint survived a failed write of ``path``: its previous version, else the
    newest checkpoint beside it."""
    if os.path.isfile(path):
        return f"the previous '{path}' is intact"
    folder = os.path.dirname(os.path.abspath(path))
    others = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith('.pth')]
    if not others:
        return 'no checkpoint was written before'
    return f"'{max(others, key=os.path.getmtime)}' (the newest checkpoint) is intact"


def _kind_of_file(head):
    """What the first bytes of a file that is no PyTorch checkpoint look like."""
    text = head.lstrip().lower()
    if text.startswith((b'<!doctype html', b'<html', b'<?xml')):
        return 'an HTML page (a download that saved an error or login page?)'
    try:
        head.decode('utf-8')
        return 'a text file'
    except UnicodeDecodeError:
        return 'not a PyTorch file'


def _as_model_checkpoint(ckpt, path):
    """RepDistiller's ``{'model': state_dict, ...}``; ``{'state_dict': ...}`` (as the MLKD
    scripts save teachers) and a bare state dict are taken too. A DataParallel ``module.``
    prefix is dropped."""
    if isinstance(ckpt, dict) and 'model' not in ckpt:
        if isinstance(ckpt.get('state_dict'), dict):
            ckpt = {**ckpt, 'model': ckpt['state_dict']}
        elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            ckpt = {'model': ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
        found = (f"a dict with keys {', '.join(map(str, list(ckpt)[:6]))}"
                 if isinstance(ckpt, dict) else f'a {type(ckpt).__name__}')
        raise UserError(f"'{path}' is not a model checkpoint: expected a dict with a 'model' (or "
                        f"'state_dict') state dict, as RepDistiller writes, or a bare state "
                        f"dict; found {found}")
    state = ckpt['model']
    if state and all(isinstance(k, str) and k.startswith('module.') for k in state):
        ckpt = {**ckpt, 'model': {k[len('module.'):]: v for k, v in state.items()}}
    return ckpt


def load_checkpoint(path, mmap=False):
    if os.path.isdir(path):
        raise UserError(f"checkpoint '{path}' is a directory; give the .pth file in it")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint '{path}' does not exist")
    with open(path, 'rb') as f:
        head = f.read(64)
    # torch.save writes a zip archive; files of PyTorch before 1.6 are a pickle (0x80, protocol).
    if not (head.startswith(b'PK') or head.startswith(b'\x80')):
        raise UserError(f"cannot read checkpoint '{path}': it is {_kind_of_file(head)}, not a "
                        f"PyTorch checkpoint; download or train it again")
    try:
        # RepDistiller's *_last.pth files store the argparse Namespace of their run.
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location='cpu', weights_only=True,
                              mmap=mmap and head.startswith(b'PK'))
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' not in str(e):
            raise UserError(f"cannot read checkpoint '{path}' (the file is truncated, corrupt or "
                            f"not a PyTorch checkpoint): download or train it again") from None
        raise UserError(f"cannot read checkpoint '{path}': it stores Python objects other than "
                        f"tensors and plain values, which are not loaded since loading them can "
                        f"run code; save the state dict alone") from None
    except Exception as e:  # torch's reader fails on a damaged file in many ways
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read checkpoint '{path}' ({first_line}); the file is "
                        f"truncated, corrupt or not a PyTorch checkpoint: download or train it "
                        f"again") from None
    return _as_model_checkpoint(ckpt, path)
