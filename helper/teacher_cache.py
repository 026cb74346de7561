"""The teacher-output cache (``--teacher_cache R``): R rounds of per-image crops and flips are
fixed (drawn from the run's seed; with ``--ckd``, CKD's rounds and coded views), the frozen
teacher runs once per round over the training set, and its logits and pooled embeddings are
stored; every epoch then trains on one round (cycled in a shuffled order, as CKD's) with the
teacher's outputs read from the store instead of a teacher forward. In the spirit of
Shen & Xing, "A Fast Knowledge Distillation Framework for Visual Recognition" (ECCV 2022).

The store lives under ``<save_dir>/teacher_cache/<key>/`` as ``.npy`` files read through memory
maps (only the rows of each batch are loaded), keyed by the teacher file's hash, the data set,
R, the seed (or CKD's flags) and the stored outputs; a later run with the same key reuses it.
"""
import json
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from dataset import DATASETS, get_dataloaders
from dataset.ckd import CLEAN, FIELDS, CodedRounds, check_codable, code_images, crop_and_flip
from dataset.device_loader import PAD
from distiller_zoo.base import NetOutput
from . import distributed
from .ckd import file_hash, load_or_prepare, teacher_outputs
from .util import UserError

OUTPUTS = ('logits', 'embedding')  # what the store holds, per round and image
IMAGES_PER_CHUNK = 2048


class TeacherStore:
    """The stored outputs, memory-mapped; ``set_epoch`` loads the epoch's round (one round,
    never the whole store) onto ``device``, and ``lookup(index)`` gives the teacher's
    ``NetOutput`` (feature list: the embedding only) without a trip to the host."""

    def __init__(self, folder, rounds, device='cpu'):
        self.arrays = {name: np.load(os.path.join(folder, f'{name}.npy'), mmap_mode='r')
                       for name in OUTPUTS}
        self.rounds, self.device, self.current = rounds, device, None

    def set_epoch(self, epoch):
        self.load_round(self.rounds.round_for_epoch(epoch))

    def load_round(self, r):
        self.current = {name: torch.from_numpy(np.ascontiguousarray(array[r])).to(self.device)
                        for name, array in self.arrays.items()}

    def lookup(self, index):
        return NetOutput([self.current['embedding'][index]], self.current['logits'][index])


