"""The scripts end to end on a tiny CIFAR-100 tree: one short epoch each, in-process."""
import dataclasses
import json
import os

import pytest
import torch

import train_student
import train_teacher
from conftest import REPO, train_teacher_run
from helper import resolver
from core.checkpoint import load_checkpoint, save_checkpoint
from core.util import UserError
from models import get_model

FAST = ['--epochs', '1', '--batch_size', '32', '--num_workers', '0', '--save_freq', '1']


def teacher_run(cifar_root, save_dir, model='resnet14'):
    return train_teacher_run(cifar_root, save_dir, '--seed', '0', *FAST, model=model)


def test_teacher_then_kd_student(cifar_root, tmp_path, capsys):
    save = str(tmp_path / 'save')
    run, teacher_path = teacher_run(cifar_root, save)
    assert sorted(os.listdir(run)) == ['ckpt_epoch_1.pth', 'ckpt_last.pth', 'metrics.jsonl',
                                       'resnet14_best.pth', 'resnet14_last.pth', 'summary.json']
    assert os.listdir(os.path.join(save, 'tensorboard'))

    epoch_ckpt = load_checkpoint(os.path.join(run, 'ckpt_epoch_1.pth'))
    assert {'model', 'epoch', 'accuracy', 'optimizer', 'arch'} <= set(epoch_ckpt)
    model = get_model('resnet14', 100)
    model.load_state_dict(epoch_ckpt['model'], strict=True)
    last = load_checkpoint(teacher_path)
    assert last['opt']['model'] == 'resnet14' and 'best_acc' in load_checkpoint(
        os.path.join(run, 'resnet14_best.pth'))
    teacher_bytes = open(teacher_path, 'rb').read()

    argv = ['--path_t', teacher_path, '--model_s', 'resnet8', '--distill', 'kd',
            '--data_folder', cifar_root, '--save_dir', save, '--seed', '0']
    assert train_student.main(argv + FAST) == 0
    out = capsys.readouterr().out
    assert 'weights -r 0.1 -a 0.9 -b 0.0' in out and 'teacher resnet14: acc@1' in out
    assert 'epoch   1/1' in out and 'done:' in out
    student_run = os.path.join(save, 'student_model',
                               'S:resnet8_T:resnet14_cifar100_kd_r:0.1_a:0.9_b:0.0_1')
    assert sorted(os.listdir(student_run)) == [
        'ckpt_epoch_1.pth', 'ckpt_last.pth', 'config.toml', 'metrics.jsonl', 'resnet8_best.pth',
        'resnet8_last.pth', 'summary.json']  # config.toml: the run as a file
    metrics = [json.loads(line) for line in open(os.path.join(student_run, 'metrics.jsonl'))]
    assert len(metrics) == 1 and metrics[0]['epoch'] == 1 and metrics[0]['lr'] == 0.05
    assert {'train_loss_cls', 'train_loss_div', 'train_top1', 'train_top5', 'test_top1',
            'test_top5', 'epoch_seconds', 'images_per_second'} <= set(metrics[0])
    summary = json.load(open(os.path.join(student_run, 'summary.json')))
    assert summary['student'] == 'resnet8' and summary['teacher'] == 'resnet14'
    assert summary['student_params'] == sum(p.numel() for p in get_model('resnet8', 100).parameters())
    assert summary['last_acc'] == metrics[0]['test_top1'] and summary['args']['distill'] == 'kd'
    assert summary['device'] == 'cpu' and 'git_commit' in summary and summary['wall_seconds'] > 0
    student = get_model('resnet8', 100)
    student.load_state_dict(load_checkpoint(os.path.join(student_run, 'resnet8_best.pth'))['model'])
    assert os.listdir(os.path.join(save, 'student_tensorboards'))
    assert open(teacher_path, 'rb').read() == teacher_bytes  # the teacher file is untouched


def test_explicit_weights_and_simkd_aliases(cifar_root, tmp_path, capsys):
    save = str(tmp_path / 'save')
    _, teacher_path = teacher_run(cifar_root, save, model='resnet8')
    argv = ['--path_t', teacher_path, '--model_s', 'resnet8', '--distill', 'kd', '-c', '1',
            '-d', '0.5', '-b', '0', '--data_folder', cifar_root, '--save_dir', save]
    assert train_student.main(argv + FAST) == 0
    assert 'weights -r 1.0 -a 0.5 -b 0.0' in capsys.readouterr().out


def test_missing_teacher_file(cifar_root, tmp_path, capsys):
    argv = ['--path_t', str(tmp_path / 'resnet8_vanilla' / 'nope.pth'), '--data_folder',
            cifar_root, '--save_dir', str(tmp_path / 'save')]
    assert train_student.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert err.startswith('error:') and 'nope.pth' in err and 'does not exist' in err


