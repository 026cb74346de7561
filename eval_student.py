"""Evaluate a checkpoint (student or teacher) on a data set's test split: top-1 and top-5.

    python eval_student.py --path save/student_model/<run>/resnet8x4_best.pth

The architecture comes from the checkpoint or its folder name (or ``--model``), the data set
from the options the run stored (or ``--dataset``). Students of methods that predict through
their own modules (SimKD: a projector and a copy of the teacher's classifier) are rebuilt with
the options and modules stored in their checkpoint; the teacher's file is not needed. A DML
checkpoint's peer is evaluated too. Only the test split is read.
"""
import os
import sys

from dataset import DATASETS, build_loaders, data_source
from distiller_zoo import Distiller
from helper.cli import run_cli
from core.checkpoint import read_checkpoint
from core.util import FrozenNamespace, non_negative_int, positive_int
from core.log import log
from helper.distillation import rebuild_student, run_options
from helper.loops import validate
from helper.options import Parser, model_name, select_device
from helper.teachers import get_teacher_name, load_weights
from models import get_model, is_model_name


def parse_option(argv=None):
    parser = Parser('Evaluate a checkpoint on the test set.')
    parser.add_argument('--path', required=True, help='checkpoint file')
    parser.add_argument('--model', default=None, type=model_name, metavar='NAME',
                        help='architecture (default: from the checkpoint or its folder)')
    parser.add_argument('--dataset', default=None, choices=list(DATASETS),
                        help='data set (default: the one the run trained on, else cifar100)')
    parser.add_argument('--data_folder', default='./data', help='where data sets live')
    parser.add_argument('--img_size', type=positive_int, default=None,
                        help='side of the images the network sees (default: the run\'s)')
    parser.add_argument('--batch_size', type=positive_int, default=64,
                        help='evaluation batch size')
    parser.add_argument('--num_workers', type=non_negative_int, default=8,
                        help='data loading processes (capped at the number of CPU cores)')
    parser.add_argument('--gpu_id', default=None, help='GPU(s) to use (CUDA_VISIBLE_DEVICES)')
    opt = parser.parse_args(argv)
    opt.num_workers = min(opt.num_workers, os.cpu_count() or 1)
    return FrozenNamespace(**vars(opt))


def stored_dataset(ckpt, path):
    """The data set the checkpoint's run trained on (see ``run_options``); None when unknown."""
    dataset = run_options(ckpt, path).get('dataset')
    return dataset if dataset in DATASETS else None


def build_predictor(ckpt, opt, num_classes, dataset=None, image_size=None):
    """Return ``(module, predict, name)``: the module holding the weights, the function that
    maps images to logits, and a name for the report."""
    arch = opt.model or get_teacher_name(opt.path, ckpt)
    fix = 'Pass the right --model' if opt.model else 'Pass --model (or --dataset)'
    module = rebuild_student(ckpt, arch, num_classes, dataset, opt.path, fix, image_size)
    if isinstance(module, Distiller):
        return module, module.forward_test, f'{arch} ({module.config.name})'
    return module, module, arch


def build_peer(ckpt, path, num_classes, dataset, image_size=None):
    """A DML checkpoint's second network (under ``'peer'``), named by the run's ``--model_t``;
    None for other checkpoints."""
    arch = run_options(ckpt, path).get('model_t')
    if 'peer' not in ckpt.learner or not is_model_name(arch):
        return None
    return load_weights(get_model(arch, num_classes, dataset, image_size), ckpt.learner['peer'],
                        path, arch, num_classes, dataset, 'Its peer is not the run\'s --model_t',
                        image_size=image_size)


def report(name, dataset, count, result):
    log.info(f'{name} on {dataset} test ({count} images): acc@1 {result["top1"]:.2f} acc@5 '
             f'{result["top5"]:.2f} loss {result["loss"]:.4f}')


def run(opt):
    device = select_device(opt.gpu_id)
    ckpt = read_checkpoint(opt.path)
    dataset = opt.dataset or stored_dataset(ckpt, opt.path) or 'cifar100'
    stored = run_options(ckpt, opt.path)
    img_size = opt.img_size or stored.get('img_size')
    # build_loaders gives the test loader half the batch size (RepDistiller's convention).
    _, test_loader = build_loaders(dataset, opt.data_folder, 2 * opt.batch_size,
                                   opt.num_workers, loader='classic', device=device, train=False,
                                   img_size=img_size)
    source = data_source(dataset, opt.data_folder, img_size)
    num_classes = source.num_classes
    module, predict, name = build_predictor(ckpt, opt, num_classes, dataset, source.input_size)
    module.to(device).eval()
    result = validate(test_loader, predict, device)
    report(name, dataset, len(test_loader.dataset), result)
    peer = build_peer(ckpt, opt.path, num_classes, dataset, source.input_size)
    if peer is not None:  # DML: the peer trained beside the student
        peer.to(device).eval()
        report(f'peer {run_options(ckpt, opt.path)["model_t"]}', dataset,
               len(test_loader.dataset), validate(test_loader, peer, device, desc='peer'))
    return result


def main(argv=None):
    return run_cli('eval_student.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
