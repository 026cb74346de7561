"""Linear probe of a distilled student on another data set (STL-10, TinyImageNet-200): the
student (and any modules its prediction goes through, e.g. SimKD's projector) is frozen, and a
new linear classifier is trained on the features its prediction uses.

    python transfer_student.py --path_s <student checkpoint> --model_s wrn_16_2 --dataset stl10 --trial 1

As in the authors' script, the frozen network stays in train mode during training, so its
BatchNorm statistics adapt to the new data; only the linear layer learns. Runs write the same
files as training runs (checkpoints, metrics.jsonl, summary.json), so scripts/summarize.py
tabulates them (``python scripts/summarize.py save/transfer``).
"""
import os
import sys

import torch
import torch.nn as nn

from dataset import DATASETS, build_loaders
from distiller_zoo import Distiller
from helper.cli import parse_and_note, run_cli
from core.accel import prepare_modules
from core.config import OutputConfig, TrainingConfig
from core.checkpoint import read_checkpoint
from core.files import file_digest
from core.learner import Learner
from core.util import UserError, run_label, set_seed
from core.log import collecting_notes, log
from helper.distillation import rebuild_student, run_options
from helper.loops import train_and_record
from helper.options import add_model_argument, base_parser, finish_options, select_device
from helper.run_folder import RunFolder
from helper.teachers import get_teacher_name

TARGETS = ('stl10', 'tinyimagenet')


def build_parser():
    parser = base_parser('Linear probe of a frozen distilled student on STL-10 or '
                         'TinyImageNet-200.')
    parser.add_argument('--path_s', type=str, required=True, help='student checkpoint')
    add_model_argument(parser, '--model_s', None, 'student architecture (default: from the '
                       'checkpoint or its folder)')
    parser.add_argument('--trial', type=run_label, default='1',
                        help='experiment id (part of the folder)')
    # The authors' recipe: 120 epochs, lr x0.1 at 30/60/90.
    parser.set_defaults(dataset='stl10', epochs=120, lr_decay_epochs='30,60,90', save_freq=30)
    return parser


def resolve(argv):
    """``(options, notes)`` of a command line, every default filled in; prints nothing."""
    with collecting_notes() as notes:
        opt = build_parser().parse_args(argv)
        if opt.dataset not in TARGETS:
            raise UserError(f"--dataset {opt.dataset}: a linear probe transfers to one of "
                            f"{', '.join(TARGETS)}")
        if opt.model_s is None:  # the student's architecture sets the default learning rate
            opt.model_s = get_teacher_name(opt.path_s, read_checkpoint(opt.path_s))
        opt = finish_options(opt, opt.model_s)
    return opt, notes


def parse_option(argv=None):
    return parse_and_note(resolve, argv)


class LinearProbe(Learner):
    """A learner (see helper/loops.py) training one linear layer on frozen features.
    ``backbone`` is the student, or the method that predicts through its own modules."""

    def __init__(self, backbone, features, feature_dim, num_classes):
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.features = features
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)
        self.criterion = nn.CrossEntropyLoss()

    def forward_train(self, batch):
        with torch.no_grad():
            feats = self.features(batch.image)
        logits = self.fc(feats)
        return logits, {'cls': self.criterion(logits, batch.target)}

    def forward_test(self, image):
        return self.fc(self.features(image))

    def checkpoint_state(self):
        """The student under RepDistiller's 'model' key (its BN statistics adapted to the new
        data), a method's own modules as the method saves them, the probe under 'probe'."""
        if isinstance(self.backbone, Distiller):
            state = self.backbone.checkpoint_state()
        else:
            state = {'model': self.backbone.state_dict()}
        return {**state, 'probe': self.fc.state_dict()}

    def load_checkpoint_state(self, state):
        if isinstance(self.backbone, Distiller):
            self.backbone.load_checkpoint_state(state)
        else:
            self.backbone.load_state_dict(state['model'])
        self.fc.load_state_dict(state['probe'])


def build_backbone(ckpt, opt, source):
    """The frozen network and its feature function: the student alone, or rebuilt with the
    method modules its prediction goes through."""
    dataset = source.get('dataset', 'cifar100')
    backbone = rebuild_student(ckpt, opt.model_s, DATASETS[dataset].num_classes, dataset,
                               opt.path_s, 'Pass the right --model_s')
    if isinstance(backbone, Distiller):
        return backbone, backbone.prediction_features
    return backbone, lambda image: backbone(image, is_feat=True)[0][-1]


def probed_checkpoint(path, arch):
    """Which checkpoint of its run a probe reads, for the folder name: 'best', 'last',
    'ckpt_epoch_240', ..."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem[len(arch) + 1:] if stem.startswith(f'{arch}_') else stem


def run_name(opt):
    probed = probed_checkpoint(opt.path_s, opt.model_s)
    return (f'{os.path.basename(os.path.dirname(os.path.abspath(opt.path_s)))}'
            f'_{probed}_to_{opt.dataset}_trial_{opt.trial}')


def run_dir(opt):
    """The folder a run with these options writes (scripts/reproduce.py looks there)."""
    return os.path.join(opt.save_dir, 'transfer', run_name(opt))


def run(opt):
    device = select_device(opt.gpu_id, opt.sync_bn)
    ckpt = read_checkpoint(opt.path_s)
    source = run_options(ckpt, opt.path_s)
    # The student's method and teacher: the row and column summarize.py files the probe under.
    student_of = dict(distill=source.get('distill', 'vanilla'), alpha=source.get('alpha', 0.0),
                      model_t=source.get('model_t', '-'))
    probed = probed_checkpoint(opt.path_s, opt.model_s)
    identity = {'source': f'sha256 {file_digest(opt.path_s)}'}
    folder = RunFolder(OutputConfig.of(opt), opt.epochs, vars(opt), 'transfer',
                       'transfer_tensorboards', run_name(opt), identity=identity,
                       resolved=student_of)
    record = folder.record(**student_of)
    set_seed(folder.seed)
    backbone, features = build_backbone(ckpt, opt, source)
    backbone.to(device)
    train_loader, test_loader = build_loaders(
        opt.dataset, opt.data_folder, opt.batch_size, opt.num_workers, loader=opt.loader,
        device=device, seed=folder.seed)
    num_classes = DATASETS[opt.dataset].num_classes
    with torch.no_grad():
        backbone.eval()
        dim = features(next(iter(test_loader)).image[:2].to(device)).shape[1]
    probe = LinearProbe(backbone, features, dim, num_classes).to(device)
    method, teacher = student_of['distill'], student_of['model_t']
    with folder.claimed():
        training = TrainingConfig.of(opt)
        prepare_modules(training, [probe], [probe])
        log.info(f'linear probe of {opt.model_s} ({method} from {teacher}) on {opt.dataset}: '
                 f'{dim} features -> {num_classes} classes ({device}) -> {folder.run_dir}')
        best, last = train_and_record(
            probe, train_loader, test_loader, training, opt.model_s, folder, device, record,
            probe.fc.parameters, {'student': (opt.model_s, backbone)}, identity=identity,
            wandb=opt.wandb, teacher=teacher, method=method, source=opt.path_s, source_args=source,
            probed=probed)
    log.info(f'done: {opt.model_s} ({method}) on {opt.dataset}: best acc@1 {best:.2f}, last '
             f'acc@1 {last:.2f}; checkpoints in {folder.run_dir}')


def main(argv=None):
    return run_cli('transfer_student.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
