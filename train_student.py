"""Distil a frozen teacher into a student, RepDistiller-style (``--distill <method>``)."""
import sys

from dataset import build_loaders
from distiller_zoo import get_method
from distiller_zoo.sources import FrozenTeacher, TeacherEnsemble, TrainedPeer
from core.accel import prepare_modules
from core.distributed import is_main
from core.log import log
from core.util import set_seed
from helper.cli import parse_and_note, run_cli
from helper.distillation import build_distiller, for_teacher
from helper.loops import train_and_record, validate
from helper.optimizers import strategy_of
from helper.components import upgraded
from helper.options import select_device
from helper.resolver import (build_parser, defining_options, describe_components, older_run_names,
                             resolve, run_name)
from helper.run_file import write_run_file
from helper.run_folder import RunFolder
from helper.teachers import renormalize_inputs, resolve_teacher
from models import get_model


def parse_option(argv=None):
    """The ``RunConfig`` of a command line (``helper.resolver.resolve``), its notes printed."""
    return parse_and_note(resolve, argv)


def run(config):
    device = select_device(config.launch.gpu_id, config.training.sync_bn)
    method, source, training = get_method(config.distill), config.source, config.training
    dataset, model_s, name = config.data.dataset, config.model_s, config.distill
    teachers = [resolve_teacher(path, source.num_classes, dataset, config.teacher.named,
                                source.input_size)
                for path in (config.teacher.path,) + config.teacher.more]
    for t in teachers:
        if t.input_norm is not None and t.input_norm != (source.mean, source.std):
            renormalize_inputs(t.network, (source.mean, source.std), t.input_norm)
            log.info(f'teacher {t.arch} expects inputs normalised with mean {t.input_norm[0]} '
                     f'and std {t.input_norm[1]}: its inputs are renormalised from the data '
                     f'set\'s')
    teacher = teachers[0]  # what a method reads besides logits, and its architecture
    name_t = '+'.join(t.arch for t in teachers)  # the folder's T:, the checkpoints' model_t
    identity = {'teacher': ' + '.join(t.identity for t in teachers)}
    folder = RunFolder(config.output, training.epochs, config.options, 'student_model',
                       'student_tensorboards', run_name(config, name_t),
                       refused=defining_options(method), upgrade=upgraded,
                       identity=identity, resolved={'model_t': name_t},
                       older_names=older_run_names(config, name_t))
    record = folder.record(model_t=name_t)
    seed = folder.seed
    set_seed(seed)
    loaders = dict(**config.data.loader_options(), device=device, seed=seed,
                   spec=method.batch_spec(config.method.options))
    plain_loader, test_loader = build_loaders(dataset, **loaders)
    train_set = plain_loader.dataset
    if len(teachers) > 1:
        teacher_source = TeacherEnsemble([t.network for t in teachers], config.teacher.weights)
    else:
        teacher_source = (TrainedPeer if method.needs.teacher_trains else FrozenTeacher)(
            teacher.network)
    live_source = teacher_source  # the live teachers (their prediction, before any cache)
    for plugin in config.plugins:
        teacher_source = plugin.source(config, teachers, train_set, seed, teacher_source)
    method_config = for_teacher(config.method, method, teacher.arch, len(train_set))
    student = get_model(model_s, source.num_classes, dataset, source.input_size,
                        config.options.get('pretrained', False))
    distiller = build_distiller(method, student, teacher_source, method_config).to(device)
    with folder.claimed():
        if is_main():
            write_run_file(folder.run_dir, {**config.options, 'seed': seed}, build_parser(),
                           'train_student.py')
        prepare_modules(training, [distiller], [student, teacher.network])
        log.info(f'distilling {name_t} -> {model_s} with {name} on {dataset} ({device}); '
                 f'weights ' + ' '.join(f'-{flag} {value}' for flag, value
                                        in zip('rabd', method_config.weights))
                 + f' -> {folder.run_dir}')
        for line in (distiller.describe(), describe_components(config),
                     strategy_of(training).describe(training)):
            if line:
                log.info(f'{name}: {line}')
        teacher_acc = teacher_top5 = None  # a peer trained from scratch has none yet
        if config.teacher.path:
            # several: their weighted mean, as the student is taught
            predict = teacher.network if len(teachers) == 1 else live_source.predict
            teacher_test = validate(test_loader, predict, device, desc='teacher',
                                    training=training)
            teacher_acc, teacher_top5 = teacher_test['top1'], teacher_test['top5']
            log.info(f'teacher {name_t}: acc@1 {teacher_acc:.2f} acc@5 {teacher_top5:.2f}')
        rounds = None
        for plugin in config.plugins:
            rounds = plugin.prepare(config, teachers, train_set, device, seed, rounds)
        distiller.prepare(plain_loader, folder.run_dir)
        train_loader = (plain_loader if rounds is None
                        else build_loaders(dataset, **loaders, rounds=rounds)[0])
        # Init stages train on the ordinary batches, not the plug-ins' stored rounds.
        best, last = train_and_record(
            distiller, train_loader, test_loader, training, model_s, folder, device, record,
            distiller.trainable_parameters, {'student': (model_s, student),
                                             'teacher': (teacher.arch, teacher.network)},
            init_loader=plain_loader, identity=identity,
            wandb=config.output.wandb, teacher_acc=teacher_acc, teacher_top5=teacher_top5,
            method=name)
    teacher_note = f' ({teacher_acc:.2f})' if teacher_acc is not None else ''
    log.info(f'done: {name_t}{teacher_note} -> {model_s} with {name}: best acc@1 '
             f'{best:.2f}, last acc@1 {last:.2f}; checkpoints in {folder.run_dir}')


def main(argv=None):
    return run_cli('train_student.py', parse_option, run, argv)


if __name__ == '__main__':
    sys.exit(main())
