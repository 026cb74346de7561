"""The teacher-output cache (``--teacher_cache R``): R rounds of per-image crops and flips are
fixed (drawn from the run's seed; with ``--ckd``, CKD's rounds and coded views), the frozen
teacher runs once per round over the training set, and its logits and pooled embeddings are
stored; every epoch then trains on one round (cycled in a shuffled order, as CKD's) with the
teacher's outputs read from the store instead of a teacher forward. In the spirit of
Shen & Xing, "A Fast Knowledge Distillation Framework for Visual Recognition" (ECCV 2022).

The store lives under ``<save_dir>/teacher_cache/<key>/`` as ``.npy`` files read through memory
maps (only the rows of each batch are loaded), keyed by the teacher file's digest, the data set
and a digest of its training images and labels, R, the seed (or CKD's flags) and the stored
outputs; a later run with the same key reuses it. A store is built once: the builder holds a
lock, writes into a temporary folder and renames it into place when complete, so other runs
wait for it or reuse it, and never see a partial store.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from tqdm import tqdm

from dataset.augment import PAD, crop_and_flip
from dataset.rounds import CLEAN, FIELDS, StoredRounds, code_images, round_for_epoch
from distiller_zoo.base import BATCH_STATS, HEAD_MAP, PREACT, STAGES, NetOutput
from distiller_zoo.options import Option
from distiller_zoo.sources import STORABLE, TeacherSource
from core import distributed
from .ckd import teacher_outputs
from core.files import disk_full, file_digest, waiting_lock, write_text_atomic
from core.stop import STOP
from core.util import UserError, positive_int
from core.log import log
from .teachers import TeacherPlugin

OUTPUTS = ('logits', 'embedding')  # what the store holds, per round and image
IMAGES_PER_CHUNK = 2048
META = 'meta.json'  # written last: a folder without it is no store
FLOAT_BYTES = 4


class CachedTeacher(TeacherSource):
    """The teacher's outputs read from a store instead of a forward: ``source(batch, reads)``
    looks the batch's samples up in the epoch's round, which ``set_epoch`` loads (one round,
    never the whole store) onto the network's device; the feature list holds the embedding
    alone. The store is opened, through memory maps, at the first epoch. Several teachers
    (``folder``: one store each, ``weights``: their shares): their logits' weighted mean, the
    first one's embedding."""
    serves = STORABLE
    takes_views = False

    def __init__(self, network, folder, rounds, seed, weights=(1.0,)):
        super().__init__(network.eval().requires_grad_(False))
        self.folders = [folder] if isinstance(folder, str) else list(folder)
        self.rounds, self.seed, self.weights = rounds, seed, tuple(weights)
        self.arrays, self.current = None, None

    def set_epoch(self, epoch):
        self.load_round(round_for_epoch(epoch, self.rounds, self.seed))

    def load_round(self, r):
        if self.arrays is None:
            self.arrays = [{name: np.load(os.path.join(folder, f'{name}.npy'), mmap_mode='r')
                            for name in OUTPUTS} for folder in self.folders]
        device = next(self.network.parameters()).device
        rounds = [{name: torch.from_numpy(np.array(array[r])).to(device)
                   for name, array in arrays.items()} for arrays in self.arrays]
        logits = rounds[0]['logits']
        if len(rounds) > 1:
            logits = sum(w * one['logits'] for w, one in zip(self.weights, rounds))
        self.current = {'embedding': rounds[0]['embedding'], 'logits': logits}

    def forward(self, batch, reads, image=None):
        return NetOutput([self.current['embedding'][batch.index]],
                         self.current['logits'][batch.index])


