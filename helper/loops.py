"""The generic training loop. It knows a "learner" only through ``forward_train(image, target,
*extra) -> (logits, {name: weighted loss})``, ``forward_test(image)``, ``train()`` and
``checkpoint_state()``; it never names a method."""
import math
import os
import sys
import time

import torch
import torch.nn as nn
from tqdm import tqdm

from .checkpoint import save_checkpoint
from .util import UserError, accuracy, adjust_learning_rate


class Supervised(nn.Module):
    """Plain cross-entropy training of one model (the teacher's recipe) as a learner."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.criterion = nn.CrossEntropyLoss()

    def forward_train(self, image, target, *extra):
        logits = self.model(image)
        return logits, {'cls': self.criterion(logits, target)}

    def forward_test(self, image):
        return self.model(image)

    def checkpoint_state(self):
        return {'model': self.model.state_dict()}


class EpochStats:
    """Sums kept on the device and read once per epoch, so steps do not wait on the GPU."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def update(self, batch_size, **values):
        self.count += batch_size
        for name, value in values.items():
            value = value.detach().float().reshape(()) * batch_size
            self.sums[name] = self.sums[name] + value if name in self.sums else value

    def averages(self):
        return {name: total.item() / self.count for name, total in self.sums.items()}


def _progress(loader, desc):
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                disable=not sys.stderr.isatty())


def _check_finite(losses, where):
    if not all(torch.isfinite(v).all() for v in losses.values()):
        bad = [name for name, v in losses.items() if not torch.isfinite(v).all()]
        raise UserError(f'loss became non-finite at {where} (term: {", ".join(bad)}); lower the '
                        f'learning rate or the loss weights')


def train_epoch(epoch, loader, learner, optimizer, device):
    learner.train()
    stats = EpochStats()
    for step, batch in enumerate(_progress(loader, f'epoch {epoch}')):
        image, target, *extra = [t.to(device, non_blocking=True) for t in batch]
        logits, losses = learner.forward_train(image, target, *extra)
        _check_finite(losses, f'epoch {epoch}, step {step}')
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        top1, top5 = accuracy(logits, target, topk=(1, 5))
        stats.update(target.shape[0], loss=loss, top1=top1, top5=top5,
                     **{f'loss_{name}': v for name, v in losses.items()})
    return stats.averages()


def run_init_stage(distiller, loader, opt, device):
    """The init stage of a two-stage method (AB, FT, FSP): train ``distiller.init_modules()``
    on the method's init loss alone, for ``opt.init_epochs`` epochs at a constant learning rate,
    with an optimizer that is discarded afterwards. The student's parts outside those modules
    stay in eval mode. Then the method's init-only modules are frozen."""
    modules = distiller.init_modules()
    if modules is not None and opt.init_epochs > 0:
        lr = distiller.init_learning_rate(opt)
        optimizer = torch.optim.SGD(modules.parameters(), lr=lr, momentum=opt.momentum,
                                    weight_decay=opt.weight_decay)
        for epoch in range(1, opt.init_epochs + 1):
            distiller.eval()
            modules.train()
            stats, start = EpochStats(), time.time()
            for step, batch in enumerate(_progress(loader, f'init {epoch}')):
                image = batch[0].to(device, non_blocking=True)
                loss = distiller.forward_init(image)
                _check_finite({'init': loss}, f'init epoch {epoch}, step {step}')
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                stats.update(image.shape[0], loss=loss)
            print(f'init {epoch:>3}/{opt.init_epochs} | lr {lr:.4g} | loss '
                  f'{stats.averages()["loss"]:.4f} | {time.time() - start:.1f}s', flush=True)
    for module in distiller.frozen:
        module.requires_grad_(False)


@torch.no_grad()
def validate(loader, predict, device, desc='test'):
    """Top-1, top-5 (percent) and cross-entropy of ``predict`` (a model or function) on a loader."""
    if isinstance(predict, nn.Module):
        predict.eval()
    stats = EpochStats()
    for image, target, *_ in _progress(loader, desc):
        image, target = image.to(device, non_blocking=True), target.to(device, non_blocking=True)
        logits = predict(image)
        top1, top5 = accuracy(logits, target, topk=(1, 5))
        stats.update(target.shape[0], loss=nn.functional.cross_entropy(logits, target),
                     top1=top1, top5=top5)
    return stats.averages()


def fit(learner, optimizer, train_loader, test_loader, opt, arch, run_dir, logger, device):
    """Train for ``opt.epochs`` epochs, validating after each; write RepDistiller's checkpoints:
    ``<arch>_best.pth``, ``ckpt_epoch_<N>.pth`` every ``opt.save_freq`` epochs, ``<arch>_last.pth``.
    Returns ``(best top-1, last top-1)``."""
    best_acc, test = -math.inf, {'top1': 0.0}
    for epoch in range(1, opt.epochs + 1):
        lr = adjust_learning_rate(epoch, opt, optimizer)
        start = time.time()
        train = train_epoch(epoch, train_loader, learner, optimizer, device)
        test = validate(test_loader, learner.forward_test, device)
        logger.log_epoch(epoch, opt.epochs, lr, train, test, time.time() - start)

        state = {'epoch': epoch, 'arch': arch, **learner.checkpoint_state(),
                 'optimizer': optimizer.state_dict()}
        if test['top1'] > best_acc:
            best_acc = test['top1']
            save_checkpoint({**state, 'best_acc': best_acc},
                            os.path.join(run_dir, f'{arch}_best.pth'))
        if epoch % opt.save_freq == 0:
            save_checkpoint({**state, 'accuracy': test['top1']},
                            os.path.join(run_dir, f'ckpt_epoch_{epoch}.pth'))
    save_checkpoint({'opt': vars(opt), 'epoch': opt.epochs, 'arch': arch,
                     **learner.checkpoint_state(), 'accuracy': test['top1']},
                    os.path.join(run_dir, f'{arch}_last.pth'))
    return best_acc, test['top1']