def test_teacher_that_does_not_match_its_architecture(cifar_root, tmp_path, capsys):
    path = tmp_path / 'resnet20_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    save_checkpoint({'model': get_model('resnet8', 100).state_dict()}, str(path))
    argv = ['--path_t', str(path), '--data_folder', cifar_root, '--save_dir', str(tmp_path)]
    assert train_student.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert 'does not match architecture resnet20' in err and 'Traceback' not in err


def test_corrupt_teacher_file(cifar_root, tmp_path, capsys):
    path = tmp_path / 'resnet8_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    path.write_bytes(b'\x00' * 100)
    argv = ['--path_t', str(path), '--data_folder', cifar_root, '--save_dir', str(tmp_path)]
    assert train_student.main(argv + FAST) == 2
    assert 'cannot read checkpoint' in capsys.readouterr().err


def test_unknown_model_is_rejected_with_choices(capsys):
    assert train_teacher.main(['--model', 'resnet9000']) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'resnet9000'" in err and 'resnet32x4' in err
    assert err.startswith('error:') and err.count('\n') == 1  # one line, no usage block


def test_unknown_method_is_rejected(capsys):
    assert train_student.main(['--path_t', 'x.pth', '--distill', 'kdd']) == 2
    assert "invalid choice: 'kdd'" in capsys.readouterr().err


def test_missing_dataset(tmp_path, capsys):
    argv = ['--model', 'resnet8', '--data_folder', str(tmp_path / 'empty'),
            '--save_dir', str(tmp_path)]
    assert train_teacher.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert 'cifar-100-python' in err and 'downloading it failed' in err


def test_malformed_decay_epochs(capsys):
    assert train_teacher.main(['--lr_decay_epochs', '150,oops']) == 2
    assert '--lr_decay_epochs' in capsys.readouterr().err


def test_learning_rate_default_depends_on_student():
    assert train_teacher.parse_option(['--model', 'ShuffleV1']).learning_rate == 0.01
    assert train_teacher.parse_option(['--model', 'resnet8']).learning_rate == 0.05
    assert train_teacher.parse_option(['--model', 'ShuffleV1', '--learning_rate', '0.1'
                                       ]).learning_rate == 0.1


def test_schedule_matches_repdistiller():
    from core.util import learning_rate_at
    opt = train_teacher.parse_option([])
    assert [round(learning_rate_at(e, opt), 8) for e in (1, 150, 151, 180, 181, 211, 240)] == [
        0.05, 0.05, 0.005, 0.005, 0.0005, 0.00005, 0.00005]


def test_loading_repdistiller_last_checkpoint_with_namespace(tmp_path):
    import argparse
    path = tmp_path / 'resnet8_last.pth'
    torch.save({'opt': argparse.Namespace(model='resnet8'),
                'model': get_model('resnet8', 100).state_dict()}, path)
    assert load_checkpoint(str(path))['opt'].model == 'resnet8'


# -- numbers that cannot train are refused at parse time, in one line ---------------------------
@pytest.mark.parametrize('flags, message', [
    (['--max_grad_norm', '-1'], 'argument --max_grad_norm: must be a positive number, got -1'),
    (['--learning_rate', '-1'], 'argument --learning_rate: must be a positive number, got -1'),
    (['--learning_rate', 'nan'], 'argument --learning_rate: must be a positive number, got nan'),
    (['--kd_T', '0'], 'argument --kd_T: must be a positive number, got 0'),
    (['--feat_dim', '0'], 'argument --feat_dim: must be a positive integer, got 0'),
    (['--nce_k', '0'], 'argument --nce_k: must be a positive integer, got 0'),
    (['-b', '-5'], 'argument -b/--beta: must be a number >= 0, got -5'),
    (['--momentum', '1.5'], 'argument --momentum: must be a number in [0, 1), got 1.5'),
    (['--epochs', 'ten'], "argument --epochs: expected a positive integer, got 'ten'"),
])
def test_impossible_numbers_stop_at_parse_time(tmp_path, capsys, flags, message):
    assert train_student.main(['--path_t', 'never_read.pth', '--save_dir', str(tmp_path)]
                              + flags) == 2
    err = capsys.readouterr().err
    assert err == f'error: {message} (--help lists the options)\n'
    assert not os.listdir(tmp_path)


def test_eval_batch_size_zero_is_refused(capsys):
    import eval_student
    assert eval_student.main(['--path', 'never_read.pth', '--batch_size', '0']) == 2
    assert capsys.readouterr().err.startswith('error: argument --batch_size: must be a positive')


