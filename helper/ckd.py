"""CKD's preparation (the authors' stages A and B in one pass): for every training image and
every round, the teacher judges 22 candidates, the clean image and its JPEG copies at
qualities 0, 5, ..., 100, each with its own random crop and flip; the round keeps, per image,
the candidate the teacher still classifies correctly whose prediction moves furthest from the
clean one's. The rounds are cached next to the teacher (under ``<save_dir>/ckd_rounds/`` when
its folder is read-only), keyed by the teacher file's hash, the data set and the flags, and
recording a digest of the training images they were chosen on; only the choices are stored,
never the coded images. One run prepares them while others wait for it."""
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dataset.base import data_digest
from dataset.loaders import resized
from dataset.augment import PAD, Normalizer, crop_and_flip
from dataset.rounds import FIELDS, StoredRounds, candidate_qualities, code_images
from distiller_zoo.options import Option
from core import distributed
from core.accel import autocast
from core.checkpoint import save_checkpoint
from core.files import file_digest, waiting_lock
from core.stop import STOP
from core.util import UserError, positive_int
from core.log import log, note
from .teachers import TeacherPlugin

IMAGES_PER_CHUNK = 512  # images whose candidates are coded together (22 x 512 teacher inputs)
TEACHER_BATCH = 1024
PREPARATION_SEED = 0  # the rounds depend on the teacher, the data and the flags alone


def select_candidates(logits, labels, select='correct'):
    """Per image, the index of the chosen candidate: among the eligible ones (the teacher's
    top-1 is the label, or every candidate with ``select='all'``), the largest
    ``KL(p_c || p_0)`` with ``p_0`` the clean candidate's softmax; the first on ties; the clean
    candidate (0) when none is eligible. ``logits``: (N, K, classes)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    divergence = (log_p.exp() * (log_p - log_p[:, :1])).sum(-1)  # (N, K)
    if select == 'correct':
        eligible = logits.argmax(-1) == labels[:, None]
    else:
        eligible = torch.ones_like(divergence, dtype=torch.bool)
    best = divergence.masked_fill(~eligible, float('-inf')).argmax(1)
    return torch.where(eligible.any(1), best, torch.zeros_like(best))


def cache_path(path_t, dataset, delta, rounds, select, folder=None):
    """Where the rounds of this teacher file and these flags are stored: beside the teacher,
    or in ``folder``."""
    name = (f'ckd_{dataset}_{file_digest(path_t)[:16]}_delta{delta}_rounds{rounds}_{select}'
            f'.ckd.pt')
    return os.path.join(folder or os.path.dirname(os.path.abspath(path_t)), name)


def cache_flags(config):
    """What keys the rounds of a run (a ``RunConfig``): ``cache_path``'s arguments."""
    f = config.features
    return config.teacher.path, config.data.dataset, f.ckd_delta, f.ckd_rounds, f.ckd_select


def rounds_path(config):
    """The rounds' file of this run: the existing one, beside the teacher or under
    ``<save_dir>/ckd_rounds``, else where it can be written (beside the teacher when its folder
    is writable). Checked before any work starts."""
    flags = cache_flags(config)
    beside = cache_path(*flags)
    fallback = cache_path(*flags, folder=os.path.join(config.output.save_dir, 'ckd_rounds'))
    for path in (beside, fallback):
        if os.path.isfile(path):
            return path
    if os.access(os.path.dirname(beside), os.W_OK):
        return beside
    note(f"the teacher's folder is read-only; CKD's rounds go to {fallback}")
    return fallback


@torch.no_grad()
def teacher_outputs(teacher, views, source, device, training):
    """The teacher's logits and pooled embeddings (on the CPU, fp32) of uint8 views
    (M, C, H, W), in large batches, with the speed options of ``training`` (a
    ``TrainingConfig``)."""
    normalize = Normalizer(source.mean, source.std, device)
    logits, embeddings = [], []
    for start in range(0, len(views), TEACHER_BATCH):
        x = resized(normalize(views[start:start + TEACHER_BATCH].to(device)),
                    source.batch_resize)
        if training.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(training, device):
            feats, out = teacher(x, is_feat=True)
        logits.append(out.float().cpu())
        embeddings.append(feats[-1].float().cpu())
    return torch.cat(logits), torch.cat(embeddings)


