"""Evaluate a checkpoint (student or teacher) on a data set's test split: top-1 and top-5.

    python eval_student.py --path save/student_model/<run>/resnet8x4_best.pth

The architecture comes from the checkpoint or its folder name (or ``--model``), the data set
from the options the run stored (or ``--dataset``). Students of methods that predict through
their own modules (SimKD: a projector and a copy of the teacher's classifier) are rebuilt with
the options and modules stored in their checkpoint; the teacher's file is not needed. Only the
test split is read.
"""
import os
import sys

from dataset import DATASETS, get_dataloaders
from distiller_zoo import Distiller
from helper.checkpoint import get_teacher_name, load_checkpoint, rebuild_student, run_options
from helper.loops import validate
from helper.options import Parser, select_device
from helper.cli import run_cli
from helper.util import non_negative_int, positive_int
from models import model_dict


def parse_option(argv=None):
    parser = Parser('Evaluate a checkpoint on the test set.')
    parser.add_argument('--path', required=True, help='checkpoint file')
    parser.add_argument('--model', default=None, choices=sorted(model_dict), metavar='NAME',
                        help='architecture (default: from the checkpoint or its folder)')
    parser.add_argument('--dataset', default=None, choices=list(DATASETS),
                        help='data set (default: the one the run trained on, else cifar100)')
    parser.add_argument('--data_folder', default='./data', help='where data sets live')
    parser.add_argument('--batch_size', type=positive_int, default=64,
                        help='evaluation batch size')
    parser.add_argument('--num_workers', type=non_negative_int, default=8,
                        help='data loading processes (capped at the number of CPU cores)')
    parser.add_argument('--gpu_id', default=None, help='GPU(s) to use (CUDA_VISIBLE_DEVICES)')
    opt = parser.parse_args(argv)
    opt.num_workers = min(opt.num_workers, os.cpu_count() or 1)
    return opt


def stored_dataset(ckpt, path):
    """The data set the checkpoint's run trained on (see ``run_options``); None when unknown."""
    dataset = run_options(ckpt, path).get('dataset')
    return dataset if dataset in DATASETS else None


def build_predictor(ckpt, opt, num_classes):
    """Return ``(module, predict, name)``: the module holding the weights, the function that
    maps images to logits, and a name for the report."""
    arch = opt.model or get_teacher_name(opt.path, ckpt)
    module = rebuild_student(ckpt, arch, num_classes, opt.dataset, opt.path,
                             'pass --model or --dataset')
    if isinstance(module, Distiller):
        return module, module.forward_test, f'{arch} ({module.options["distill"]})'
    return module, module, arch


def run(opt):
    device = select_device(opt)
    ckpt = load_checkpoint(opt.path)
    opt.dataset = opt.dataset or stored_dataset(ckpt, opt.path) or 'cifar100'
    # get_dataloaders gives the test loader half the batch size (RepDistiller's convention).
    _, test_loader, num_classes = get_dataloaders(opt.dataset, opt.data_folder,
                                                  2 * opt.batch_size, opt.num_workers,
                                                  train=False)
    module, predict, name = build_predictor(ckpt, opt, num_classes)
    module.to(device).eval()
    result = validate(test_loader, predict, device)
    print(f'{name} on {opt.dataset} test ({len(test_loader.dataset)} images): '
          f'acc@1 {result["top1"]:.2f} acc@5 {result["top5"]:.2f} loss {result["loss"]:.4f}')
    return result


def main(argv=None):
    return run_cli('eval_student.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
