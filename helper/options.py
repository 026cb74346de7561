"""Command-line options shared by train_teacher.py and train_student.py (RepDistiller's names
and defaults), and the checks and derived values both scripts need."""
import argparse
import glob
import os
import random

import torch

from dataset import DATASETS, LOADERS
from models import SMALL_LR_MODELS, model_dict
from . import distributed
from .checkpoint import load_checkpoint
from .loops import LAST
from .util import (RunFinished, UserError, non_negative_float, non_negative_int,
                   parse_decay_epochs, positive_float, positive_int, unit_interval)

DEFAULT_LR, SMALL_MODEL_LR = 0.05, 0.01


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (the help says what then)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: ...``, exit status 2) instead of
    the usage block followed by the message."""

    def __init__(self, description):
        super().__init__(description=description, formatter_class=HelpFormatter)

    def error(self, message):
        raise UserError(f'{message} (--help lists the options)')


def base_parser(description):
    parser = Parser(description)
    parser.add_argument('--print_freq', type=positive_int, default=100,
                        help='accepted for RepDistiller compatibility (a progress bar is shown)')
    parser.add_argument('--tb_freq', type=positive_int, default=500,
                        help='accepted for RepDistiller compatibility (TensorBoard logs per epoch)')
    parser.add_argument('--save_freq', type=positive_int, default=40,
                        help='save ckpt_epoch_N every N epochs')
    parser.add_argument('--batch_size', type=positive_int, default=64, help='training batch size')
    parser.add_argument('--num_workers', type=non_negative_int, default=8,
                        help='data loading processes (capped at the number of CPU cores)')
    parser.add_argument('--epochs', type=positive_int, default=240,
                        help='number of training epochs')
    parser.add_argument('--learning_rate', type=positive_float, default=None,
                        help=f'SGD learning rate (default {DEFAULT_LR}, or {SMALL_MODEL_LR} for '
                             f'{", ".join(SMALL_LR_MODELS)})')
    parser.add_argument('--lr_decay_epochs', type=str, default='150,180,210',
                        help='epochs after which the learning rate decays, comma-separated')
    parser.add_argument('--lr_decay_rate', type=positive_float, default=0.1, help='decay factor')
    parser.add_argument('--weight_decay', type=non_negative_float, default=5e-4,
                        help='weight decay')
    parser.add_argument('--momentum', type=unit_interval, default=0.9, help='SGD momentum')
    parser.add_argument('--dataset', type=str, default='cifar100', choices=list(DATASETS),
                        help='data set')
    parser.add_argument('--data_folder', type=str, default='./data',
                        help='where data sets live (CIFAR pickles, imagenet/{train,val})')
    parser.add_argument('--save_dir', type=str, default='./save',
                        help='root of checkpoints and TensorBoard logs')
    parser.add_argument('--seed', type=non_negative_int, default=None,
                        help='random seed (default: random)')
    parser.add_argument('--gpu_id', type=str, default=None,
                        help='GPU(s) to use, as CUDA_VISIBLE_DEVICES (SimKD compatibility)')
    parser.add_argument('--resume', type=str, default=None, metavar='auto|PATH',
                        help=f"continue a run: 'auto' from its folder's {LAST} if there is "
                             f"one, or from the given checkpoint")
    parser.add_argument('--max_grad_norm', type=positive_float, default=None,
                        help='clip the gradient norm to this value (default: no clipping)')
    multi = parser.add_argument_group('several GPUs/processes (see README, Multi-GPU)')
    multi.add_argument('--sync_bn', action='store_true',
                       help='synchronise the student\'s BatchNorm statistics across GPUs')
    multi.add_argument('--multiprocessing-distributed', dest='multiprocessing_distributed',
                       action='store_true',
                       help='SimKD style: start one process per GPU of --gpu_id')
    multi.add_argument('--dist-url', dest='dist_url', default='tcp://127.0.0.1:23451',
                       help='rendezvous address for --multiprocessing-distributed')
    multi.add_argument('--dali', choices=['cpu', 'gpu'], default=None,
                       help='decode and augment ImageNet JPEGs with NVIDIA DALI on the GPU '
                            'or in CPU threads (pip install -r requirements-dali.txt); without '
                            'DALI, gpu decodes with torchvision\'s nvJPEG')
    speed = parser.add_argument_group('speed (see docs/PERFORMANCE.md)')
    speed.add_argument('--loader', choices=LOADERS, default='device',
                       help='device: keep CIFAR/synthetic on the training device and augment '
                            'whole batches there; classic: DataLoader workers with PIL '
                            'transforms (ImageNet uses classic unless --dali)')
    speed.add_argument('--amp', choices=['off', 'bf16', 'fp16'], default='off',
                       help='mixed precision: bf16 autocast, or fp16 autocast with a grad scaler')
    speed.add_argument('--channels_last', action='store_true',
                       help='channels-last memory format for models and batches')
    speed.add_argument('--compile', action='store_true',
                       help='torch.compile the student and the teacher (slow start)')
    speed.add_argument('--sgd_impl', choices=['auto', 'fused', 'foreach', 'for-loop'],
                       default='auto', help='SGD kernel; auto: fused on CUDA, foreach elsewhere')
    return parser


def add_model_argument(parser, flag, default, help):
    parser.add_argument(flag, type=str, default=default, choices=sorted(model_dict),
                        metavar='NAME', help=f'{help}; one of: {", ".join(sorted(model_dict))}')


def finish_options(opt, model_name):
    """Validate and derive shared options; raises UserError with the fix."""
    opt.lr_decay_epochs = parse_decay_epochs(opt.lr_decay_epochs)
    if opt.learning_rate is None:
        opt.learning_rate = SMALL_MODEL_LR if model_name in SMALL_LR_MODELS else DEFAULT_LR
    opt.num_workers = max(0, min(opt.num_workers, os.cpu_count() or 1))
    return opt


def select_device(opt):
    """This process's device; joins the process group of a multi-process run."""
    if opt.gpu_id is not None and not torch.cuda.is_initialized():
        os.environ['CUDA_VISIBLE_DEVICES'] = opt.gpu_id
    device = distributed.setup()
    if getattr(opt, 'sync_bn', False) and device.type != 'cuda':
        raise UserError('--sync_bn needs GPUs (SyncBatchNorm runs on CUDA only)')
    return device


