"""Prepare (or check) CKD's stored rounds for a teacher on its own, before training: the same
cache that ``train_student.py --ckd ckd`` would build on its first run.

    python scripts/prepare_ckd.py --path_t ./save/models/resnet32x4_vanilla/ckpt_epoch_240.pth
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helper import resolver  # noqa: E402
from helper.ckd import CodedTeacherInputs  # noqa: E402
from helper.cli import parse_and_note, run_cli  # noqa: E402
from helper.options import select_device  # noqa: E402
from helper.teachers import resolve_teacher  # noqa: E402


def parse_option(argv=None):
    """train_student.py's options that the preparation reads (--path_t, --dataset,
    --data_folder, --ckd_delta, --ckd_rounds, --ckd_select, --num_workers, --amp,
    --channels_last, --gpu_id); the others are accepted and ignored."""
    return parse_and_note(resolver.resolve, list(argv) + ['--ckd', 'ckd'])


def run(config):
    device = select_device(config.launch.gpu_id)
    source = config.source
    teacher = resolve_teacher(config.teacher.path, source.num_classes, config.data.dataset)
    teacher.network.to(device)
    train_set = source.splits(config.data.data_folder, ('train',))[0]
    CodedTeacherInputs().prepare(config, [teacher], train_set, device, seed=0, rounds=None)


def main(argv=None):
    return run_cli('scripts/prepare_ckd.py', parse_option, run,
                   sys.argv[1:] if argv is None else argv)


if __name__ == '__main__':
    sys.exit(main())
