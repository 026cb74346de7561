"""Training-speed benchmark: the classic path (RepDistiller's loop: DataLoader workers, PIL
augmentation, fp32) against the fast path (device-resident data, batched augmentation, and the
speed flags given), for a teacher/student pair and methods.

    python scripts/benchmark.py --teacher resnet56 --student resnet20 --methods kd,crd
    python scripts/benchmark.py --teacher resnet32x4 --student resnet8x4 --amp bf16 --channels_last
    python scripts/benchmark.py --teacher timm:vit_tiny_patch16_224 --student resnet8 --cache 20

Each configuration runs in its own process through the same training step as train_student.py
(random weights and a zero learning rate, so values stay finite; the work per step is the same),
on synthetic CIFAR-sized data: ``--warmup``
steps, then ``--steps`` timed steps. Reported: images/s, ms per step, the projected time of a
50,000-image CIFAR epoch, and peak memory (CUDA allocator peak, or the process's peak RSS on the
CPU). Each method's step time is also given relative to KD's. ``--end_to_end`` also times one
whole ``train_student.py`` epoch per path, process start-up and data loading included.
"""
import argparse
import dataclasses
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CIFAR_TRAIN = 50000


class Limited:
    """The first ``n`` batches of a loader, keeping the loader's generator and epoch."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n
        self.generator = loader.generator

    def set_epoch(self, epoch):
        if hasattr(self.loader, 'set_epoch'):
            self.loader.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)


def reference_loader(data, batch_size, num_workers, device):
    """RepDistiller's loop, for comparison: DataLoader workers applying torchvision's PIL crop,
    flip and normalisation image by image."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from dataset import DATASETS
    from dataset.batch import Batch
    source = DATASETS['cifar100']
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                    transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize(source.mean, source.std)])

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return transform(Image.fromarray(data.images[i])), data.targets[i], i

    def collate(items):
        images, targets, index = torch.utils.data.default_collate(items)
        return Batch(images, targets, index)
    return torch.utils.data.DataLoader(
        Items(), batch_size=batch_size, shuffle=True, num_workers=num_workers,
        collate_fn=collate, pin_memory=device.type == 'cuda',
        generator=torch.Generator().manual_seed(0))