def draw_rounds(count, n_images, seed):
    """``count`` rounds of uncoded crops and flips for ``n_images`` images, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    choices = np.zeros((count, n_images, len(FIELDS)), dtype=np.int16)
    choices[..., 0] = CLEAN
    choices[..., 1:3] = torch.randint(0, 2 * PAD + 1, (count, n_images, 2),
                                      generator=generator).numpy()
    choices[..., 3] = (torch.rand(count, n_images, generator=generator) < 0.5).numpy()
    return choices


def _size(nbytes):
    return f'{nbytes / 2 ** 30:.2f} GiB' if nbytes >= 2 ** 30 else f'{nbytes / 2 ** 20:.1f} MiB'


def store_shapes(rounds, n_images, widths):
    """``{output: (rounds, images, width)}`` of a store."""
    return {name: (rounds, n_images, widths[name]) for name in OUTPUTS}


def store_bytes(shapes):
    return sum(int(np.prod(shape)) * FLOAT_BYTES for shape in shapes.values())


def output_widths(teacher, source, device, training):
    """The width of each stored output of ``teacher`` (its classes, its embedding size)."""
    probe = torch.zeros(2, 3, source.image_size, source.image_size, dtype=torch.uint8)
    logits, embedding = teacher_outputs(teacher.eval(), probe, source, device, training)
    return {'logits': logits.shape[1], 'embedding': embedding.shape[1]}


def _open_arrays(folder, shapes):
    """One ``.npy`` file per output with its header written and its data space reserved
    (a full disk fails here, with ENOSPC, rather than while the store is being written)."""
    files = {}
    for name, shape in shapes.items():
        f = open(os.path.join(folder, f'{name}.npy'), 'wb')
        files[name] = f
        np.lib.format.write_array_header_1_0(f, {'descr': '<f4', 'fortran_order': False,
                                                 'shape': shape})
        size = f.tell() + int(np.prod(shape)) * FLOAT_BYTES
        f.flush()
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as e:
            if disk_full(e):
                raise
            f.truncate(size)  # a file system without fallocate
    return files


@torch.no_grad()
def build_store(teacher, images, choices, source, device, training, folder, workers=0):
    """Run the teacher once per round over every image (its round's crop, flip and coding;
    ``workers`` processes code JPEGs) with the speed options of ``training`` and write the
    logits and embeddings to ``folder`` with plain file writes (no memory-mapped writes, which
    a full disk turns into SIGBUS)."""
    rounds, n_images = choices.shape[:2]
    shapes = store_shapes(rounds, n_images, output_widths(teacher, source, device, training))
    teacher.eval()
    files = _open_arrays(folder, shapes)
    headers = {name: f.tell() for name, f in files.items()}
    bar = tqdm(total=rounds * n_images, desc='teacher cache', unit='img', leave=False,
               disable=not sys.stderr.isatty())
    try:
        for r in range(rounds):
            for start in range(0, n_images, IMAGES_PER_CHUNK):
                STOP.check('building the teacher cache')
                chosen = choices[r, start:start + IMAGES_PER_CHUNK].astype(np.int64)
                chunk = code_images(images[start:start + len(chosen)], chosen[:, 0], workers)
                views = crop_and_flip(torch.from_numpy(chunk).permute(0, 3, 1, 2),
                                      *torch.from_numpy(chosen[:, 1:3]).unbind(1),
                                      torch.from_numpy(chosen[:, 3]).bool())
                outputs = zip(OUTPUTS, teacher_outputs(teacher, views, source, device, training))
                for name, value in outputs:
                    width = shapes[name][2]
                    files[name].seek(headers[name] + (r * n_images + start) * width * FLOAT_BYTES)
                    files[name].write(value.numpy().astype('<f4').tobytes())
                bar.update(len(views))
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    finally:
        bar.close()
        for f in files.values():
            f.close()
    return shapes


def store_folder(config, seed, data_key, path=None):
    """The store of a run's (a ``RunConfig``) teacher file ``path`` (None: the first): keyed by
    the data set, the file, the training images (and their size), the rounds and what they are
    (CKD's, or drawn with ``seed``)."""
    f = config.features
    rounds = f'ckd{f.ckd}_delta{f.ckd_delta}_{f.ckd_select}' if f.ckd else f'seed{seed}'
    size = f'_img{config.data.img_size}' if config.source.batch_resize else ''
    key = (f'{config.data.dataset}_{file_digest(path or config.teacher.path)[:16]}_'
           f'data{data_key}{size}_'
           f'R{f.teacher_cache}_{rounds}_{"+".join(OUTPUTS)}')
    return os.path.join(config.output.save_dir, 'teacher_cache', key)


READ_NAMES = {STAGES: 'feature maps', PREACT: 'pre-activation feature maps',
              HEAD_MAP: 'head maps', BATCH_STATS: 'a teacher on batch statistics'}


def _complete(folder):
    return os.path.isfile(os.path.join(folder, META))


def _check_free_space(folder, needed):
    free = shutil.disk_usage(os.path.dirname(folder)).free
    if needed > free:
        raise UserError(f"the teacher cache needs {_size(needed)} under "
                        f"'{os.path.dirname(folder)}' and only {_size(free)} are free; free "
                        f"some space, or store fewer rounds (--teacher_cache)")


def _build_in_place(folder, build, needed):
    """Build into a partial folder of this process's own and rename it to ``folder`` once
    complete (when another process got there first, its store stays); whatever stops the
    build removes the partial folder."""
    partial = f'{folder}.partial-{os.getpid()}'
    _check_free_space(folder, needed)
    os.makedirs(partial)
    try:
        meta = build(partial)
        write_text_atomic(os.path.join(partial, META), json.dumps(meta))
        if os.path.isdir(folder) and not _complete(folder):
            shutil.rmtree(folder)  # a folder an older version left unfinished
        try:
            os.rename(partial, folder)
        except OSError:
            if not _complete(folder):
                raise
            shutil.rmtree(partial)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        if disk_full(e):
            raise UserError(f"the disk filled up while the teacher cache was built under "
                            f"'{os.path.dirname(folder)}'; nothing of it is kept. Free some "
                            f"space and run the command again") from None
        raise


def _check_store(folder, shapes):
    with open(os.path.join(folder, META)) as f:
        stored = {name: tuple(shape) for name, shape in json.load(f)['shapes'].items()}
    found = {name: np.load(os.path.join(folder, f'{name}.npy'), mmap_mode='r').shape
             for name in OUTPUTS}
    if stored != shapes or found != shapes:
        raise UserError(f"the teacher cache '{folder}' holds outputs of shapes {found}, but "
                        f"this run needs {shapes}; delete the folder to build it again")


def ensure_store(config, teacher, images, choices, device, folder, path):
    """The store at ``folder`` of the teacher's outputs on ``choices`` (the main process builds
    it when missing, while other runs that need it wait), checked against its expected
    shapes."""
    source, training = config.source, config.training
    shapes = store_shapes(len(choices), len(images),
                          output_widths(teacher, source, device, training))
    if distributed.is_main() and not _complete(folder):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        announce = (lambda: log.info(f'teacher cache: another run is building {folder}; waiting '
                                     f'for it'))
        with waiting_lock(f'{folder}.lock', on_wait=announce,
                          check=lambda: STOP.check('waiting for the teacher cache')):
            if not _complete(folder):
                log.info(f'teacher cache: running the teacher over {len(choices)} rounds of '
                         f'{len(images)} images ({_size(store_bytes(shapes))}; once; stored in '
                         f'{folder})')
                _build_in_place(folder, lambda partial: {
                    'shapes': build_store(teacher, images, choices, source, device, training,
                                          partial, config.data.num_workers),
                    'path_t': path, 'dataset': config.data.dataset},
                    store_bytes(shapes))
    distributed.broadcast_object(None)  # the other processes wait for the store
    _check_store(folder, shapes)
    log.info(f'teacher cache: {folder} ({_size(store_bytes(shapes))}, read through memory maps)')


class TeacherOutputCache(TeacherPlugin):
    """``--teacher_cache R``: R rounds of crops and flips are fixed (CKD's, with ``--ckd``),
    the teacher runs once per round and its outputs are stored; the method's teacher is then a
    ``CachedTeacher`` reading them, and the training batches crop as the rounds say."""
    title = 'teacher-output cache (docs/usage.md, Teacher-output cache; 32x32 in-memory data)'
    options = (Option('--teacher_cache', type=positive_int, default=None, metavar='R',
                      help='fix R rounds of crops and flips, run the teacher once per round and '
                           'store its logits and embeddings under <save_dir>/teacher_cache; '
                           'epochs then train from the store, with no teacher forward (methods '
                           'that read only those)'),)
    defining = ('teacher_cache',)
    flag = '--teacher_cache'

    def enabled(self, opt):
        return getattr(opt, 'teacher_cache', None) is not None

    def check(self, config, method):
        self.check_data_and_teacher(config, 'its store', several=True)
        recipe, f, epochs = method.needs, config.features, config.training.epochs
        missing = [READ_NAMES.get(r, r) for r in sorted(recipe.teacher_reads - STORABLE)]
        views = method.batch_spec(config.method.options).views
        if missing or recipe.teacher_trains or views is not None:
            needs = (', '.join(missing) if missing else 'a teacher that trains'
                     if recipe.teacher_trains else 'the teacher on views it makes of each image')
            raise UserError(f'--teacher_cache stores the teacher\'s logits and pooled '
                            f'embeddings; --distill {config.distill} needs {needs}')
        if f.ckd and f.teacher_cache != f.ckd_rounds:
            raise UserError(f'with --ckd the cache stores CKD\'s rounds: give --teacher_cache '
                            f'{f.ckd_rounds} (= --ckd_rounds)')
        if not f.ckd and f.teacher_cache > epochs:
            raise UserError(f'--teacher_cache {f.teacher_cache} would store rounds that a run '
                            f'of {epochs} epochs never uses (one round per epoch); give at '
                            f'most --teacher_cache {epochs}')

    def suffix(self, opt):
        return f'_cache:{opt.teacher_cache}' if self.enabled(opt) else ''

    def source(self, config, teachers, train_set, seed, previous):
        folders = [store_folder(config, seed, train_set.digest, t.path) for t in teachers]
        return CachedTeacher(teachers[0].network, folders, config.features.teacher_cache, seed,
                             config.teacher.weights)

    def prepare(self, config, teachers, train_set, device, seed, rounds):
        if rounds is None:
            rounds = StoredRounds(draw_rounds(config.features.teacher_cache, len(train_set),
                                              seed), seed)
        teacher_views = rounds.choices.copy()
        if not rounds.coded:  # the teacher's views are clean (CKD's control, or no CKD)
            teacher_views[..., 0] = CLEAN
        for teacher in teachers:  # one store each
            folder = store_folder(config, seed, train_set.digest, teacher.path)
            ensure_store(config, teacher.network.to(device), train_set.images, teacher_views,
                         device, folder, teacher.path)
        return StoredRounds(rounds.choices, seed=seed)  # the student's crops; nothing coded
