"""Distil a frozen teacher into a student, RepDistiller-style (``--distill <method>``)."""
import argparse
import sys

from dataset import DATASETS, get_dataloaders
from distiller_zoo import METHODS, get_method
from distiller_zoo.options import method_options
from helper.core.accel import make_sgd, prepare_modules
from helper.teachers import is_teacher_file, load_teacher, teacher_identity
from helper.ckd import coded_train_loader, rounds_path
from helper.cli import run_cli
from helper.logger import RunLogger
from helper.loops import Trainer, validate
from helper.options import add_model_argument, base_parser, finish_options, select_device
from helper.run_folder import RunFolder, first_epoch
from helper.teacher_cache import cached_teacher_loader, check_method
from helper.core.util import UserError, non_negative_float, positive_float, positive_int, run_label, set_seed
from models import get_model


# What defines a distillation run besides its method, architectures and data set: resuming
# with any of these changed, or the method's own options, is refused.
DEFINING = ('gamma', 'alpha', 'beta', 'delta', 'kd_T', 'ckd', 'ckd_delta', 'ckd_rounds',
            'ckd_select', 'teacher_cache')


def method_list():
    """``kd, hint (fitnet), ...``: every --distill name, aliases in brackets."""
    return ', '.join(m.names[0] + (f' ({", ".join(m.names[1:])})' if len(m.names) > 1 else '')
                     for m in dict.fromkeys(METHODS.values()))


def build_parser(distill=None):
    """The common options, the options of ``distill`` (shown by --help), and every other
    method's options (accepted, as RepDistiller's parser accepted them, but not shown)."""
    parser = base_parser('Distil a teacher into a student.')
    parser.add_argument('--path_t', type=str, default=None,
                        help='teacher checkpoint (or torchvision:<name>); required, except '
                             'for methods that train both networks (dml)')
    add_model_argument(parser, '--model_s', 'resnet8', 'student architecture')
    add_model_argument(parser, '--model_t', None, 'with --distill dml and no --path_t: the '
                       'peer\'s architecture, trained from scratch')
    parser.add_argument('--distill', type=str, default='kd', choices=sorted(METHODS),
                        metavar='NAME', help='distillation method (listed below)')
    parser.add_argument('--trial', type=run_label, default='1',
                        help='experiment id (part of the folder)')
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
    ckd = parser.add_argument_group(
        'CKD: the teacher sees adaptive-JPEG-coded inputs (README, CKD; 32x32 in-memory data)')
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
                             '(methods that read only those; 32x32 in-memory data; README, '
                             'Teacher-output cache)')
    chosen = METHODS[distill].options if distill in METHODS else ()
    if chosen:
        group = parser.add_argument_group(f'options of --distill {distill}')
        for option in chosen:
            option.add_to(group)
    shown = {option.dest for option in chosen}
    for option in method_options(dict.fromkeys(METHODS.values())):
        if option.dest not in shown:
            option.add_to(parser, hidden=True)
    if distill is None:
        parser.epilog = (f'methods (--distill NAME; add --help to see a method\'s own options): '
                         f'{method_list()}')
    return parser