def measure(config):
    """Train ``warmup + steps`` steps of one configuration; return its figures. The method is
    parsed and built as train_student.py builds it."""
    import numpy as np
    import torch

    from dataset import DATASETS
    from dataset.base import ArrayDataset
    from dataset.loaders import ClassicLoader, DeviceLoader
    from dataset.rounds import StoredRounds, candidate_qualities
    from dataset.synthetic import make_synthetic
    from distiller_zoo import get_method
    from distiller_zoo.sources import FrozenTeacher
    from core.accel import prepare_modules
    from helper import resolver
    from helper.optimizers import strategy_of
    from helper.distillation import build_distiller
    from helper.loops import Supervised, Trainer
    from models import get_model

    c = SimpleNamespace(**config)
    device = torch.device(c.device)
    torch.manual_seed(0)
    n_images = c.batch_size * (c.warmup + c.steps)
    images, labels = make_synthetic(n_images, num_classes=100)
    data = ArrayDataset(images, labels)
    source = DATASETS['cifar100']
    fast = c.path.startswith('fast') or c.path == 'student'  # the device-resident loader
    speed = (['--amp', c.amp] + ['--channels_last'] * c.channels_last + ['--compile'] * c.compile
             if fast else ['--sgd_impl', 'for-loop'])
    # A learning rate of almost zero: the weights (random) stay put, the work is the same.
    # a weight that the method leaves to the run (no default) is given: it costs nothing
    weight = ['-b', '1'] if get_method(c.distill).needs.weights[2] is None else []
    run_config, _ = resolver.resolve([
        '--path_t', f'{c.teacher}_vanilla/random.pth', '--model_t', c.teacher,
        '--distill', c.distill, '--model_s',
        c.student, '--batch_size', str(c.batch_size), '--nce_k', str(c.nce_k),
        '--learning_rate', '1e-30', '--seed', '0', '--num_workers', str(c.num_workers)]
        + speed + weight)
    method = get_method(run_config.distill)
    spec = method.batch_spec(run_config.method.options)
    student, teacher = get_model(c.student, 100, image_size=32), get_model(c.teacher, 100,
                                                                            image_size=32)
    rounds, teacher_source, build_seconds = None, FrozenTeacher(teacher), None
    if c.path == 'fast+ckd':  # CKD's pairs: the epoch's teacher views coded as it starts
        qualities = np.array(candidate_qualities(5))
        rng = np.random.default_rng(0)
        choices = np.stack([rng.choice(qualities, n_images), rng.integers(0, 9, n_images),
                            rng.integers(0, 9, n_images), rng.integers(0, 2, n_images)], 1)
        rounds = StoredRounds(choices[None].astype(np.int16), coded=True)
    elif c.path == 'fast+cache':  # student views; the teacher's outputs from a built store
        from helper.teacher_cache import CachedTeacher, build_store, draw_rounds
        rounds = StoredRounds(draw_rounds(1, n_images, 0))
        folder = tempfile.mkdtemp()
        started = time.perf_counter()
        build_store(teacher.to(device), images, rounds.choices, source, device,
                    run_config.training, folder, c.num_workers)
        build_seconds = time.perf_counter() - started
        teacher_source = CachedTeacher(teacher, folder, 1, 0)
    if fast and spec.views is not None and spec.views.per_image:  # made in the workers (PIL)
        loader = ClassicLoader(data, c.batch_size, device, source.mean, source.std, spec=spec,
                               num_workers=c.num_workers)
    elif fast:
        loader = DeviceLoader(data, c.batch_size, device, source.mean, source.std, spec=spec,
                              rounds=rounds, workers=c.num_workers)
    else:
        loader = reference_loader(data, c.batch_size, c.num_workers, device)
    if c.path == 'student':  # plain CE training of the student: the floor of any KD step
        learner = Supervised(student).to(device)
    else:
        method_config = dataclasses.replace(run_config.method, n_data=CIFAR_TRAIN)
        learner = build_distiller(method, student, teacher_source, method_config).to(device)
    learner.set_epoch(1)
    training = run_config.training
    prepare_modules(training, [learner], [student, teacher])
    trained = (student.parameters() if c.path == 'student'
               else learner.trainable_parameters())
    strategy = strategy_of(training)  # the step train_student.py takes (SGD unless --opt)
    optimizer = strategy.build(trained, training, device)
    trainer = Trainer(learner, None, None, training, c.student, tempfile.mkdtemp(), None, device,
                      {'seed': 0})

    def run(n_steps):
        trainer.loaders['train'] = trainer.train_loader = Limited(loader, n_steps)
        learner.train()
        trainer._run_epoch('train', 1, optimizer, trainer._train_step, 0, strategy)
        if device.type == 'cuda':
            torch.cuda.synchronize()

    run(c.warmup)  # includes worker start-up, compilation and cuDNN autotuning
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(c.steps)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    ips = c.steps * c.batch_size / seconds
    result = {'path': c.path, 'distill': c.distill, 'images_per_second': ips,
              'ms_per_step': 1000 * seconds / c.steps, 'cifar_epoch_seconds': CIFAR_TRAIN / ips,
              'peak_memory_mb': peak / 2 ** 20}
    if build_seconds is not None:  # one round of the store, over this run's images
        result['cache_round_images_per_second'] = n_images / build_seconds
    return result


