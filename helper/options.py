"""Command-line options shared by train_teacher.py and train_student.py (RepDistiller's names
and defaults), and the checks and derived values both scripts need."""
import argparse
import importlib.util
import os
from typing import NamedTuple

import torch

from dataset import DATASETS, LOADERS
from models import check_model_name, small_lr_models, trains_at_small_lr
from core import distributed
from core.checkpoint import LAST
from core.component import Component
from .optimizers import optimizer_name
from core.log import note
from core.util import (FrozenNamespace, UserError, non_negative_float, non_negative_int,
                        parse_decay_epochs, positive_float, positive_int, seed_int,
                        unit_interval)
from distiller_zoo.options import Option

DEFAULT_LR, SMALL_MODEL_LR = 0.05, 0.01


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (the help says what then) and
    for switches (off unless given)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: ...``, exit status 2) instead of
    the usage block followed by the message."""

    def __init__(self, description):
        super().__init__(description=description, formatter_class=HelpFormatter)

    def error(self, message):
        raise UserError(f'{message} (--help lists the options)')


def base_parser(description):
    parser = Parser(description)
    # RepDistiller's logging intervals, accepted and unused (a progress bar and one line per
    # epoch replace them).
    parser.add_argument('--print_freq', type=positive_int, default=100, help=argparse.SUPPRESS)
    parser.add_argument('--tb_freq', type=positive_int, default=500, help=argparse.SUPPRESS)
    parser.add_argument('--save_freq', type=positive_int, default=40,
                        help='save ckpt_epoch_N every N epochs')
    parser.add_argument('--batch_size', type=positive_int, default=64, help='training batch size')
    parser.add_argument('--num_workers', type=non_negative_int, default=8,
                        help='data loading processes (capped at the number of CPU cores)')
    parser.add_argument('--epochs', type=positive_int, default=240,
                        help='number of training epochs')
    parser.add_argument('--learning_rate', type=positive_float, default=None,
                        help=f'SGD learning rate (default {DEFAULT_LR}, or {SMALL_MODEL_LR} for '
                             f'{", ".join(small_lr_models())})')
    parser.add_argument('--lr_decay_epochs', type=str, default='150,180,210',
                        help='epochs after which the learning rate decays, comma-separated')
    parser.add_argument('--lr_decay_rate', type=positive_float, default=0.1, help='decay factor')
    parser.add_argument('--weight_decay', type=non_negative_float, default=5e-4,
                        help='weight decay')
    parser.add_argument('--momentum', type=unit_interval, default=0.9, help='SGD momentum')
    parser.add_argument('--nesterov', action='store_true',
                        help='Nesterov momentum (FCFD\'s recipe, which sets it)')
    parser.add_argument('--dataset', type=str, default='cifar100', choices=list(DATASETS),
                        help='data set')
    parser.add_argument('--data_folder', type=str, default='./data',
                        help='where data sets live (docs/data.md)')
    parser.add_argument('--img_size', type=positive_int, default=None,
                        help='image side the networks see (default: the data set\'s)')
    parser.add_argument('--save_dir', type=str, default='./save',
                        help='root of checkpoints and TensorBoard logs')
    parser.add_argument('--seed', type=seed_int, default=None,
                        help='random seed (default: random)')
    parser.add_argument('--gpu_id', type=str, default=None,
                        help='GPU(s) to use, as CUDA_VISIBLE_DEVICES (SimKD compatibility)')
    parser.add_argument('--resume', type=str, default=None, metavar='auto|PATH',
                        help=f"continue a run: 'auto' from its folder's {LAST} if there is "
                             f"one, or from the given checkpoint")
    parser.add_argument('--max_grad_norm', type=positive_float, default=None,
                        help='clip the gradient norm to this value (default: no clipping)')
    multi = parser.add_argument_group('several GPUs/processes (docs/usage.md, Several GPUs)')
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
    parser.add_argument('--wandb', action='store_true',
                        help='also log to Weights & Biases (pip install wandb; project and run '
                             'name from the run folder; WANDB_MODE=offline works without a '
                             'network)')
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


# The recipes papers train with (--recipe), each value overridable by its own flag. OFA-KD's
# CIFAR-100 configs (Hao840/OFAKD f7bb896 configs/cifar/{cnn,vit_mlp}.yaml, with its train.py's
# defaults: warm-up lr 1e-4, smoothing 0.1): ImageNet architectures at 224.
RECIPES = {
    'repdistiller': {},
    'ofa_cnn': dict(epochs=300, batch_size=128, learning_rate=0.05, weight_decay=2e-3, opt='sgd',
                    schedule='cosine', warmup_epochs=3, warmup_lr=1e-4, min_lr=1e-3,
                    smoothing=0.1, img_size=224),
    'ofa_vit': dict(epochs=300, batch_size=128, learning_rate=5e-4, weight_decay=0.05,
                    opt='adamw', schedule='cosine', warmup_epochs=20, warmup_lr=5e-7,
                    min_lr=1e-5, smoothing=0.1, max_grad_norm=5.0, mixup=0.8, cutmix=1.0,
                    randaugment='rand-m9-mstd0.5-inc1', reprob=0.25, img_size=224),
    # mdistiller's ImageNet configs (megvii-research/mdistiller a08d46f configs/imagenet/*)
    'mdistiller_imagenet': dict(epochs=100, batch_size=512, learning_rate=0.2,
                                lr_decay_epochs='30,60,90', weight_decay=1e-4),
    # mdistiller's DOT on TinyImageNet (a08d46f configs/tiny_imagenet/dot/r18_mv2.yaml; its
    # r18_shuv2.yaml gives no decay epochs, so its cfg.py's 150,180,210 apply there)
    'mdistiller_tinyimagenet': dict(epochs=200, batch_size=256, learning_rate=0.2,
                                    lr_decay_epochs='60,120,160', weight_decay=5e-4),
    # mmcls's DeiT-Tiny as NKD's cls_KD trains it (yzd-v/cls_KD 1e5d48f configs/deit/
    # deit-small_pt-4xb256_in1k.py over imagenet_bs1024_adamw_swin.py: no EMA, no drop path for
    # tiny): 4 x 256 images, AdamW 5e-4 * 1024 / 512, warm-up from 1e-3 of it over 20 epochs
    'deit_mmcls': dict(epochs=300, batch_size=1024, learning_rate=1e-3, weight_decay=0.05,
                       opt='adamw', schedule='cosine', warmup_epochs=20, warmup_lr=1e-6,
                       min_lr=1e-5, max_grad_norm=5.0, smoothing=0.1, mixup=0.8, cutmix=1.0,
                       randaugment='rand-m9-mstd0.5-inc1', reprob=0.25),
    # SDD's ImageNet configs (shicaiwei123/SDD-CVPR2024 e412036 configs/imagenet/r50_mv2/*.yaml)
    'sdd_imagenet': dict(epochs=100, batch_size=256, learning_rate=0.2,
                         lr_decay_epochs='30,60,90', weight_decay=1e-4),
    # DIST_KD's ImageNet baseline (hunto/image_classification_sota d9662f7, the submodule of
    # DIST_KD 2418f18: configs/strategies/distill/resnet_{dist,kdt4}.yaml on 8 GPUs): SGD with
    # Nesterov momentum and no weight decay on biases and BN (lib/utils/optim.py), as timm's sgd
    'dist_imagenet': dict(epochs=100, batch_size=256, learning_rate=0.1,
                          lr_decay_epochs='30,60,90', weight_decay=1e-4, opt='sgd'),
    # OFD's scripts (clovaai/overhaul-distillation 76344a8, {CIFAR-100,ImageNet}/
    # train_with_distillation.py): Nesterov SGD; CIFAR-100: lr /10 at epochs 100 and 150 of 200
    # (0-based 100 and 150: ours 100,150); ImageNet: lr 0.1 * 0.1 ** (epoch // 30) with epochs
    # counted from 1, so the 30th epoch is the first at 0.01 (ours: 29,59,89)
    'ofd_cifar': dict(epochs=200, batch_size=128, learning_rate=0.1, lr_decay_epochs='100,150',
                      weight_decay=5e-4, nesterov=True),
    'ofd_imagenet': dict(epochs=100, batch_size=256, learning_rate=0.1,
                         lr_decay_epochs='29,59,89', weight_decay=1e-4, nesterov=True),
    # The standard ImageNet recipe: mmcls's imagenet_bs256 schedule (NKD's cls_KD 1e5d48f
    # configs/_base_/schedules/imagenet_bs256.py), CTKD's run_imagenet_vanilla.sh (7d52522)
    'imagenet': dict(epochs=100, batch_size=256, learning_rate=0.1, lr_decay_epochs='30,60,90',
                     weight_decay=1e-4),
    # SKD's CIFAR-100 loop (HyunJunSik/StreamLined 7458628 CIFAR-100/Utils/distillation_train.py),
    # every method of its table: RepDistiller's schedule at lr 0.1
    'skd_cifar': dict(learning_rate=0.1),
    # CTKD's ImageNet distillation (zhengli97/CTKD 7d52522 scripts/run_imagenet_distill.sh)
    'ctkd_imagenet': dict(epochs=120, batch_size=256, learning_rate=0.1,
                          lr_decay_epochs='30,60,90', weight_decay=1e-4),
}
def randaugment_config(config):
    """An argparse type: a config string timm's RandAugment takes."""
    from timm.data.auto_augment import rand_augment_transform
    try:
        rand_augment_transform(config, {})
    except (AssertionError, ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"'{config}' is not a RandAugment config (e.g. "
                                         f"rand-m9-mstd0.5-inc1)") from None
    return config