# -- teacher files that are not what they should be ---------------------------------------------
@pytest.mark.parametrize('content, kind', [
    (b'<!DOCTYPE html>\n<html><body>Sign in</body></html>', 'an HTML page'),
    (b'resnet32x4 teacher: see the README\n', 'a text file'),
])
def test_a_page_or_text_as_teacher(cifar_root, tmp_path, capsys, content, kind):
    path = tmp_path / 'resnet8_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    path.write_bytes(content)
    argv = ['--path_t', str(path), '--data_folder', cifar_root, '--save_dir', str(tmp_path / 's')]
    assert train_student.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert f'it is {kind}' in err and 'not a PyTorch checkpoint' in err
    assert err.count('\n') == 1 and 'weights_only' not in err


def test_teacher_of_another_architecture_is_summarised(cifar_root, tmp_path, capsys):
    path = tmp_path / 'resnet20_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    save_checkpoint({'model': get_model('wrn_16_2', 100).state_dict()}, str(path))
    argv = ['--path_t', str(path), '--data_folder', cifar_root, '--save_dir', str(tmp_path / 's')]
    assert train_student.main(argv + FAST) == 2
    err = capsys.readouterr().err
    assert len(err) < 700 and 'the weights look like wrn_16_2' in err
    assert 'missing keys (e.g. layer1.0.conv1.weight' in err and 'unexpected keys' in err


@pytest.mark.parametrize('layout', ['bare', 'state_dict', 'dataparallel'])
def test_teacher_saved_without_the_model_key_loads(tmp_path, layout):
    from helper.teachers import load_teacher
    state = get_model('resnet8', 100).state_dict()
    saved = {'bare': state, 'state_dict': {'state_dict': state, 'epoch': 240},
             'dataparallel': {'model': {f'module.{k}': v for k, v in state.items()}}}[layout]
    path = tmp_path / 'resnet8_vanilla' / 'resnet8.pth'
    path.parent.mkdir()
    torch.save(saved, path)
    teacher, name = load_teacher(str(path), 100, 'cifar100')
    assert name == 'resnet8'
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in state.items())


def test_a_folder_as_teacher(tmp_path, capsys):
    assert train_student.main(['--path_t', str(tmp_path), '--save_dir', str(tmp_path)]) == 2
    assert 'is a directory' in capsys.readouterr().err


def test_a_trained_teacher_is_linked_where_the_distill_commands_look(cifar_root, tmp_path, capsys):
    save = str(tmp_path / 'save')
    teacher_run(cifar_root, save, model='resnet8')
    vanilla = os.path.join(save, 'models', 'resnet8_vanilla', 'ckpt_epoch_1.pth')
    assert f'teacher for distillation: {vanilla}' in capsys.readouterr().out
    from helper.teachers import load_teacher
    assert load_teacher(vanilla, 100, 'cifar100')[1] == 'resnet8'
    before = open(vanilla, 'rb').read()
    train_teacher_run(cifar_root, save, '--seed', '0', '--trial', '1', *FAST, model='resnet8')
    assert f"'{vanilla}' already exists; left as it is" in capsys.readouterr().out
    assert open(vanilla, 'rb').read() == before
    # another epoch count is another file: published beside it (a runner waits for it)
    train_teacher_run(cifar_root, save, '--seed', '0', '--trial', '2', *FAST, '--epochs',
                      '2', model='resnet8')
    assert load_teacher(vanilla.replace('epoch_1', 'epoch_2'), 100, 'cifar100')[1] == 'resnet8'


def test_a_command_line_resolves_into_one_typed_config_without_reading_a_file(tmp_path):
    from helper.run_config import TeacherConfig
    missing = str(tmp_path / 'nowhere.pth')  # never opened: the architecture is given
    opt, given = resolver.read_command_line(
        ['--path_t', missing, '--model_s', 'resnet8x4', '--distill', 'dkd', '--logit_stand',
         '--ckd', 'clean', '--dataset', 'cifar10', '-r', '2'])
    assert {'path_t', 'model_s', 'distill', 'logit_stand', 'ckd', 'dataset', 'gamma'} == given
    config = resolver.resolve_options(opt, given, 'resnet32x4')
    assert config.teacher == TeacherConfig(missing, None, 'resnet32x4')
    method = config.method  # LSKD's per-pair values for DKD on this pair, -r as given
    assert (method.weights, method.options.dkd_T, method.options.dkd_beta) == (
        (2.0, 0.0, 1.0), 2.0, 72.0)
    assert method.logit_stand and method.model_t == 'resnet32x4' and method.n_data is None
    assert (config.data.dataset, config.features.ckd, [p.flag for p in config.plugins]) == (
        'cifar10', 'clean', ['--ckd'])
    assert config.options['dkd_beta'] == 72.0 and opt.dkd_beta is None  # opt is left as it was
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.method = None
    with pytest.raises(UserError, match='--logit_stand would change nothing'):
        resolver.resolve_options(*resolver.read_command_line(
            ['--path_t', missing, '--distill', 'crd', '--logit_stand', '-a', '0']), 'resnet8')