def run_isolated(config):
    out = subprocess.run([sys.executable, __file__, '--_measure', json.dumps(config)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f'benchmark of {config["path"]}/{config["distill"]} failed:\n'
                         f'{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def end_to_end(args):
    """Wall time of one whole train_student.py epoch on the synthetic set, per loader."""
    from core.checkpoint import save_checkpoint
    from models import get_model
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = os.path.join(tmp, f'{args.teacher}_vanilla', 'ckpt.pth')
        os.makedirs(os.path.dirname(teacher))
        save_checkpoint({'model': get_model(args.teacher, 10).state_dict()}, teacher)
        for loader in ('classic', 'device'):
            cmd = [sys.executable, 'train_student.py', '--path_t', teacher, '--model_s',
                   args.student, '--distill', 'kd', '--dataset', 'synthetic', '--epochs', '1',
                   '--batch_size', str(args.batch_size), '--num_workers', str(args.num_workers),
                   '--loader', loader, '--save_dir', os.path.join(tmp, loader), '--seed', '0']
            start = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
            times[loader] = time.perf_counter() - start
    return times


def cache_summary(results, rounds):
    """The cached KD step against the student-only step, and the store's break-even point."""
    by = {(r['path'], r['distill']): r for r in results}
    live, cached, alone = by[('fast', 'kd')], by[('fast+cache', 'kd')], by[('student', 'kd')]
    build = CIFAR_TRAIN * rounds / cached['cache_round_images_per_second']
    saved = live['cifar_epoch_seconds'] - cached['cifar_epoch_seconds']
    return (f'\ncached KD step: {cached["ms_per_step"] / alone["ms_per_step"]:.2f}x the '
            f'student-only step, {live["ms_per_step"] / cached["ms_per_step"]:.2f}x fewer seconds than the '
            f'live-teacher KD step. Building {rounds} rounds of CIFAR ({CIFAR_TRAIN} images): '
            f'{build / 60:.0f} min at {cached["cache_round_images_per_second"]:.0f} images/s; '
            f'break-even after {build / saved:.1f} epochs' if saved > 0 else
            '\nthe cached step was not faster here')


def device_label(device):
    import torch
    if device == 'cuda':
        return torch.cuda.get_device_name(0)
    return f'CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, ' \
           f'{torch.get_num_threads()} threads'


def main(argv=None):
    from core.log import log_to_stdout
    log_to_stdout()  # the library's lines (a note on the data, say) reach the terminal
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--teacher', default='resnet56')
    parser.add_argument('--student', default='resnet20')
    parser.add_argument('--methods', default='kd',
                        help='comma-separated --distill names; the first is the main one, '
                             'every one is timed on the fast path relative to kd')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--steps', type=int, default=30, help='timed steps')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    parser.add_argument('--num_workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='DataLoader workers of the classic path')
    parser.add_argument('--nce_k', type=int, default=16384)
    parser.add_argument('--amp', choices=['off', 'bf16', 'fp16'], default='off')
    parser.add_argument('--channels_last', action='store_true')
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--device', default=None, help='cuda or cpu (default: cuda if present)')
    parser.add_argument('--ckd', action='store_true',
                        help='also time each method on the fast path with --ckd ckd (each '
                             'epoch\'s teacher views JPEG-coded on the CPU as it starts)')
    parser.add_argument('--cache', type=int, default=0, metavar='R',
                        help='also time a student-only step and each method on the fast path '
                             'from a teacher-output store, and report the cost of building R '
                             'rounds and the break-even point in epochs')
    parser.add_argument('--end_to_end', action='store_true',
                        help='also time one whole train_student.py epoch per loader')
    parser.add_argument('--json', default=os.path.join('save', 'benchmark.json'),
                        help='where to write the figures')
    parser.add_argument('--_measure', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._measure:
        print(json.dumps(measure(json.loads(args._measure))))
        return 0

    import torch
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    methods = args.methods.split(',')
    base = dict(teacher=args.teacher, student=args.student, batch_size=args.batch_size,
                steps=args.steps, warmup=args.warmup, num_workers=args.num_workers,
                nce_k=args.nce_k, amp=args.amp, channels_last=args.channels_last,
                compile=args.compile, device=device)
    results = [run_isolated({**base, 'path': 'classic', 'distill': methods[0]}),
               run_isolated({**base, 'path': 'fast', 'distill': methods[0]})]
    for name in dict.fromkeys(['kd'] + methods):  # every method on the fast path, KD first
        if not any(r['path'] == 'fast' and r['distill'] == name for r in results):
            results.append(run_isolated({**base, 'path': 'fast', 'distill': name}))
    if args.ckd:
        results += [run_isolated({**base, 'path': 'fast+ckd', 'distill': name})
                    for name in dict.fromkeys(['kd'] + methods)]
    if args.cache:
        results.append(run_isolated({**base, 'path': 'student', 'distill': 'kd'}))
        results += [run_isolated({**base, 'path': 'fast+cache', 'distill': name})
                    for name in dict.fromkeys(['kd'] + methods)]
    kd_ms = next(r['ms_per_step'] for r in results if r['path'] == 'fast' and r['distill'] == 'kd')
    for r in results:
        r['step_time_vs_kd'] = r['ms_per_step'] / kd_ms if r['path'] != 'classic' else None

    flags = ' '.join(f for f, on in (('--amp ' + args.amp, args.amp != 'off'),
                                     ('--channels_last', args.channels_last),
                                     ('--compile', args.compile)) if on) or 'fp32'
    print(f'{args.teacher} -> {args.student}, batch {args.batch_size}, {device_label(device)}; '
          f'fast path flags: {flags}\n')
    print('| path | method | images/s | ms/step | CIFAR epoch (s) | peak memory (MB) | step vs KD |')
    print('| --- | --- | ---: | ---: | ---: | ---: | ---: |')
    for r in results:
        vs = f'{r["step_time_vs_kd"]:.2f}x' if r['step_time_vs_kd'] else ''
        print(f'| {r["path"]} | {r["distill"]} | {r["images_per_second"]:.0f} | '
              f'{r["ms_per_step"]:.1f} | {r["cifar_epoch_seconds"]:.0f} | '
              f'{r["peak_memory_mb"]:.0f} | {vs} |')
    if args.cache:
        print(cache_summary(results, args.cache))
    classic, fast = results[0], results[1]
    print(f'\nfast / classic throughput ({methods[0]}): '
          f'{fast["images_per_second"] / classic["images_per_second"]:.2f}x; projected 240-epoch '
          f'CIFAR run on the fast path: {240 * fast["cifar_epoch_seconds"] / 60:.0f} min')
    report = {'device': device_label(device), 'args': vars(args), 'results': results}
    if args.end_to_end:
        report['end_to_end_seconds'] = end_to_end(args)
        e2e = report['end_to_end_seconds']
        print(f'one whole train_student.py epoch on the synthetic set (5,000 images), process '
              f'included: classic {e2e["classic"]:.1f}s, device {e2e["device"]:.1f}s')
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'figures written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