RECIPE_OPTIONS = (
    Option('--recipe', choices=sorted(RECIPES), default='repdistiller', metavar='NAME',
           help='a paper\'s (docs/usage.md)'),
    Option('--opt', type=optimizer_name, default=None, metavar='NAME',
           help='the optimizer: dot (DOT\'s two momenta, for distillation), or a timm optimizer '
                '(sgd: Nesterov; adamw, ...) with no weight decay on biases and norms (default: '
                'RepDistiller\'s SGD)'),
    Option('--schedule', choices=['step', 'cosine'], default='step',
           help='step: --lr_decay_epochs; cosine: timm\'s, to --min_lr'),
    Option('--warmup_epochs', type=non_negative_int, default=0,
           help='linear warm-up epochs from --warmup_lr (cosine)'),
    Option('--warmup_lr', type=non_negative_float, default=0.0, help='warm-up start'),
    Option('--min_lr', type=non_negative_float, default=0.0, help='cosine\'s floor'),
    Option('--smoothing', type=unit_interval, default=0.0, help='label smoothing'),
    Option('--mixup', type=non_negative_float, default=0.0, help='mixup alpha (0: off)'),
    Option('--cutmix', type=non_negative_float, default=0.0, help='CutMix alpha (0: off)'),
    Option('--randaugment', type=randaugment_config, default=None, metavar='CONFIG',
           help='timm\'s RandAugment, e.g. rand-m9-mstd0.5-inc1'),
    Option('--reprob', type=unit_interval, default=0.0, help='random erasing probability'))


