"""The generic training loop. It knows what it trains only through the ``Learner`` interface
(``core.learner``): ``forward_train(batch) -> (logits, {name: weighted loss})``,
``forward_test(image)``, ``set_epoch(epoch)`` (for warm-ups), ``checkpoint_state()`` and
``load_checkpoint_state(state)``, ``init_stage()``/``forward_init(batch)`` for two-stage methods,
``extra_predictors()`` (other networks to evaluate each epoch) and ``full_batch``; it
never names a method.

Every epoch draws its randomness (data order, augmentation, CRD negatives) from generators
seeded by ``(seed, stage, epoch)``, and ``ckpt_last.pth`` holds everything else, so a resumed
run continues exactly as the uninterrupted run would have.
"""
import contextlib
import math
import os
import sys
import time
import warnings

import torch
import torch.nn as nn
from tqdm import tqdm

from torch.nn.parallel import DistributedDataParallel

from core import distributed
from core.accel import autocast, grad_scaler
from core.checkpoint import LAST, Checkpoint, Progress, write_checkpoint
from core.learner import Learner
from core.stop import STOP
from core.util import RunInterrupted, UserError, accuracy, set_seed
from core.log import log
from .optimizers import REPDISTILLER_SGD, learning_rate_schedule, parameters_of, strategy_of
from .logger import RunLogger
from .run_folder import first_epoch

CHECK_EVERY = 50  # steps between the checks that make the host wait for the device


class Supervised(Learner):
    """Plain cross-entropy training of one model (the teacher's recipe) as a learner."""

    def __init__(self, model, smoothing=0.0):
        super().__init__()
        self.model = model
        self.criterion = nn.CrossEntropyLoss(label_smoothing=smoothing)

    def forward_train(self, batch):
        logits = self.model(batch.image)
        return logits, {'cls': self.criterion(logits, batch.cls_target)}

    def forward_test(self, image):
        return self.model(image)

    def checkpoint_state(self):
        return {'model': self.model.state_dict()}

    def load_checkpoint_state(self, state):
        self.model.load_state_dict(state['model'])


class EpochStats:
    """Sums kept on the device and read once per epoch, so steps do not wait on the GPU.
    ``carried`` (from ``state()``) holds the totals of an epoch's steps before an interruption,
    so the epoch's figures cover all of its steps once it is resumed."""

    def __init__(self, carried=None, device='cpu'):
        self.sums, self.count, self.carried_count = {}, 0, 0
        if carried:
            # Every process knows the names (the reduction needs them); one holds the values.
            main = distributed.is_main()
            self.sums = {name: torch.tensor(total if main else 0.0, device=device)
                         for name, total in carried['sums'].items()}
            self.carried_count = carried['count']
            self.count = self.carried_count if main else 0

    def update(self, batch_size, **values):
        self.count += batch_size
        for name, value in values.items():
            value = value.detach().float().reshape(()) * batch_size
            self.sums[name] = self.sums[name] + value if name in self.sums else value

    def state(self):
        """Totals over every process (each takes part), to carry over an interruption."""
        names = sorted(self.sums)
        if not names:
            return None
        totals = torch.stack([self.sums[n] for n in names]
                             + [torch.tensor(float(self.count), device=self.sums[names[0]].device)])
        totals = distributed.all_reduce_sum(totals).tolist()
        return {'sums': dict(zip(names, totals[:-1])), 'count': int(totals[-1])}

    def averages(self):
        """Averages over every process of a multi-process run."""
        state = self.state()
        if state is None:
            return {}
        self.count = state['count']
        return {name: total / max(self.count, 1) for name, total in state['sums'].items()}


def _progress(loader, desc):
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (sys.stderr.isatty() and distributed.is_main()))


