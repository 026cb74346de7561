"""What a run records: a console line, TensorBoard scalars and ``metrics.jsonl`` per epoch, and
``summary.json`` at the end. Both files are replaced atomically, never appended to in place."""
import hashlib
import json
import os
import subprocess

import torch
from torch.utils.tensorboard import SummaryWriter

from core.distributed import is_main, rank_and_world
from core.files import write_text_atomic
from core.log import log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit():
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def read_metrics(path):
    """The records of a ``metrics.jsonl`` (a line that does not parse, e.g. one an older version
    left half-written, ends the list)."""
    records = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    break
    return records


def read_summary(path):
    """A ``summary.json`` as a dict, or None where it is missing or not a complete one (a run
    writing it, a damaged file)."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def wandb_run(run_dir, config):
    """A Weights & Biases run for the run folder (``--wandb``): the project is the folder's
    kind (``student_model``, ``models``, ``transfer``; ``WANDB_PROJECT`` replaces it), the name
    the folder's, and its id is derived from the folder, so a resumed run continues the same
    W&B run. ``WANDB_MODE=offline`` logs without a network (``wandb sync`` uploads later)."""
    import wandb
    folder = os.path.abspath(run_dir)
    return wandb.init(project=os.environ.get('WANDB_PROJECT', os.path.basename(
                          os.path.dirname(folder))),
                      name=os.path.basename(folder), dir=folder, config=config,
                      id=hashlib.sha256(folder.encode()).hexdigest()[:16], resume='allow')


class RunLogger:
    """Writes only in the main process of a multi-process run. ``first_epoch``: the epoch the
    run starts or resumes at; records of that epoch and later, left by an interrupted session,
    are dropped (it is trained again). ``wandb_config``: also log to Weights & Biases, with this
    configuration (the run's options)."""

    def __init__(self, run_dir, tb_dir, first_epoch=1, wandb_config=None):
        self.run_dir = run_dir
        self.enabled = is_main()
        self.writer = SummaryWriter(log_dir=tb_dir) if self.enabled else None
        self.metrics_path = os.path.join(run_dir, 'metrics.jsonl')
        self.records = [r for r in read_metrics(self.metrics_path)
                        if r.get('epoch', first_epoch) < first_epoch]
        self.wandb = (wandb_run(run_dir, wandb_config)
                      if self.enabled and wandb_config is not None else None)

    def log_epoch(self, epoch, epochs, lr, train, test, seconds, images_per_second, extra=None):
        """``extra``: what the learner reports of the epoch (``epoch_metrics``)."""
        if not self.enabled:
            return
        extra = extra or {}
        for name, value in train.items():
            self.writer.add_scalar(f'train/{name}', value, epoch)
        for name, value in test.items():
            self.writer.add_scalar(f'test/{name}', value, epoch)
        self.writer.add_scalar('lr', lr, epoch)
        for name, value in extra.items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()
        record = {'epoch': epoch, 'lr': lr,
                  **{f'train_{k}': v for k, v in train.items()},
                  **{f'test_{k}': v for k, v in test.items()},
                  **extra, 'epoch_seconds': seconds, 'images_per_second': images_per_second}
        self.records.append(record)
        write_text_atomic(self.metrics_path, ''.join(json.dumps(r) + '\n' for r in self.records))
        if self.wandb is not None:
            self.wandb.log(record, step=epoch)
        terms = ' '.join(f'{k[5:]} {v:.4f}' for k, v in train.items() if k.startswith('loss_'))
        others = ''.join(f' | {k[:-5]} acc@1 {v:.2f}' for k, v in test.items()
                         if k.endswith('_top1'))  # other networks evaluated (DML's peer)
        learner = ''.join(f' | {name} {value:.4g}' for name, value in extra.items())
        log.info(f'epoch {epoch:>3}/{epochs} | lr {lr:.4g}{learner} | train loss '
                 f'{train["loss"]:.4f} ({terms}) acc {train["top1"]:.2f} | test loss '
                 f'{test["loss"]:.4f} acc@1 {test["top1"]:.2f} acc@5 {test["top5"]:.2f}{others} '
                 f'| {seconds:.1f}s {images_per_second:.0f} img/s')

    def write_summary(self, record, best_acc, last_acc, wall_seconds, device, models, **extra):
        """``record``: the run's options as it ran them (``RunFolder.record``); ``models``:
        role -> (name, model), e.g. {'student': ..., 'teacher': ...}."""
        if not self.enabled:
            return
        summary = {'args': record, **extra,
                   **{role: name for role, (name, _) in models.items()},
                   **{f'{role}_params': count_parameters(m) for role, (_, m) in models.items()},
                    'best_acc': best_acc, 'last_acc': last_acc, 'wall_seconds': wall_seconds,
                   'device': device_name(device), 'processes': rank_and_world()[1],
                   'git_commit': git_commit()}
        write_text_atomic(os.path.join(self.run_dir, 'summary.json'),
                          json.dumps(summary, indent=2, default=str))
        if self.wandb is not None:
            self.wandb.summary.update({'best_acc': best_acc, 'last_acc': last_acc,
                                       'wall_seconds': wall_seconds})

    def close(self):
        if self.enabled:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