class NamedRecipe(Component):
    """``--recipe NAME``: a paper's training values, each overridable by its own flag (the
    flags are read without it too)."""
    title = 'recipe (docs/usage.md, Recipes)'
    options = RECIPE_OPTIONS

    def enabled(self, opt):
        return getattr(opt, 'recipe', 'repdistiller') != 'repdistiller'

    def check_given(self, opt, method):
        pass

    def suffix(self, opt):
        return f'_recipe:{opt.recipe}' if self.enabled(opt) else ''


NAMED_RECIPE = NamedRecipe()


def add_recipe_options(parser, given):
    """``--recipe`` and the flags of its values; --help lists them once --recipe is given."""
    NAMED_RECIPE.add_options(parser, given, None)


def apply_recipe(opt, given):
    """Set the values of ``opt.recipe`` that the command line does not give (``given``: the
    destinations it gives); say what was set. Refuse, in one line, a schedule option the
    schedule does not read."""
    values = {dest: value for dest, value in RECIPES[opt.recipe].items() if dest not in given}
    for dest, value in values.items():
        setattr(opt, dest, value)
    if values:
        note(f'--recipe {opt.recipe}: ' + ' '.join(f'--{dest}' if value is True
                                                   else f'--{dest} {value}'
                                                   for dest, value in values.items())
             + ' (give them to change them)')
    unread = ({'warmup_epochs', 'warmup_lr', 'min_lr'} if opt.schedule == 'step'
              else {'lr_decay_epochs', 'lr_decay_rate'}) & set(given)
    if unread:
        raise UserError(f'--{sorted(unread)[0]} is not read by --schedule {opt.schedule}: '
                        f'leave it out, or give --schedule '
                        f'{"cosine" if opt.schedule == "step" else "step"}')


