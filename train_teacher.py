"""Train a teacher (or a baseline student) with cross-entropy, RepDistiller-style."""
import os
import shutil
import sys

from dataset import build_loaders, data_source
from helper.cli import parse_and_note, run_cli
from core.accel import prepare_modules
from core.config import Augmentation, OutputConfig, TrainingConfig
from core.distributed import is_main
from core.util import UserError, set_seed
from core.log import collecting_notes, log, note
from helper.loops import Supervised, train_and_record
from helper.distillation import cross_entropy_smoothing
from helper.optimizers import strategy_named
from helper.options import (add_model_argument, add_recipe_options, apply_recipe, base_parser,
                            finish_options, given_dests, select_device)
from helper.run_folder import RunFolder
from models import get_model, is_timm_name


def build_parser(argv=None):
    parser = base_parser('Train a model on its own (teacher or baseline).')
    add_model_argument(parser, '--model', 'resnet110', 'architecture')
    parser.add_argument('--pretrained', action='store_true',
                        help='start a timm:NAME model from timm\'s own weights (downloaded)')
    parser.add_argument('--trial', type=int, default=0, help='experiment id (part of the folder)')
    add_recipe_options(parser, argv)
    return parser


def resolve(argv):
    """``(options, notes)`` of a command line, every default filled in; prints nothing."""
    with collecting_notes() as notes:
        opt = build_parser(argv).parse_args(argv)
        apply_recipe(opt, given_dests(build_parser(argv), argv))
        if opt.pretrained and not is_timm_name(opt.model):
            raise UserError(f'--pretrained takes timm\'s weights of a timm:NAME model, not of '
                            f'{opt.model}')
        if strategy_named(opt.opt).distils:
            raise UserError(f'--opt {opt.opt} steps a distillation\'s terms apart; a teacher '
                            f'trains on the cross-entropy alone (train_student.py takes it)')
        opt = finish_options(opt, opt.model)
    return opt, notes


def parse_option(argv=None):
    return parse_and_note(resolve, argv)


def run_name(opt):
    size = f'_img_{opt.img_size}' if getattr(opt, 'img_size', None) else ''
    pretrained = '_pretrained' if getattr(opt, 'pretrained', False) else ''
    recipe = getattr(opt, 'recipe', 'repdistiller')
    recipe = '' if recipe == 'repdistiller' else f'_recipe_{recipe}'
    return (f'{opt.model}_{opt.dataset}_lr_{opt.learning_rate}_decay_{opt.weight_decay}'
            f'{size}{pretrained}{recipe}_trial_{opt.trial}')


def run_dir(opt):
    """The folder a run with these options writes (scripts/reproduce.py looks there)."""
    return os.path.join(opt.save_dir, 'models', run_name(opt))


def run(opt):
    device = select_device(opt.gpu_id, opt.sync_bn)
    folder = RunFolder(OutputConfig.of(opt), opt.epochs, vars(opt), 'models', 'tensorboard',
                       run_name(opt))
    record = folder.record()
    set_seed(folder.seed)
    train_loader, test_loader = build_loaders(
        opt.dataset, opt.data_folder, opt.batch_size, opt.num_workers, loader=opt.loader,
        device=device, dali=opt.dali, seed=folder.seed, img_size=opt.img_size,
        augment=Augmentation.of(opt))
    source = data_source(opt.dataset, opt.data_folder, opt.img_size)
    model = get_model(opt.model, source.num_classes, opt.dataset, source.input_size,
                      opt.pretrained).to(device)
    with folder.claimed():
        training = TrainingConfig.of(opt)
        prepare_modules(training, [model], [model])
        log.info(f'training {opt.model} on {opt.dataset} ({device}) -> {folder.run_dir}')
        learner = Supervised(model, cross_entropy_smoothing(opt))
        best, last = train_and_record(learner, train_loader, test_loader, training, opt.model,
                                      folder, device, record, model.parameters,
                                      {'model': (opt.model, model)}, wandb=opt.wandb)
    log.info(f'done: {opt.model} best acc@1 {best:.2f}, last acc@1 {last:.2f}; '
             f'checkpoints in {folder.run_dir}')
    if opt.dataset == 'cifar100' and is_main():
        publish_teacher(opt, folder.run_dir)


def publish_teacher(opt, run_dir):
    """Make the finished run's weights the teacher at the path RepDistiller's distillation
    commands name, ``<save_dir>/models/<model>_vanilla/ckpt_epoch_<epochs>.pth`` (a hard link,
    else a copy), unless that file already exists (a fetched teacher, or an earlier trial's)."""
    folder = os.path.join(opt.save_dir, 'models', f'{opt.model}_vanilla')
    target = os.path.join(folder, f'ckpt_epoch_{opt.epochs}.pth')
    if os.path.exists(target):
        note(f"'{target}' already exists; left as it is")
        return
    os.makedirs(folder, exist_ok=True)
    source = os.path.join(run_dir, f'{opt.model}_last.pth')
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    log.info(f'teacher for distillation: {target} (train_student.py --path_t {target})')


def main(argv=None):
    return run_cli('train_teacher.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