def given_distill(argv):
    """The --distill value of a command line, None when it names none."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--distill')
    return pre.parse_known_args(argv)[0].distill


def parse_option(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    opt = build_parser(given_distill(argv)).parse_args(argv)
    method = get_method(opt.distill)
    own = {option.dest for option in method.options}
    for option in method_options(dict.fromkeys(METHODS.values())):
        value = getattr(opt, option.dest)
        if option.dest not in own and value != option.default:
            print(f'note: --distill {opt.distill} does not use {option.flags[-1]} '
                  f'(given {value})', flush=True)
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
    if opt.path_t is not None and opt.model_t is not None:
        raise UserError('--model_t is only for starting a --distill dml peer from scratch; the '
                        'teacher\'s architecture comes from --path_t')
    check_coded_and_cached(opt, method)
    method.check_options(opt)
    return finish_options(opt, opt.model_s)


def check_coded_and_cached(opt, method):
    """CKD's and the teacher-output cache's flags, checked before any work."""
    for flag, on in (('--ckd', opt.ckd), ('--teacher_cache', opt.teacher_cache)):
        if on and not DATASETS[opt.dataset].codable:
            raise UserError(f'{flag} works on 32x32 data sets held in memory (cifar10, '
                            f'cifar100, synthetic), not --dataset {opt.dataset}')
    if opt.ckd:
        if opt.ckd_delta > 100:
            raise UserError(f'--ckd_delta must be 1 to 100, got {opt.ckd_delta}')
        if method.rotation_views:
            raise UserError(f'--ckd cannot combine with --distill {opt.distill}, which builds '
                            f'its own rotated views of each image')
        if opt.path_t is None:
            raise UserError('--ckd needs the teacher\'s file (--path_t): its rounds are cached '
                            'beside it')
    if opt.teacher_cache:
        check_method(method, opt)
        if opt.ckd and opt.teacher_cache != opt.ckd_rounds:
            raise UserError(f'with --ckd the cache stores CKD\'s rounds: give --teacher_cache '
                            f'{opt.ckd_rounds} (= --ckd_rounds)')
        if not opt.ckd and opt.teacher_cache > opt.epochs:
            raise UserError(f'--teacher_cache {opt.teacher_cache} would store rounds that a run '
                            f'of {opt.epochs} epochs never uses (one round per epoch); give at '
                            f'most --teacher_cache {opt.epochs}')
    if (opt.ckd or opt.teacher_cache) and opt.path_t and not is_teacher_file(opt.path_t):
        raise UserError(f'{"--ckd" if opt.ckd else "--teacher_cache"} keys its stored data by '
                        f'the teacher file; give --path_t a file')


def run_name(opt, method):
    """RepDistiller's folder name, plus what else tells runs apart: the fourth weight, the
    method's options that differ from their defaults, CKD and the cache. A DML peer trained
    from scratch is named as such."""
    teacher = opt.model_t if opt.path_t else f'{opt.model_t}_scratch'
    weights = f'_r:{opt.gamma}_a:{opt.alpha}_b:{opt.beta}' + (
        f'_d:{opt.delta}' if opt.delta is not None else '')
    options = ''.join(f'_{name}:{value}' for name, value in method.changed_options(opt).items())
    return (f'S:{opt.model_s}_T:{teacher}_{opt.dataset}_{opt.distill}{weights}_{opt.trial}'
            + options + (f'_ckd:{opt.ckd}' if opt.ckd else '')
            + (f'_cache:{opt.teacher_cache}' if opt.teacher_cache else ''))


def run(opt):
    device = select_device(opt)
    method = get_method(opt.distill)
    source = DATASETS[opt.dataset]
    if opt.path_t:
        teacher, opt.model_t = load_teacher(opt.path_t, source.num_classes, opt.dataset)
    identity = {'teacher': teacher_identity(opt.path_t)}
    ckd_rounds = rounds_path(opt) if opt.ckd else None
    folder = RunFolder(opt, 'student_model', 'student_tensorboards', run_name(opt, method),
                       refused=DEFINING + tuple(o.dest for o in method.options),
                       identity=identity)
    opt.seed = folder.seed
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
        distiller = method(student, teacher, opt, source.image_size).to(device)
    except ValueError as e:
        raise UserError(f'--distill {opt.distill} cannot distil {opt.model_t} into '
                        f'{opt.model_s}: {e}') from None
    with folder.claimed():
        prepare_modules(opt, [distiller], [student, teacher])
        print(f'distilling {opt.model_t} -> {opt.model_s} with {opt.distill} on {opt.dataset} '
              f'({device}); weights -r {opt.gamma} -a {opt.alpha} -b {opt.beta}'
              + (f' -d {opt.delta}' if opt.delta is not None else '') + f' -> {folder.run_dir}',
              flush=True)
        if distiller.describe():
            print(f'{opt.distill}: {distiller.describe()}', flush=True)
        teacher_acc = None  # a peer trained from scratch has none yet
        if opt.path_t:
            teacher_acc = validate(test_loader, teacher, device, desc='teacher', opt=opt)['top1']
            print(f'teacher {opt.model_t}: acc@1 {teacher_acc:.2f}', flush=True)

        init_loader = None
        if opt.teacher_cache:
            train_loader, distiller.teacher_store = cached_teacher_loader(
                opt, teacher, method, device, ckd_rounds)
        elif opt.ckd:  # init stages keep the ordinary batches, as the authors' code does
            init_loader, train_loader = train_loader, coded_train_loader(opt, teacher, method,
                                                                         device, ckd_rounds)
            distiller.coded_teacher = True

        logger = RunLogger(folder.run_dir, folder.tb_dir, first_epoch(folder.resume))
        trainer = Trainer(distiller, train_loader, test_loader, opt, opt.model_s, folder.run_dir,
                          logger, device, init_loader=init_loader, identity=identity)
        best, last = trainer.run(lambda: make_sgd(distiller.trainable_parameters(), opt, device),
                                 folder.resume)
        logger.write_summary(opt, best, last, trainer.wall_seconds(), device,
                             {'student': (opt.model_s, student), 'teacher': (opt.model_t, teacher)},
                             teacher_acc=teacher_acc, method=opt.distill)
        logger.close()
    teacher_note = f' ({teacher_acc:.2f})' if teacher_acc is not None else ''
    print(f'done: {opt.model_t}{teacher_note} -> {opt.model_s} with {opt.distill}: best acc@1 '
          f'{best:.2f}, last acc@1 {last:.2f}; checkpoints in {folder.run_dir}')


def main(argv=None):
    return run_cli('train_student.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
