"""Distil a frozen teacher into a student, RepDistiller-style (``--distill <method>``)."""
import sys

from dataset import DATASETS, get_dataloaders
from distiller_zoo import METHODS, get_method
from helper.accel import make_sgd, prepare_modules
from helper.checkpoint import load_teacher
from helper.ckd import coded_train_loader
from helper.teacher_cache import cached_teacher_loader, check_method
from helper.logger import RunLogger
from helper.loops import Trainer, validate
from helper.options import (add_model_argument, base_parser, create_run_folders, finish_options,
                            prepare_run, select_device)
from helper.cli import run_cli
from helper.util import (UserError, non_negative_float, non_negative_int, positive_float,
                         positive_int, set_seed, unit_interval)
from models import get_model


def parse_option(argv=None):
    parser = base_parser('Distil a teacher into a student.')
    parser.add_argument('--path_t', type=str, default=None,
                        help='teacher checkpoint (or torchvision:<name>); required, except '
                             'for methods that train both networks (dml)')
    add_model_argument(parser, '--model_s', 'resnet8', 'student architecture')
    add_model_argument(parser, '--model_t', None, 'with --distill dml and no --path_t: the '
                       'peer\'s architecture, trained from scratch')
    parser.add_argument('--distill', type=str, default='kd', choices=sorted(METHODS),
                        help='distillation method')
    parser.add_argument('--trial', type=str, default='1', help='experiment id (part of the folder)')
    parser.add_argument('-r', '--gamma', '-c', '--cls', dest='gamma', type=non_negative_float,
                        default=None, help='weight of the cross-entropy loss (default: the '
                                           'method\'s)')
    parser.add_argument('-a', '--alpha', dest='alpha', type=non_negative_float, default=None,
                        help='weight of the KD (KL) loss (default: the method\'s; for mlkd, '
                             'the correlation loss)')
    parser.add_argument('-d', '--div', dest='div', type=non_negative_float, default=None,
                        help='SimKD\'s spelling of -a, except for mlkd, where it weighs the '
                             'alignment loss (default: the method\'s)')
    parser.add_argument('-b', '--beta', type=non_negative_float, default=None,
                        help='weight of the method\'s own loss (default: the method\'s)')
    parser.add_argument('--kd_T', type=positive_float, default=4, help='temperature of the KD loss')
    parser.add_argument('--init_epochs', type=non_negative_int, default=30,
                        help='epochs of the init stage of two-stage methods')
    parser.add_argument('--hint_layer', type=int, default=2, choices=[0, 1, 2, 3, 4],
                        help='feature index used by FitNet')
    parser.add_argument('--feat_dim', type=positive_int, default=128,
                        help='embedding size (CRD, CC)')
    parser.add_argument('--mode', type=str, default='exact', choices=['exact', 'relax'],
                        help='CRD positive sampling')
    parser.add_argument('--nce_k', type=positive_int, default=16384,
                        help='CRD negatives per sample (RRD: queue length)')
    parser.add_argument('--nce_t', type=positive_float, default=0.07, help='CRD temperature')
    parser.add_argument('--nce_m', type=unit_interval, default=0.5, help='CRD memory momentum')
    ckd = parser.add_argument_group(
        'CKD: the teacher sees adaptive-JPEG-coded inputs (README, CKD)')
    ckd.add_argument('--ckd', choices=['ckd', 'clean'], default=None,
                     help='ckd: the teacher sees each image\'s stored JPEG-coded copy, the '
                          'student the clean image (same crop and flip); clean: the same stored '
                          'rounds, the teacher on the clean view (the authors\' control)')
    ckd.add_argument('--ckd_delta', type=positive_int, default=5,
                     help='quality step of the JPEG candidates (0, delta, ..., 100)')
    ckd.add_argument('--ckd_rounds', type=positive_int, default=20,
                     help='rounds of stored choices; each epoch uses one, cycling')
    ckd.add_argument('--ckd_select', choices=['correct', 'all'], default='correct',
                     help='candidates a round may choose: those the teacher classifies '
                          'correctly (the authors\' release), or all')
    parser.add_argument('--teacher_cache', type=positive_int, default=None, metavar='R',
                        help='fix R rounds of crops and flips, run the teacher once per round and '
                             'store its logits and embeddings under <save_dir>/teacher_cache; '
                             'epochs then train from the store, with no teacher forward '
                             '(methods that read only those; README, Teacher-output cache)')
    for method in dict.fromkeys(METHODS.values()):  # each method class once, aliases aside
        if 'add_arguments' in vars(method):  # a subclass shares its parent's options
            method.add_arguments(parser)
    opt = parser.parse_args(argv)
    method = get_method(opt.distill)
    # A method with a fourth weight (MLKD) takes it from -d; for the others -d is -a.
    opt.delta = opt.div if len(method.default_weights) > 3 else None
    if opt.div is not None and opt.delta is None:
        if opt.alpha is not None and opt.alpha != opt.div:
            raise UserError('-a and -d (--div) both set the KL weight; give one of them')
        opt.alpha = opt.div
    for name, default in zip(('gamma', 'alpha', 'beta', 'delta'), method.default_weights):
        if getattr(opt, name) is None:
            setattr(opt, name, default)
    if opt.path_t is None and (method.teacher_frozen or opt.model_t is None):
        raise UserError('--path_t (the teacher checkpoint) is required' + (
            '' if method.teacher_frozen else f'; --distill {opt.distill} can instead start '
            f'the second network from scratch with --model_t NAME'))
    if opt.ckd and opt.ckd_delta > 100:
        raise UserError(f'--ckd_delta must be 1 to 100, got {opt.ckd_delta}')
    if opt.ckd and method.rotation_views:
        raise UserError(f'--ckd cannot combine with --distill {opt.distill}, which builds its '
                        f'own rotated views of each image')
    if opt.ckd and opt.path_t is None:
        raise UserError('--ckd needs the teacher\'s file (--path_t): its rounds are cached '
                        'beside it')
    if opt.path_t is not None and opt.model_t is not None:
        raise UserError('--model_t is only for starting a --distill dml peer from scratch; the '
                        'teacher\'s architecture comes from --path_t')
    return finish_options(opt, opt.model_s)