def test_the_resolvers_print_nothing_and_hand_their_notes_back(capsys):
    argv = ['--path_t', 'save/models/resnet32x4_vanilla/ckpt.pth', '--model_s', 'resnet8x4',
            '--distill', 'ctkd', '--logit_stand', '--recipe', 'ofa_cnn']
    config, notes = resolver.resolve(argv)
    assert capsys.readouterr() == ('', '')
    assert any(n.startswith('--recipe ofa_cnn: ') for n in notes)
    assert any('--ctkd_t_start 2 --ctkd_t_end 40' in n for n in notes)
    assert config.options['ctkd_t_end'] == 40.0
    options, teacher_notes = train_teacher.resolve(['--model', 'resnet8', '--recipe', 'ofa_cnn'])
    assert capsys.readouterr() == ('', '') and teacher_notes[0].startswith('--recipe ofa_cnn')
    # the entry point prints the same notes, once each
    train_student.parse_option(argv)
    assert capsys.readouterr().out == ''.join(f'note: {n}\n' for n in notes)


def test_the_runner_reaches_the_resolver_not_the_entry_point():
    """In a fresh process: the runner's modules import no entry point, and importing the
    library (the entry point too) installs no logging handler (core/log.py)."""
    import subprocess
    import sys
    code = ('import sys, logging, reproduction.tables, scripts.reproduce, scripts.benchmark; '
            'print("train_student" in sys.modules); import train_student; '
            'print(len(logging.getLogger("kd").handlers))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert out.split()[0] == 'False'
    assert out.split()[1] == '0'


def test_the_loop_reads_a_typed_training_config_of_the_command_line():
    from core.config import TrainingConfig
    config = train_student.parse_option(['--path_t', 'x/resnet8_vanilla/a.pth', '--epochs',
                                         '3', '--lr_decay_epochs', '1,2', '--optimizer', 'dot',
                                         '--amp', 'bf16'])
    training = config.training
    assert (training.epochs, training.lr_decay_epochs, training.opt, training.amp) == (
        3, (1, 2), 'dot', 'bf16')  # --optimizer dot is --opt dot
    assert training.opt_args == (('dot_delta', config.options['dot_delta']),)
    assert training.learning_rate == 0.05
    teacher = TrainingConfig.of(train_teacher.parse_option(['--model', 'resnet8']))
    assert teacher.opt is None and teacher.opt_args == ()  # RepDistiller's SGD
    with pytest.raises(dataclasses.FrozenInstanceError):
        training.epochs = 4


def test_several_teachers_teach_their_weighted_mean_logits(tiny, tmp_path, capsys):
    from distiller_zoo.sources import TeacherEnsemble
    from models import get_model
    from dataset.batch import Batch
    from distiller_zoo.base import LOGITS
    torch.manual_seed(0)
    a, b = get_model('resnet8', 10), get_model('resnet14', 10)
    ensemble = TeacherEnsemble([a, b], (0.25, 0.75)).train()
    x = torch.randn(4, 3, 32, 32)
    out = ensemble(Batch(x, torch.zeros(4, dtype=torch.long), torch.arange(4)), {LOGITS})
    with torch.no_grad():
        expected = 0.25 * a.eval()(x) + 0.75 * b.eval()(x)
    assert torch.allclose(out.logits, expected, atol=1e-6)
    assert not b.training and not any(p.requires_grad for p in b.parameters())

    data, teacher, root = tiny
    second = str(root / 'resnet8_vanilla' / 'second.pth')
    os.makedirs(os.path.dirname(second), exist_ok=True)
    save_checkpoint({'model': get_model('resnet8', 100).state_dict()}, second)
    argv = ['--path_t', teacher, second, '--model_s', 'resnet8', '--distill', 'kd',
            '--data_folder', data, '--save_dir', str(tmp_path), '--epochs', '1',
            '--batch_size', '16', '--num_workers', '0', '--teacher_weights', '1', '3']
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'distilling resnet8+resnet8 -> resnet8' in out
    run = os.listdir(os.path.join(str(tmp_path), 'student_model'))
    assert run == ['S:resnet8_T:resnet8+resnet8_cifar100_kd_r:0.1_a:0.9_b:0.0_1'
                   '_teacher_weights:1,3']
    config = train_student.parse_option(argv)
    assert config.teacher.more == (second,) and config.teacher.weights == (0.25, 0.75)
    for flags, message in ((['--distill', 'dml'], 'give one --path_t'),
                           (['--teacher_weights', '1'], 'one weight per teacher'),
                           (['--ckd', 'ckd'], 'by one teacher file')):
        with pytest.raises(UserError, match=message):
            train_student.parse_option(argv[:argv.index('--teacher_weights')] + flags)