class DeclaredOption(NamedTuple):
    dest: str
    takes_value: bool
    shown: bool  # listed by --help (not an accepted, unused or hidden one)
    default: object = None
    several: bool = False  # takes one or more values (nargs '+')


def declared_options(parser):
    """``{flag: DeclaredOption}`` of every flag ``parser`` takes, each alias its own entry:
    what the runner routes flags and recipes by, and run files are written in, without reading
    the parser itself."""
    return {flag: DeclaredOption(action.dest, action.nargs != 0,
                                 action.help != argparse.SUPPRESS, action.default,
                                 action.nargs == '+')
            for action in parser._actions for flag in action.option_strings}


def given_dests(parser, argv):
    """The destinations of the options ``argv`` gives (not left to their defaults)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def model_name(name):
    """An argparse type: a name of the registry or ``timm:NAME`` (answered with the list, or
    timm's close names)."""
    try:
        check_model_name(name)
    except KeyError as e:
        raise argparse.ArgumentTypeError(e.args[0]) from None
    return name


def add_model_argument(parser, flag, default, help):
    """A model name of the registry or ``timm:NAME[,key=value...]`` (docs/models.md)."""
    parser.add_argument(flag, type=model_name, default=default, metavar='NAME',
                        help=f'{help} (a registry name, or timm:NAME)')


def finish_options(opt, model_name):
    """The parsed options, validated, with the shared derived values filled in (the decay
    epochs as a list, the learning rate for ``model_name``, the workers capped at the CPU
    count), frozen: nothing changes them afterwards. Raises UserError with the fix."""
    opt.lr_decay_epochs = parse_decay_epochs(opt.lr_decay_epochs)
    if opt.wandb and importlib.util.find_spec('wandb') is None:
        raise UserError('--wandb needs the wandb package: pip install wandb')
    if opt.learning_rate is None:
        opt.learning_rate = SMALL_MODEL_LR if trains_at_small_lr(model_name) else DEFAULT_LR
    opt.num_workers = max(0, min(opt.num_workers, os.cpu_count() or 1))
    return FrozenNamespace(**vars(opt))


def select_device(gpu_id=None, sync_bn=False):
    """This process's device (``--gpu_id``: the GPUs it may use); joins the process group of
    a multi-process run."""
    if gpu_id is not None and not torch.cuda.is_initialized():
        os.environ['CUDA_VISIBLE_DEVICES'] = gpu_id
    device = distributed.setup()
    if sync_bn and device.type != 'cuda':
        raise UserError('--sync_bn needs GPUs (SyncBatchNorm runs on CUDA only)')
    return device