def run(opt):
    device = select_device(opt)
    method = get_method(opt.distill)
    if opt.path_t:
        teacher, opt.model_t = load_teacher(opt.path_t, DATASETS[opt.dataset].num_classes,
                                            opt.dataset)
    run_name = (f'S:{opt.model_s}_T:{opt.model_t}_{opt.dataset}_{opt.distill}'
                f'_r:{opt.gamma}_a:{opt.alpha}_b:{opt.beta}_{opt.trial}'
                + (f'_ckd:{opt.ckd}' if opt.ckd else '')
                + (f'_cache:{opt.teacher_cache}' if opt.teacher_cache else ''))
    run_dir, tb_dir, resume = prepare_run(opt, 'student_model', 'student_tensorboards', run_name)
    set_seed(opt.seed)
    train_loader, test_loader, num_classes = get_dataloaders(
        opt.dataset, opt.data_folder, opt.batch_size, opt.num_workers,
        variant=method.data_variant, k=opt.nce_k, mode=opt.mode, seed=opt.seed,
        pin_memory=device.type == 'cuda', loader=opt.loader, device=device,
        dali=opt.dali, rotations=method.rotation_views)
    opt.n_data = len(train_loader.dataset)
    student = get_model(opt.model_s, num_classes, opt.dataset)
    if not opt.path_t:  # a peer trained from scratch (DML)
        teacher = get_model(opt.model_t, num_classes, opt.dataset)
    try:
        distiller = method(student, teacher, opt, DATASETS[opt.dataset].image_size).to(device)
    except ValueError as e:
        raise UserError(f'--distill {opt.distill} cannot distil {opt.model_t} into '
                        f'{opt.model_s}: {e}') from None
    if opt.teacher_cache:
        check_method(method, opt)  # before anything is created
    create_run_folders(run_dir, tb_dir)
    prepare_modules(opt, [distiller], [student, teacher])
    print(f'distilling {opt.model_t} -> {opt.model_s} with {opt.distill} on {opt.dataset} '
          f'({device}); weights -r {opt.gamma} -a {opt.alpha} -b {opt.beta}'
          + (f' -d {opt.delta}' if opt.delta is not None else '') + f' -> {run_dir}',
          flush=True)
    if distiller.describe():
        print(f'{opt.distill}: {distiller.describe()}', flush=True)
    teacher_acc = None  # a peer trained from scratch has none yet
    if opt.path_t:
        teacher_acc = validate(test_loader, teacher, device, desc='teacher', opt=opt)['top1']
        print(f'teacher {opt.model_t}: acc@1 {teacher_acc:.2f}', flush=True)

    init_loader = None
    if opt.teacher_cache:
        train_loader, distiller.teacher_store = cached_teacher_loader(opt, teacher, method,
                                                                      device)
    elif opt.ckd:  # init stages keep the ordinary batches, as the authors' code does
        init_loader, train_loader = train_loader, coded_train_loader(opt, teacher, method, device)
        distiller.coded_teacher = True

    logger = RunLogger(run_dir, tb_dir)
    trainer = Trainer(distiller, train_loader, test_loader, opt, opt.model_s, run_dir, logger,
                      device, init_loader=init_loader)
    best, last = trainer.run(lambda: make_sgd(distiller.trainable_parameters(), opt, device),
                             resume)
    logger.write_summary(opt, best, last, trainer.wall_seconds(), device,
                         {'student': (opt.model_s, student), 'teacher': (opt.model_t, teacher)},
                         teacher_acc=teacher_acc, method=opt.distill)
    logger.close()
    teacher_note = f' ({teacher_acc:.2f})' if teacher_acc is not None else ''
    print(f'done: {opt.model_t}{teacher_note} -> {opt.model_s} with {opt.distill}: best acc@1 '
          f'{best:.2f}, last acc@1 {last:.2f}; checkpoints in {run_dir}')


def main(argv=None):
    return run_cli('train_student.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
