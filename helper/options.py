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
from .util import UserError, parse_decay_epochs

DEFAULT_LR, SMALL_MODEL_LR = 0.05, 0.01


def base_parser(description):
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--print_freq', type=int, default=100,
                        help='accepted for RepDistiller compatibility (a progress bar is shown)')
    parser.add_argument('--tb_freq', type=int, default=500,
                        help='accepted for RepDistiller compatibility (TensorBoard logs per epoch)')
    parser.add_argument('--save_freq', type=int, default=40, help='save ckpt_epoch_N every N epochs')
    parser.add_argument('--batch_size', type=int, default=64, help='training batch size')
    parser.add_argument('--num_workers', type=int, default=8,
                        help='data loading processes (capped at the number of CPU cores)')
    parser.add_argument('--epochs', type=int, default=240, help='number of training epochs')
    parser.add_argument('--learning_rate', type=float, default=None,
                        help=f'SGD learning rate (default {DEFAULT_LR}, or {SMALL_MODEL_LR} for '
                             f'{", ".join(SMALL_LR_MODELS)})')
    parser.add_argument('--lr_decay_epochs', type=str, default='150,180,210',
                        help='epochs after which the learning rate decays, comma-separated')
    parser.add_argument('--lr_decay_rate', type=float, default=0.1, help='decay factor')
    parser.add_argument('--weight_decay', type=float, default=5e-4, help='weight decay')
    parser.add_argument('--momentum', type=float, default=0.9, help='SGD momentum')
    parser.add_argument('--dataset', type=str, default='cifar100', choices=list(DATASETS),
                        help='data set')
    parser.add_argument('--data_folder', type=str, default='./data',
                        help='where data sets live (CIFAR pickles, imagenet/{train,val})')
    parser.add_argument('--save_dir', type=str, default='./save',
                        help='root of checkpoints and TensorBoard logs')
    parser.add_argument('--seed', type=int, default=None, help='random seed (default: random)')
    parser.add_argument('--gpu_id', type=str, default=None,
                        help='GPU(s) to use, as CUDA_VISIBLE_DEVICES (SimKD compatibility)')
    parser.add_argument('--resume', type=str, default=None, metavar='auto|PATH',
                        help=f"continue a run: 'auto' from its folder's {LAST} if there is "
                             f"one, or from the given checkpoint")
    parser.add_argument('--max_grad_norm', type=float, default=None,
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
    for flag in ('batch_size', 'epochs', 'save_freq'):
        if getattr(opt, flag) <= 0:
            raise UserError(f'--{flag} must be positive, got {getattr(opt, flag)}')
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


def prepare_run(opt, model_folder, tb_folder, run_name):
    """Create the run's folders and find the state to resume from (``None`` for a new run).
    A new run never writes into a folder that holds another run's checkpoints. The seed of a
    resumed run is the one it started with; a new run without ``--seed`` draws one."""
    run_dir = os.path.join(opt.save_dir, model_folder, run_name)
    tb_dir = os.path.join(opt.save_dir, tb_folder, run_name)
    resume = None
    if opt.resume == 'auto':
        if os.path.isfile(os.path.join(run_dir, LAST)):
            resume = load_checkpoint(os.path.join(run_dir, LAST))
    elif opt.resume:
        resume = load_checkpoint(opt.resume)
    if resume is None and glob.glob(os.path.join(run_dir, '*.pth')):
        raise UserError(f"'{run_dir}' already holds checkpoints of an earlier run; add "
                        f"--resume auto to continue it, or choose another --trial")
    if resume is not None:
        if 'stage' not in resume:
            raise UserError('the checkpoint to resume has no training state; resume from '
                            f'{LAST}, which every run writes each epoch')
        opt.seed = resume['opt']['seed']
        print(f"resuming {resume['stage']} epoch {resume['epoch']}"
              + (f", step {resume['step']}" if resume['step'] else ''), flush=True)
    elif opt.seed is None:
        opt.seed = distributed.broadcast_object(random.randrange(2 ** 31))
    if distributed.is_main():
        try:
            for folder in (run_dir, tb_dir):
                os.makedirs(folder, exist_ok=True)
            probe = os.path.join(run_dir, '.write_test')
            open(probe, 'w').close()
            os.remove(probe)
        except OSError as e:
            raise UserError(f"cannot write to '{run_dir}' ({e.strerror or e}); choose a "
                            f"writable --save_dir") from None
    return run_dir, tb_dir, resume