@torch.no_grad()
def validate(loader, predict, device, desc='test', training=None):
    """Top-1, top-5 (percent) and cross-entropy of ``predict`` on a loader. ``predict`` is a
    model (put in eval mode here) or a function whose modules the caller put in eval mode.
    ``training`` (a ``TrainingConfig``) brings the ``--amp`` and ``--channels_last``
    settings."""
    if isinstance(predict, nn.Module):
        predict.eval()
    stats = EpochStats()
    for batch in _progress(loader, desc):
        batch = batch.to(device, channels_last=training is not None and training.channels_last)
        with autocast(training, device) if training is not None else contextlib.nullcontext():
            logits = predict(batch.image).float()
        top1, top5 = accuracy(logits, batch.target, topk=(1, 5))
        stats.update(batch.target.shape[0], top1=top1, top5=top5,
                     loss=nn.functional.cross_entropy(logits, batch.target))
    return stats.averages()


class Trainer:
    """Runs the init stage (two-stage methods) and the training epochs of one run, writing
    RepDistiller's checkpoints (``<arch>_best.pth``, ``ckpt_epoch_<N>.pth`` every
    ``training.save_freq`` epochs, ``<arch>_last.pth``) and the full ``ckpt_last.pth`` every
    epoch. ``training``: the run's ``TrainingConfig``; ``record``: the run's options as
    resolved (the seed drawn, the teacher's architecture), stored in checkpoints; ``identity``: what
    ``ckpt_last.pth`` records of the run's inputs besides its options (the teacher's digest),
    checked on resume; ``init_loader``: the init stage's batches when they differ from
    training's (ordinary batches, where a plug-in changes the training ones)."""

    def __init__(self, learner, train_loader, test_loader, training, arch, run_dir, logger, device,
                 record, init_loader=None, identity=None):
        self.learner, self.training, self.arch = learner, training, arch
        self.record, self.seed = record, record['seed']
        self.identity = identity or {}
        self.train_loader, self.test_loader = train_loader, test_loader
        self.loaders = {'init': init_loader or train_loader, 'train': train_loader}
        self.run_dir, self.logger, self.device = run_dir, logger, device
        self.best_acc, self.last_acc = -math.inf, 0.0
        self.elapsed, self._started = 0.0, time.time()  # training seconds over all sessions
        self.scaler = grad_scaler(training, device)
        self.stop = STOP
        self.rank, self.world = distributed.rank_and_world()
        self.forward_train = learner.forward_train  # wrapped for DDP once the init stage is over
        self.by_hand = False  # the main stage's gradients averaged by hand (not DDP)

    def wall_seconds(self):
        return self.elapsed + time.time() - self._started

    # -- one epoch ---------------------------------------------------------------------------
    def _seed_epoch(self, stage, epoch):
        seed = (self.seed * 1_000_003 + epoch * 2 + (stage == 'init')) % 2 ** 32
        set_seed((seed + self.rank) % 2 ** 32)  # per-process streams (workers' per-image draws)
        loader = self.loaders[stage]
        if hasattr(loader, 'generator'):  # a BatchLoader (a list of batches in tests)
            loader.generator.manual_seed(seed)  # the shared order; each rank derives its draws
            loader.set_epoch(epoch)  # stored rounds change by epoch

    def _healthy(self, bad_step, terms, bad_terms, where):
        """Read the device-side non-finite flags (a GPU sync) and, with several processes,
        agree on them and on a stop request, so every process stops at the same step.
        ``bad_terms`` flags each of the loss ``terms``."""
        flags = torch.stack([(bad_step >= 0).float(),
                             torch.tensor(float(self.stop.requested), device=self.device)])
        flags = distributed.all_reduce_sum(flags).tolist()
        self.stop.requested = flags[1] > 0
        if flags[0] > 0:
            step = int(bad_step)
            flagged = bad_terms.tolist() if bad_terms is not None else []
            names = ', '.join(n for n, bad in zip(terms, flagged) if bad)
            kept = ('the last good epoch\'s checkpoint is kept'
                    if os.path.isfile(os.path.join(self.run_dir, LAST))
                    else 'no checkpoint had been written yet')
            raise UserError(f'loss became non-finite at {where}, step '
                            f'{step if step >= 0 else "?"} (term: {names or "on another process"})'
                            f'; {kept}. Lower the learning rate or the loss weights, or set '
                            f'--max_grad_norm')

    def _run_epoch(self, stage, epoch, optimizer, step_fn, start_step, strategy,
                   average_grads=False, carried=None, rng=None):
        """Train one epoch from ``start_step`` (earlier batches of a resumed epoch are drawn
        and skipped, which keeps the random streams aligned; ``carried`` holds their
        statistics). Returns ``(stats, stopped_at)``
        with ``stopped_at`` the number of steps done when a stop was requested, else None.
        ``average_grads`` averages gradients over processes (DDP does it for the main stage);
        ``rng``: the random state the stopped run had at ``start_step``.
        Non-finite losses are flagged on the device and checked every ``CHECK_EVERY`` steps and
        at the end, so steps never wait for the GPU; nothing is saved before that check."""
        self._seed_epoch(stage, epoch)
        stats = EpochStats(carried if start_step else None, self.device)
        where = f'{stage} epoch {epoch}'
        bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        bad_terms, terms = None, []
        for step, batch in enumerate(_progress(self.loaders[stage], f'{stage} {epoch}')):
            if step < start_step:
                continue
            if step == start_step and rng is not None:
                torch.set_rng_state(rng)
            if self.learner.full_batch and len(batch.target) < self.learner.full_batch:
                continue  # a module sized by the batch cannot take the short last batch
            batch = batch.to(self.device, channels_last=self.training.channels_last)
            with autocast(self.training, self.device):
                losses, metrics = step_fn(batch)
            # One flag per term, as they were at the first bad step.
            bad = ~torch.isfinite(torch.stack([v.detach().float().sum() for v in losses.values()]))
            bad &= bad_step < 0
            bad_terms = bad if bad_terms is None else bad_terms | bad
            bad_step = torch.where(bad.any(), step, bad_step)
            terms = list(losses)
            loss = sum(losses.values())
            strategy.step(self, optimizer, losses, loss, self.learner.task_terms, average_grads)
            self.scaler.update()
            stats.update(len(batch.target), loss=loss, **metrics,
                         **{f'loss_{name}': v for name, v in losses.items()})
            checkpoint_step = (step + 1) % CHECK_EVERY == 0
            if checkpoint_step:
                self._healthy(bad_step, terms, bad_terms, where)
            # One process honours a stop at once; several agree at the periodic checks.
            if self.stop.requested and (self.world == 1 or checkpoint_step):
                self._healthy(bad_step, terms, bad_terms, where)
                return stats, step + 1
        self._healthy(bad_step, terms, bad_terms, where)
        return stats, None

    def average_grads(self, optimizer, by_hand):
        """Average the gradients over processes, where DistributedDataParallel does not."""
        if by_hand and self.world > 1:
            for p in parameters_of(optimizer):
                if p.grad is not None:
                    distributed.all_reduce_sum(p.grad).div_(self.world)

    def _train_step(self, batch):
        logits, losses = self.forward_train(batch)
        top1, top5 = accuracy(logits.float(), batch.target, topk=(1, 5))
        return losses, {'top1': top1, 'top5': top5}

    def _init_step(self, batch):
        return {'init': self.learner.forward_init(batch)}, {}

    # -- checkpoints -------------------------------------------------------------------------
    def _save(self, name, epoch, optimizer=None, **record):
        """Write the learner at ``epoch`` as ``name`` (``Checkpoint``'s other fields in
        ``record``)."""
        if distributed.is_main():
            write_checkpoint(Checkpoint(self.learner.checkpoint_state(), self.arch, epoch,
                                        optimizer and optimizer.state_dict(), **record),
                             os.path.join(self.run_dir, name))

    def _save_last(self, stage, epoch, step, optimizer, epoch_stats=None, rng=None):
        """The full state: continue at ``step`` of ``epoch`` of ``stage``; ``epoch_stats`` are
        the statistics of that epoch's first ``step`` steps, ``rng`` the random state there."""
        self._save(LAST, epoch, optimizer, best_acc=self.best_acc, options=self.record,
                   progress=Progress(stage, step, self.last_acc, self.wall_seconds(),
                                     self.scaler.state_dict(), epoch_stats, self.identity, rng))

    def _interrupted(self, stage, epoch, step, optimizer, stats=None):
        # Inside an epoch, one process's random state lets forward-time draws continue.
        rng = torch.get_rng_state() if step and self.world == 1 else None
        self._save_last(stage, epoch, step, optimizer, stats.state() if stats else None, rng)
        where = f'{stage} epoch {epoch}' + (f', step {step}' if step else '')
        raise RunInterrupted(f'stopped before {where}; state saved in '
                             f'{os.path.join(self.run_dir, LAST)}')

    # -- stages ------------------------------------------------------------------------------
    def run(self, optimizer_fn, resume=None):
        """Init stage (if any), then training. ``optimizer_fn()`` builds the main optimizer
        once the init stage is over; ``resume``: the ``Checkpoint`` to continue. Returns
        ``(best top-1, last top-1)``."""
        stage = resume.progress.stage if resume else 'init'
        if resume:
            try:
                self.learner.load_checkpoint_state(resume.learner)
            except RuntimeError as e:
                raise UserError(f'the checkpoint to resume does not fit this run: '
                                f'{str(e).splitlines()[0]}') from None
            self.best_acc, self.last_acc = resume.best_acc, resume.progress.last_acc
            self.elapsed = resume.progress.elapsed
            self.scaler.load_state_dict(resume.progress.scaler)
        if stage == 'init':
            self._init_stage(resume)
            resume = None
        optimizer = optimizer_fn()
        self.strategy = strategy_of(self.training)
        # A strategy whose step DDP's one reduction per backward cannot serve (two gradients
        # taken apart) averages by hand, as the init stage does.
        self.by_hand = self.strategy.averages_by_hand
        if self.world > 1 and self.by_hand:
            distributed.broadcast_(list(self.learner.parameters()) + list(self.learner.buffers()))
        elif self.world > 1:
            ids = [self.device.index] if self.device.type == 'cuda' else None
            # Buffers (BN statistics, CRD's memory) are copied from rank 0 once, here;
            # after that each method keeps them in step, without a broadcast every step.
            if self.device.type == 'cpu':
                # CPU convolutions give 1x1 kernels' gradients strides that differ from DDP's
                # buckets (a copy of a few kilobytes per step); the warning asks nothing of us.
                warnings.filterwarnings('ignore', message='Grad strides do not match bucket')
            self.forward_train = DistributedDataParallel(self.learner, device_ids=ids,
                                                         forward_sync_buffers=False)
        if resume:
            optimizer.load_state_dict(resume.optimizer)
        return self._train(optimizer, resume)

    def _init_stage(self, resume):
        """Two-stage methods (AB, FT, FSP): train the ``init_stage()`` modules on the method's
        init loss alone for its epochs, constant lr, with an optimizer discarded afterwards; the
        student's parts outside those modules stay in eval mode. Then the method's init-only
        modules are frozen."""
        learner, training = self.learner, self.training
        stage = learner.init_stage()
        if stage is not None and stage.epochs > 0:
            lr = stage.learning_rate or training.learning_rate
            optimizer = torch.optim.SGD(stage.modules.parameters(), lr=lr,
                                        momentum=training.momentum,
                                        weight_decay=training.weight_decay)
            start_epoch, start_step = 1, 0
            if resume:
                optimizer.load_state_dict(resume.optimizer)
                start_epoch, start_step = resume.epoch, resume.progress.step
            for epoch in range(start_epoch, stage.epochs + 1):
                learner.eval()
                stage.modules.train()
                start = time.time()
                first = epoch == start_epoch
                stats, stopped_at = self._run_epoch(
                    'init', epoch, optimizer, self._init_step, start_step if first else 0,
                    REPDISTILLER_SGD, average_grads=True,
                    carried=resume.progress.epoch_stats if resume else None,
                    rng=resume.progress.rng if resume and first else None)
                if stopped_at is not None:
                    self._interrupted('init', epoch, stopped_at, optimizer, stats)
                log.info(f'init {epoch:>3}/{stage.epochs} | lr {lr:.4g} | loss '
                         f'{stats.averages().get("loss", math.nan):.4f} | '
                         f'{time.time() - start:.1f}s')
                self._save_last('init', epoch + 1, 0, optimizer)
                if self.stop.requested:
                    self._interrupted('init', epoch + 1, 0, optimizer)
        for module in getattr(learner, 'frozen', []):
            module.requires_grad_(False)

    def _train(self, optimizer, resume):
        training = self.training
        start_epoch, start_step = (resume.epoch, resume.progress.step) if resume else (1, 0)
        schedule = learning_rate_schedule(training, optimizer)
        for epoch in range(start_epoch, training.epochs + 1):
            lr = schedule(epoch)
            self.learner.set_epoch(epoch)
            self.learner.train()
            start = time.time()
            first = epoch == start_epoch
            train, stopped_at = self._run_epoch(
                'train', epoch, optimizer, self._train_step, start_step if first else 0,
                self.strategy, average_grads=self.by_hand,
                carried=resume.progress.epoch_stats if resume else None,
                rng=resume.progress.rng if resume and first else None)
            if stopped_at is not None:
                self._interrupted('train', epoch, stopped_at, optimizer, train)
            train_seconds = time.time() - start
            self.learner.eval()
            test = validate(self.test_loader, self.learner.forward_test, self.device,
                            training=training)
            for name, predict in self.learner.extra_predictors().items():
                extra = validate(self.test_loader, predict, self.device, desc=name,
                                 training=training)
                test.update({f'{name}_{k}': v for k, v in extra.items()})
            self.last_acc = test['top1']
            averages = train.averages()
            self.logger.log_epoch(epoch, training.epochs, lr, averages, test, time.time() - start,
                                  (train.count - train.carried_count) / train_seconds,
                                  self.learner.epoch_metrics())

            if test['top1'] > self.best_acc:
                self.best_acc = test['top1']
                self._save(f'{self.arch}_best.pth', epoch, optimizer, best_acc=self.best_acc)
            if epoch % training.save_freq == 0:
                self._save(f'ckpt_epoch_{epoch}.pth', epoch, optimizer, accuracy=test['top1'])
            self._save_last('train', epoch + 1, 0, optimizer)
            if self.stop.requested and epoch < training.epochs:
                self._interrupted('train', epoch + 1, 0, optimizer)
        self._save(f'{self.arch}_last.pth', training.epochs, options=self.record,
                   accuracy=self.last_acc)
        return self.best_acc, self.last_acc


def make_optimizer(params, training, device):
    """The main stage's optimizer, as ``--optimizer`` (``helper.optimizers``) builds it."""
    return strategy_of(training).build(params, training, device)


def train_and_record(learner, train_loader, test_loader, training, arch, folder, device, record,
                     parameters, models, init_loader=None, identity=None, wandb=False,
                     **summary):
    """A whole run in its claimed ``folder`` (``helper.run_folder.RunFolder``): train
    ``learner`` as ``training`` (a ``TrainingConfig``) says on ``parameters()`` (taken once the
    init stage is over), logging each epoch (to W&B too with ``wandb``), then write
    summary.json with ``models`` (role -> (name, model)) and ``summary``.
    Returns ``(best top-1, last top-1)``."""
    logger = RunLogger(folder.run_dir, folder.tb_dir, first_epoch(folder.resume),
                       wandb_config=record if wandb else None)
    trainer = Trainer(learner, train_loader, test_loader, training, arch, folder.run_dir, logger,
                      device, record, init_loader=init_loader, identity=identity)
    best, last = trainer.run(lambda: make_optimizer(parameters(), training, device),
                             folder.resume)
    logger.write_summary(record, best, last, trainer.wall_seconds(), device, models, **summary)
    logger.close()
    return best, last