def draw_rounds(count, n_images, seed):
    """``count`` rounds of uncoded crops and flips for ``n_images`` images, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    choices = np.zeros((count, n_images, len(FIELDS)), dtype=np.int16)
    choices[..., 0] = CLEAN
    choices[..., 1:3] = torch.randint(0, 2 * PAD + 1, (count, n_images, 2),
                                      generator=generator).numpy()
    choices[..., 3] = (torch.rand(count, n_images, generator=generator) < 0.5).numpy()
    return choices


@torch.no_grad()
def build_store(teacher, images, choices, source, device, opt, folder):
    """Run the teacher once per round over every image (its round's crop, flip and coding) and
    write the logits and embeddings to ``folder``."""
    rounds, n_images = choices.shape[:2]
    teacher.eval()
    arrays = None
    bar = tqdm(total=rounds * n_images, desc='teacher cache', unit='img', leave=False,
               disable=not sys.stderr.isatty())
    for r in range(rounds):
        for start in range(0, n_images, IMAGES_PER_CHUNK):
            chosen = choices[r, start:start + IMAGES_PER_CHUNK].astype(np.int64)
            chunk = code_images(images[start:start + len(chosen)], chosen[:, 0], opt.num_workers)
            views = crop_and_flip(torch.from_numpy(chunk).permute(0, 3, 1, 2),
                                  *torch.from_numpy(chosen[:, 1:3]).unbind(1),
                                  torch.from_numpy(chosen[:, 3]).bool())
            outputs = dict(zip(OUTPUTS, teacher_outputs(teacher, views, source, device, opt)))
            if arrays is None:
                arrays = {name: np.lib.format.open_memmap(
                    os.path.join(folder, f'{name}.npy'), mode='w+', dtype=np.float32,
                    shape=(rounds, n_images, value.shape[1]))
                    for name, value in outputs.items()}
            for name, value in outputs.items():
                arrays[name][r, start:start + len(value)] = value.numpy()
            bar.update(len(views))
    bar.close()
    for array in arrays.values():
        array.flush()
    return {name: array.shape for name, array in arrays.items()}


def store_folder(opt):
    if opt.path_t.startswith('torchvision:'):
        raise UserError('--teacher_cache keys its store by the teacher file; give --path_t a '
                        'file')
    rounds = (f'ckd{opt.ckd}_delta{opt.ckd_delta}_{opt.ckd_select}' if opt.ckd
              else f'seed{opt.seed}')
    key = (f'{opt.dataset}_{file_hash(opt.path_t)[:16]}_R{opt.teacher_cache}_{rounds}_'
           f'{"+".join(OUTPUTS)}')
    return os.path.join(opt.save_dir, 'teacher_cache', key)


def check_method(method, opt):
    """Only methods that read nothing of the teacher but its logits and embedding can train
    from the store."""
    missing = [need for need in method.teacher_outputs if need not in OUTPUTS]
    if missing or not method.teacher_frozen:
        needs = ', '.join(missing) if missing else 'a teacher that trains'
        raise UserError(f'--teacher_cache stores the teacher\'s logits and pooled embeddings; '
                        f'--distill {opt.distill} needs {needs}')
    if opt.ckd and opt.teacher_cache != opt.ckd_rounds:
        raise UserError(f'with --ckd the cache stores CKD\'s rounds: give --teacher_cache '
                        f'{opt.ckd_rounds} (= --ckd_rounds)')


def cached_teacher_loader(opt, teacher, method, device):
    """``(training loader of student views, TeacherStore)`` for ``--teacher_cache`` (after
    ``check_method``); the store is built (by the main process) when missing."""
    source = DATASETS[opt.dataset]
    train_set = source.splits(opt.data_folder, ('train',))[0]
    images = check_codable(train_set)
    if opt.ckd:
        choices = load_or_prepare(teacher, images, train_set.targets, source, device, opt)
    else:
        choices = draw_rounds(opt.teacher_cache, len(images), opt.seed)
    folder = store_folder(opt)
    meta = os.path.join(folder, 'meta.json')
    if distributed.is_main() and not os.path.isfile(meta):
        os.makedirs(folder, exist_ok=True)
        print(f'teacher cache: running the teacher over {len(choices)} rounds of '
              f'{len(images)} images (once; stored in {folder})', flush=True)
        teacher_rounds = choices.copy()
        if opt.ckd == 'clean':  # the control: CKD's crops and flips, the teacher on clean views
            teacher_rounds[..., 0] = CLEAN
        shapes = build_store(teacher, images, teacher_rounds, source, device, opt, folder)
        with open(meta, 'w') as f:  # written last: a store without it is rebuilt
            json.dump({'shapes': shapes, 'path_t': opt.path_t, 'dataset': opt.dataset}, f)
    distributed.broadcast_object(None)  # the other processes wait for the store
    size = sum(os.path.getsize(os.path.join(folder, f'{n}.npy')) for n in OUTPUTS)
    print(f'teacher cache: {folder} ({size / 2 ** 20:.1f} MiB, read through memory maps)',
          flush=True)
    rounds = CodedRounds(choices, mode='student', seed=opt.seed)  # the loader's and the store's
    loader, _, _ = get_dataloaders(
        opt.dataset, opt.data_folder, opt.batch_size, opt.num_workers,
        variant=method.data_variant, k=opt.nce_k, mode=opt.mode, seed=opt.seed,
        pin_memory=device.type == 'cuda', loader=opt.loader, device=device, coded=rounds)
    return loader, TeacherStore(folder, rounds, device)