# Options that name what a run is: resuming with any of them changed is refused.
IDENTITY = ('distill', 'model', 'model_s', 'model_t', 'dataset')
# Options that do not change what a run computes: they may differ on resume without a note.
CIRCUMSTANTIAL = {'resume', 'gpu_id', 'num_workers', 'print_freq', 'tb_freq', 'dist_url',
                  'multiprocessing_distributed', 'data_folder', 'save_dir', 'path_t'}


def _canonical(key, value):
    if key == 'distill':  # an alias names the same method
        from distiller_zoo import METHODS
        return METHODS[value].names[0] if value in METHODS else value
    return value


def check_resume_options(opt, stored):
    """Refuse to resume a checkpoint of another run (method, architectures, data set); print
    a note for every other option that differs. The resumed run keeps its seed."""
    current = vars(opt)
    differ = [k for k in IDENTITY if k in stored and k in current
              and _canonical(k, stored[k]) != _canonical(k, current[k])]
    if differ:
        raise UserError('the checkpoint to resume belongs to another run: '
                        + '; '.join(f'--{k} is {current[k]} here, {stored[k]} in the checkpoint'
                                    for k in differ))
    for key in sorted(set(stored) & set(current) - set(IDENTITY) - CIRCUMSTANTIAL):
        if stored[key] == current[key] or (key == 'seed' and current[key] is None):
            continue
        kept = key == 'seed'  # the run's randomness is derived from it
        print(f"note: --{key} is {current[key]} here, {stored[key]} in the checkpoint; using "
              f"{stored[key] if kept else current[key]}"
              + (' (a resumed run keeps its seed)' if kept else ''), flush=True)


def prepare_run(opt, model_folder, tb_folder, run_name):
    """The run's folders and the state to resume from (``None`` for a new run), creating
    nothing (``create_run_folders`` does, once every input is checked). A run never writes
    into a folder that holds another run's checkpoints, and a finished run is left as it is.
    The seed of a resumed run is the one it started with; a new run without ``--seed`` draws
    one."""
    run_dir = os.path.join(opt.save_dir, model_folder, run_name)
    tb_dir = os.path.join(opt.save_dir, tb_folder, run_name)
    has_checkpoints = bool(glob.glob(os.path.join(run_dir, '*.pth')))
    resume = None
    if opt.resume == 'auto':
        if os.path.isfile(os.path.join(run_dir, LAST)):
            resume = load_checkpoint(os.path.join(run_dir, LAST))
        elif not has_checkpoints:
            print(f"note: --resume auto found no earlier run in '{run_dir}'; starting a new "
                  f"run", flush=True)
    elif opt.resume:
        resume = load_checkpoint(opt.resume)
        own = os.path.abspath(os.path.dirname(opt.resume)) == os.path.abspath(run_dir)
        if has_checkpoints and not own:
            raise UserError(f"'{run_dir}' already holds checkpoints of another run, which "
                            f"resuming '{opt.resume}' there would overwrite; choose another "
                            f"--trial (or --save_dir)")
    if resume is None and has_checkpoints:
        raise UserError(f"'{run_dir}' already holds checkpoints of an earlier run; add "
                        f"--resume auto to continue it, or choose another --trial")
    if resume is not None:
        if 'stage' not in resume:
            raise UserError('the checkpoint to resume has no training state; resume from '
                            f'{LAST}, which every run writes each epoch')
        check_resume_options(opt, resume['opt'])
        if resume['stage'] == 'train' and resume['epoch'] > opt.epochs:
            raise RunFinished(f"the run in '{run_dir}' already finished its {opt.epochs} "
                              f"epochs; nothing to do (its files are unchanged)")
        opt.seed = resume['opt']['seed']
        print(f"resuming {resume['stage']} epoch {resume['epoch']}"
              + (f", step {resume['step']}" if resume['step'] else ''), flush=True)
    elif opt.seed is None:
        opt.seed = distributed.broadcast_object(random.randrange(2 ** 31))
    return run_dir, tb_dir, resume


def create_run_folders(run_dir, tb_dir):
    """Create the run's folders (main process only) once its inputs have been checked."""
    if not distributed.is_main():
        return
    try:
        for folder in (run_dir, tb_dir):
            os.makedirs(folder, exist_ok=True)
        probe = os.path.join(run_dir, '.write_test')
        open(probe, 'w').close()
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write to '{run_dir}' ({e.strerror or e}); choose a "
                        f"writable --save_dir") from None