def prepare_rounds(teacher, images, labels, source, device, config):
    """``(rounds, N, 4)`` int16 choices of ``dataset.ckd.FIELDS`` for the training set
    ``images`` (N, 32, 32, 3 uint8), with the run's (``config``) ``--ckd_delta``,
    ``--ckd_rounds`` and ``--ckd_select``."""
    features, training = config.features, config.training
    qualities = torch.tensor(candidate_qualities(features.ckd_delta))
    count, n_images = len(qualities), len(images)
    labels = torch.as_tensor(np.asarray(labels))
    generator = torch.Generator().manual_seed(PREPARATION_SEED)
    choices = np.zeros((features.ckd_rounds, n_images, len(FIELDS)), dtype=np.int16)
    teacher.eval()
    started = time.time()
    chunks = range(0, n_images, IMAGES_PER_CHUNK)
    bar = tqdm(total=n_images * features.ckd_rounds, desc='ckd rounds', unit='img', leave=False,
               disable=not sys.stderr.isatty())
    for start in chunks:
        STOP.check("preparing CKD's rounds")
        chunk = images[start:start + IMAGES_PER_CHUNK]
        n = len(chunk)
        coded = code_images(np.repeat(chunk, count - 1, axis=0),
                            np.tile(qualities[1:].numpy(), n), config.data.num_workers)
        candidates = np.concatenate([chunk[:, None], coded.reshape(n, count - 1, *chunk.shape[1:])],
                                    axis=1)
        candidates = torch.from_numpy(candidates).flatten(0, 1).permute(0, 3, 1, 2)
        for r in range(features.ckd_rounds):
            rows, cols = torch.randint(0, 2 * PAD + 1, (2, n * count), generator=generator)
            flips = torch.rand(n * count, generator=generator) > 0.5
            views = crop_and_flip(candidates, rows, cols, flips)
            logits, _ = teacher_outputs(teacher, views, source, device, training)
            best = select_candidates(logits.view(n, count, -1), labels[start:start + n],
                                     features.ckd_select)
            pick = torch.arange(n) * count + best
            choices[r, start:start + n] = torch.stack(
                [qualities[best], rows[pick], cols[pick], flips[pick].long()], 1).numpy()
            bar.update(n)
    bar.close()
    seconds = time.time() - started
    log.info(f'ckd: prepared {features.ckd_rounds} rounds of {n_images} images ({count} '
             f'candidates each) in {seconds:.1f}s, {n_images * features.ckd_rounds / seconds:.0f} '
             f'images/s per round-image')
    return choices


def load_or_prepare(teacher, images, labels, source, device, config, path=None, digest=None):
    """The cached rounds for the run's (``config``) teacher file, data set and flags (at
    ``path``, else ``cache_path``'s), prepared (by the main process, while other runs wait)
    when missing; every process returns the same array. ``digest``: the data's, when already
    known."""
    features = config.features
    path = path or cache_path(*cache_flags(config))
    data = digest or data_digest(images, labels)
    if distributed.is_main() and not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        announce = (lambda: log.info(f"ckd: another run is preparing {path}; waiting for it"))
        with waiting_lock(f'{path}.lock', on_wait=announce,
                          check=lambda: STOP.check("waiting for CKD's rounds")):
            if not os.path.isfile(path):
                log.info(f'ckd: preparing {features.ckd_rounds} rounds for '
                         f'{config.teacher.path} (once; cached in {path})')
                choices = prepare_rounds(teacher, images, labels, source, device, config)
                save_checkpoint({'choices': torch.from_numpy(choices), 'fields': list(FIELDS),
                                 'delta': features.ckd_delta, 'select': features.ckd_select,
                                 'dataset': config.data.dataset, 'data': data}, path)
    distributed.broadcast_object(None)  # the other processes wait for the file
    cache = torch.load(path, weights_only=True)
    if tuple(cache['choices'].shape) != (features.ckd_rounds, len(images), len(FIELDS)):
        raise UserError(f"the CKD cache '{path}' does not fit this data set; delete it to "
                        f"prepare it again")
    if cache.get('data', data) != data:
        raise UserError(f"the CKD cache '{path}' was prepared on other training images (data "
                        f"{cache['data']}, here {data}); delete it to prepare it again")
    log.info(f'ckd: {features.ckd_rounds} rounds from {path}')
    return cache['choices'].numpy()


class CodedTeacherInputs(TeacherPlugin):
    """``--ckd ckd|clean``: the training batches come from CKD's stored rounds (prepared once
    per teacher); with ``ckd`` each batch carries the teacher's JPEG-coded view, which the
    frozen teacher then sees (``Batch.teacher_image``); ``clean`` is the authors' control, the
    same crops with the teacher on the clean view."""
    title = ('CKD: the teacher sees adaptive-JPEG-coded inputs (docs/methods.md, CKD; 32x32 '
             'in-memory data)')
    options = (
        Option('--ckd', choices=['ckd', 'clean'], default=None,
               help='ckd: the teacher sees each image\'s stored JPEG-coded copy, the student the '
                    'clean image (same crop and flip); clean: the same stored rounds, the '
                    'teacher on the clean view (the authors\' control)'),
        Option('--ckd_delta', type=positive_int, default=5,
               help='quality step of the JPEG candidates (0, delta, ..., 100)'),
        Option('--ckd_rounds', type=positive_int, default=20,
               help='rounds of stored choices; each epoch uses one, cycling'),
        Option('--ckd_select', choices=['correct', 'all'], default='correct',
               help='candidates a round may choose: those the teacher classifies correctly (the '
                    'authors\' release), or all'))
    defining = ('ckd', 'ckd_delta', 'ckd_rounds', 'ckd_select')
    flag = '--ckd'

    def enabled(self, opt):
        return getattr(opt, 'ckd', None) is not None

    def check(self, config, method):
        self.check_data_and_teacher(config, 'its rounds (cached beside it)')
        if config.features.ckd_delta > 100:
            raise UserError(f'--ckd_delta must be 1 to 100, got {config.features.ckd_delta}')
        views = method.batch_spec(config.method.options).views
        if views is not None:
            raise UserError(f'--ckd cannot combine with --distill {config.distill}, which '
                            f'builds its own {views.name} of each image')

    def suffix(self, opt):
        return f'_ckd:{opt.ckd}' if self.enabled(opt) else ''

    def prepare(self, config, teachers, train_set, device, seed, rounds):
        choices = load_or_prepare(teachers[0].network, train_set.images, train_set.targets,
                                  config.source, device, config, rounds_path(config),
                                  digest=train_set.digest)
        return StoredRounds(choices, seed=seed, coded=config.features.ckd == 'ckd')
