"""The modifiers of any method: LSKD's logit standardisation and CTKD's learned temperature
against their authors' code (tests/fixtures/reference/lskd.json, ctkd.json), their per-pair
settings and refusals, and every method and modifier (DOT's optimizer included) trained from
the command line, resumed bit for bit and listed by --help."""
import json
import math
import os

import pytest
import torch

import train_student
from builders import build, run_options
from conftest import student_argv
from core.checkpoint import load_checkpoint
from core.util import UserError
from distiller_zoo import (CosineDecay, DistillKL, Global_T, LearnedTemperature, LinearDecay,
                           dkd_loss, logit_standardize, normalize)
from reference import (assert_close, assert_matches, det, flat, grad_stats, reference,
                       value_and_grad_stats)
from runs import final_state, metric_records, straight_and_resumed

REFERENCE = reference('lskd', 'ctkd')
LOGITS_S = det(6, 10, phase=0.2, scale=3)
LOGITS_T = det(6, 10, phase=1.7, scale=5)
TARGET = torch.tensor([0, 3, 9, 2, 2, 7])


def assert_learned_temperature_matches(got, expected):
    """``[T, loss, d loss / d theta] + grad_stats`` against the authors' figures. theta's
    gradient is dL/dT times dT/dtheta, and dL/dT sums terms of the loss's size that nearly
    cancel: float32 noise moves it by about 1e-5 of the loss, so it is compared at 1e-4 of the
    loss besides 5e-4 of itself."""
    got, expected = flat(got), flat(expected)
    assert_matches(got[:2] + got[3:], expected[:2] + expected[3:], scalars=2, rel=5e-4)
    assert_close(got[2:3], expected[2:3], rel=5e-4, abs_=1e-4 * abs(expected[1]))


# -- LSKD --------------------------------------------------------------------------------------
def test_normalize_matches_the_authors_and_ignores_affine_changes():
    assert_close(normalize(LOGITS_T)[1].tolist(), REFERENCE['normalize'])
    assert logit_standardize is normalize
    kl = DistillKL(2.0, logit_stand=True)
    a = torch.tensor([[3.0], [0.5], [7.0], [1.0], [2.0], [0.1]])
    b = torch.randn(6, 1)
    assert kl(LOGITS_S * a + b, LOGITS_T).item() == pytest.approx(kl(LOGITS_S, LOGITS_T).item(),
                                                                  abs=1e-5)


@pytest.mark.parametrize('T', [2.0, 4.0])
@pytest.mark.parametrize('stand', [True, False])
def test_standardised_kl_matches_the_authors(T, stand):
    key = f'lskd_kd_T{T}' if stand else f'kd_T{T}'
    got = value_and_grad_stats(lambda s: DistillKL(T, logit_stand=stand)(s, LOGITS_T), LOGITS_S)
    assert_matches(got, REFERENCE[key])


def test_standardised_dkd_matches_the_authors():
    got = value_and_grad_stats(
        lambda s: dkd_loss(s, LOGITS_T, TARGET, 9.0, 72.0, 2.0, True), LOGITS_S)
    assert_matches(got, REFERENCE['lskd_dkd'])


def test_logit_stand_takes_the_authors_settings_for_the_pair(capsys):
    opt = run_options('--distill', 'kd', '--logit_stand')
    assert (opt.gamma, opt.alpha, opt.kd_T) == (0.1, 9.0, 2.0)
    assert "the authors' settings for resnet32x4 -> resnet8x4: --kd_T 2 -a 9" in \
        capsys.readouterr().out
    assert run_options('--distill', 'kd', '--logit_stand', teacher='vgg13',
                       student='vgg8').kd_T == 3
    opt = run_options('--distill', 'dkd', '--logit-stand')  # the authors' spelling
    assert (opt.dkd_T, opt.dkd_alpha, opt.dkd_beta, opt.gamma) == (2.0, 9.0, 72.0, 1.0)
    opt = run_options('--distill', 'dkd', '--logit_stand', teacher='vgg13', student='vgg8')
    assert (opt.dkd_T, opt.dkd_alpha, opt.dkd_beta) == (2.0, 15.0, 30.0)
    opt = run_options('--distill', 'mlld', '--logit_stand', teacher='vgg13', student='vgg8')
    assert (opt.kd_T, opt.alpha) == (2.0, 6.0)
    opt = run_options('--distill', 'ctkd', '--logit_stand')
    assert (opt.alpha, opt.kd_T) == (9.0, 4)  # the temperature is learned
    # ... within the bounds the authors' CTKD+LS logs imply: tau is its floor
    assert (opt.ctkd_t_start, opt.ctkd_t_end) == (2.0, 40.0)
    opt = run_options('--distill', 'ctkd', '--logit_stand', '--ctkd_t_end', '30', '--ctkd_t_start',
                '3', teacher='wrn_40_2', student='MobileNetV2')
    assert (opt.ctkd_t_start, opt.ctkd_t_end, opt.alpha) == (3.0, 30.0, 9.0)
    ctkd = run_options('--distill', 'ctkd')
    assert (ctkd.ctkd_t_start, ctkd.ctkd_t_end) == (
        1.0, 20.0)  # CTKD's own bounds without LSKD
    opt = run_options('--distill', 'dkd', '--ctkd', '--logit_stand')  # a column run without it
    assert (opt.ctkd_t_start, opt.ctkd_t_end, opt.dkd_alpha) == (1.0, 20.0, 9.0)
    # Given values stay; --base_temp and --kd_weight replace the table's.
    opt = run_options('--distill', 'kd', '--logit_stand', '-a', '5', '--kd_T', '3')
    assert (opt.alpha, opt.kd_T) == (5.0, 3.0)
    opt = run_options('--distill', 'kd', '--logit_stand', '--base-temp', '3', '--kd-weight', '6')
    assert (opt.alpha, opt.kd_T) == (6.0, 3.0)
    # A pair without a row: 2 and 9. A method without a column: its own, unless given.
    assert (run_options('--distill', 'kd', '--logit_stand', teacher='resnet14').kd_T) == 2.0
    opt = run_options('--distill', 'crd', '--logit_stand', '-a', '1')
    assert (opt.alpha, opt.kd_T) == (1.0, 4)
    assert run_options('--distill', 'crd', '--logit_stand', '--kd_weight', '1', '--base_temp',
                 '3').kd_T == 3.0
    assert run_options('--distill', 'kd').alpha == 0.9  # nothing changes without the flag


def test_modifiers_refuse_a_method_without_a_logit_kl():
    for flag in ('--logit_stand', '--ctkd'):
        with pytest.raises(UserError, match='mlkd has no logit KL'):
            run_options('--distill', 'mlkd', flag)


def test_lskd_note_says_when_the_values_are_the_fallback(capsys):
    run_options('--distill', 'kd', '--logit_stand', teacher='resnet14', student='resnet8')
    out = capsys.readouterr().out
    assert "the authors' fallback values (they ran no resnet14 -> resnet8): --kd_T 2 -a 9" in out
    assert "settings for resnet14" not in out
    run_options('--distill', 'dkd', '--logit_stand', teacher='resnet56', student='resnet20')
    assert "the authors' settings for resnet56 -> resnet20" in capsys.readouterr().out


@pytest.mark.parametrize('flags, message', [
    (['--distill', 'crd', '--logit_stand'], 'crd: --logit_stand would change nothing: the logit '
                                            'KL of the method is its -a term, of weight 0'),
    (['--distill', 'ofd', '--logit_stand'], 'ofd: --logit_stand would change nothing'),
    (['--distill', 'crd', '--ctkd'], 'crd: --ctkd would change nothing'),
    (['--distill', 'crd', '--logit_stand', '--ctkd'], '--logit_stand and --ctkd would change'),
    (['--distill', 'dkd', '-b', '0', '--ctkd'], 'its -a and -b term'),
    (['--distill', 'kd', '--base_temp', '3'], '--base_temp is an option of --logit_stand'),
    (['--distill', 'kd', '--kd_weight', '5'], '--kd_weight is an option of --logit_stand'),
    (['--distill', 'kd', '--ctkd_t_end', '10'], '--ctkd_t_end is an option of --ctkd'),
    (['--distill', 'dkd', '--ctkd_decay', 'linear'], '--ctkd_decay is an option of --ctkd'),
    (['--distill', 'kd', '--dot_delta', '0.1'], '--dot_delta is an option of --optimizer dot'),
    (['--distill', 'ctkd', '--kd_T', '8'], 'with --distill ctkd the temperature is learned, so '
                                           '--kd_T is not read'),
    (['--distill', 'kd', '--ctkd', '--kd_T', '8'], 'with --ctkd the temperature is learned'),
    (['--distill', 'ctkd', '--logit_stand', '--base_temp', '3'], '--base_temp is not read')])
def test_modifier_options_that_change_nothing_are_refused(flags, message):
    with pytest.raises(UserError, match=message):
        run_options(*flags)


def test_modifier_options_with_their_modifier_are_taken():
    assert run_options('--distill', 'ctkd', '--ctkd_t_end', '10').ctkd_t_end == 10
    assert run_options('--distill', 'kd', '--ctkd', '--ctkd_decay', 'linear').ctkd_decay == 'linear'
    assert run_options('--distill', 'kd', '--optimizer', 'dot', '--dot_delta',
                       '0.05').dot_delta == 0.05
    assert run_options('--distill', 'dkd', '--ctkd').beta == 1.0
    # default values written out change nothing and are taken (the authors' CTKD script)
    assert run_options('--distill', 'ctkd', '--kd_T', '4').kd_T == 4
    assert run_options('--distill', 'kd', '--ctkd_t_end', '20', '--dot_delta',
                       '0.075').ctkd is False


# -- CTKD --------------------------------------------------------------------------------------
def test_curricula_match_the_authors():
    cosine = CosineDecay(max_value=0, min_value=-1, num_loops=10)
    linear = LinearDecay(max_value=0, min_value=-1, num_loops=10)
    assert_close([cosine.get_value(e) for e in list(range(13)) + [20, 150, 240]],
                 REFERENCE['ctkd_cosine'])
    assert_close([linear.get_value(e) for e in range(13)], REFERENCE['ctkd_linear'])


@pytest.mark.parametrize('lambda_', [-0.5, -1.0])
def test_learned_temperature_kd_matches_the_authors(lambda_):
    global_t = Global_T()
    s = LOGITS_S.clone().requires_grad_()
    temp = 1.0 + 20.0 * torch.sigmoid(global_t(LOGITS_T, s, lambda_))
    value = DistillKL(4)(s, LOGITS_T, temp)
    g_s, = torch.autograd.grad(value, s, retain_graph=True)
    value.backward()
    got = [temp.item(), value.item(), global_t.global_T.grad.item()] + grad_stats(g_s)
    assert_learned_temperature_matches(got, REFERENCE[f'ctkd_kd_lambda{lambda_}'])


@pytest.mark.parametrize('key, loss', [
    ('ctkd_dkd', lambda s, T: dkd_loss(s, LOGITS_T, TARGET, 1.0, 8.0, T)),
    ('ctkd_ls', lambda s, T: DistillKL(4, logit_stand=True)(s, LOGITS_T, T))])
def test_learned_temperature_through_dkd_and_lskd_has_the_authors_gradient(key, loss):
    """DKD's NCKD has a zero teacher probability: PyTorch 1.11 gave its derivative as 0,
    current PyTorch as NaN through F.kl_div; dkd_loss leaves the target column out."""
    learned = LearnedTemperature(lambda_epochs=10)
    learned.set_epoch(10)  # lambda -1
    s = LOGITS_S.clone().requires_grad_()
    temp = learned()
    value = loss(s, temp)
    g_s, = torch.autograd.grad(value, s, retain_graph=True)
    value.backward()
    theta = learned.global_T.global_T.grad
    assert torch.isfinite(theta).all()
    got = [temp.item(), value.item(), theta.item()] + grad_stats(g_s)
    assert_learned_temperature_matches(got, REFERENCE[key])


def test_per_sample_temperatures_weigh_each_sample():
    T = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    expected = sum(DistillKL(t.item())(LOGITS_S[i:i + 1], LOGITS_T[i:i + 1])
                   for i, t in enumerate(T)) / 6
    assert DistillKL(4)(LOGITS_S, LOGITS_T, T).item() == pytest.approx(expected.item(), rel=1e-6)


def test_temperature_starts_at_the_authors_value_and_follows_the_curriculum():
    learned = LearnedTemperature()
    assert learned().item() == pytest.approx(REFERENCE['ctkd_kd_lambda-1.0'][0], rel=1e-6)
    learned.set_epoch(5)
    assert learned.lambda_ == pytest.approx(-0.5)
    learned.set_epoch(30)
    assert learned.lambda_ == -1.0
    distiller = build('kd', ctkd=True)[0]
    assert distiller.learned_T is not None
    assert any(p is distiller.learned_T.global_T.global_T
               for p in distiller.trainable_parameters())
    assert set(distiller.epoch_metrics()) == {'temperature'}
    assert build('kd')[0].epoch_metrics() == {}


# -- command lines -----------------------------------------------------------------------------
FAST = ['--epochs', '1', '--batch_size', '16', '--num_workers', '0', '--init_epochs', '1',
        '--nce_k', '40', '--feat_dim', '16', '--seed', '1']


def run_student(tiny, name, *flags, trial='x'):
    """One epoch of ``--distill name`` with ``flags``; the run's folder and its printed log."""
    data, teacher, root = tiny
    save = str(root / 'save')
    argv = student_argv(data, teacher, save, '--trial', trial, *FAST, *flags, distill=name)
    assert train_student.main(argv) == 0
    folder = os.path.join(save, 'student_model')
    runs = [r for r in os.listdir(folder) if f'_{name}_' in r and f'_{trial}' in r]
    assert len(runs) == 1, runs
    return os.path.join(folder, runs[0])


def metrics(run):
    with open(os.path.join(run, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('loader', ['device', 'classic'])
@pytest.mark.parametrize('name, flags', [
    ('ctkd', []), ('ofd', []), ('ofd', ['--ofd_teacher_bn', 'eval']),
    ('kd', ['--logit_stand']), ('dkd', ['--logit_stand']), ('ctkd', ['--logit_stand']),
    ('dkd', ['--ctkd']), ('kd', ['--optimizer', 'dot']), ('crd', ['--optimizer', 'dot']),
    ('fsp', ['--optimizer', 'dot'])])
def test_methods_and_modifiers_train_from_the_command_line(tiny, capsys, name, flags,
                                                           loader):
    trial = f'{loader}{len(flags)}{"".join(f[2:5] for f in flags)}'
    run = run_student(tiny, name, '--loader', loader, *flags, trial=trial)
    out = capsys.readouterr().out
    record = metrics(run)[-1]
    assert math.isfinite(record['train_loss'])
    ckpt = load_checkpoint(os.path.join(run, 'ckpt_last.pth'))
    learned = name == 'ctkd' or '--ctkd' in flags
    assert ('temperature' in record) == learned
    if learned:
        assert f'| temperature {record["temperature"]:.4g} |' in out
        assert 'learned_T.global_T.global_T' in ckpt['method_state']
        assert '_ctkd' in os.path.basename(run) or name == 'ctkd'
    if '--logit_stand' in flags:
        assert '_logit_stand' in os.path.basename(run)
        assert "--logit_stand: the authors' fallback values (they ran no resnet8" in out
    if '--optimizer' in flags:
        assert '_optimizer:dot' in os.path.basename(run) and 'DOT: momentum 0.825' in out
        buffers = {k for state in ckpt['optimizer']['state'].values() for k in state}
        assert buffers == {'momentum_buffer', 'momentum_kd_buffer'}
        if name == 'fsp':
            assert 'init   1/1' in out  # the init stage ran with plain SGD
    if name == 'ofd':
        assert f'teacher BN on {"eval" if flags else "batch"} statistics' in out


@pytest.mark.parametrize('flags', [[], ['--logit_stand'], ['--ctkd'], ['--optimizer', 'dot']])
def test_mlld_trains_on_the_classic_loader(tiny, capsys, flags):
    run = run_student(tiny, 'mlld', '--loader', 'device', *flags,
                      trial='mlld' + ''.join(f[2:5] for f in flags))
    out = capsys.readouterr().out
    assert 'the device loader cannot make WeakStrongViews' in out
    assert "the authors' recipe for resnet8 -> resnet8: --learning_rate 0.025" in out
    record = metrics(run)[-1]
    assert {'train_loss_kd', 'train_loss_cc', 'train_loss_bc', 'train_loss_cls'} <= set(record)
    assert math.isfinite(record['train_loss'])


@pytest.mark.parametrize('flags, message', [
    (['--distill', 'mlld', '--teacher_cache', '2'], 'the teacher on views it makes'),
    (['--distill', 'mlld', '--ckd', 'ckd'], 'weak and strong views'),
    (['--distill', 'ofd', '--teacher_cache', '2'], 'feature maps'),
    (['--distill', 'kd', '--optimizer', 'dot', '--dot_delta', '0.2'], 'must be below'),
    (['--distill', 'mlkd', '--ctkd'], 'has no logit KL')])
def test_refused_combinations_say_why_in_one_line(tiny, capsys, flags, message):
    data, teacher, root = tiny
    save = str(root / 'save')
    argv = ['--path_t', teacher, '--model_s', 'resnet8', '--data_folder', data, '--save_dir',
            save] + FAST + flags
    assert train_student.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize('distill, flags, stop_at', [('ctkd', [], 7),
                                                     ('kd', ['--optimizer', 'dot'], 7),
                                                     ('crd', ['--optimizer', 'dot'], 5)])
def test_resumed_ctkd_and_dot_runs_are_bit_identical(tiny, monkeypatch, capsys, distill, flags,
                                                     stop_at):
    straight, resumed = straight_and_resumed(tiny, monkeypatch, capsys, distill, flags,
                                             stop_at, distill + ''.join(flags))
    method_state, optimizer = final_state(resumed)[1], final_state(resumed)[2]
    if distill == 'ctkd':
        assert 'learned_T.global_T.global_T' in method_state
        assert [r['temperature'] for r in metric_records(resumed)] == \
            [r['temperature'] for r in metric_records(straight)]
    else:
        assert any('momentum_kd_buffer' in s for s in optimizer['state'].values())


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_dot_trains_under_mixed_precision(tiny, amp):
    run = run_student(tiny, 'kd', '--optimizer', 'dot', '--amp', amp,
                      '--max_grad_norm', '5', trial=f'dot_{amp}')
    assert math.isfinite(metrics(run)[-1]['train_loss'])


@pytest.mark.parametrize('stored_nce_k', [30, 40])
def test_resume_auto_finds_a_folder_named_before_method_options_entered_names(
        tiny, capsys, stored_nce_k):
    """Folders written before 2026-11-29 lacked the method's options: --resume auto continues
    the run there when its stored options agree, and says how to resume it when they do not."""
    data, teacher, root = tiny
    save = str(root / 'save')
    trial = f'older{stored_nce_k}'
    argv = ['--path_t', teacher, '--model_s', 'resnet8', '--distill', 'crd', '--data_folder',
            data, '--save_dir', save, '--trial', trial] + FAST + ['--nce_k', '30']
    run = run_student(tiny, 'crd', '--nce_k', str(stored_nce_k), trial=trial)
    older = os.path.join(os.path.dirname(run), f'S:resnet8_T:resnet8_cifar100_crd_r:1.0_a:0.0'
                                               f'_b:0.8_{trial}')
    os.rename(run, older)
    capsys.readouterr()
    assert train_student.main(argv + ['--epochs', '2', '--resume', 'auto']) == 0
    out = capsys.readouterr().out
    if stored_nce_k == 30:
        assert f"continuing the run in '{older}'" in out and 'resuming train epoch 2' in out
        assert load_checkpoint(os.path.join(older, 'ckpt_last.pth'))['epoch'] == 3
        assert not os.path.exists(run)
    else:
        assert f"'{older}' (a folder name of an older version) holds a run with other " \
               f"options (--nce_k 40); left as it is. To continue it: --resume " in out
        assert load_checkpoint(os.path.join(older, 'ckpt_last.pth'))['epoch'] == 2
        new = run.replace('nce_k:40', 'nce_k:30')  # a new run, in its own folder
        assert os.path.isfile(os.path.join(new, 'ckpt_last.pth'))


def help_text(capsys, *argv):
    with pytest.raises(SystemExit):
        train_student.parse_option(list(argv) + ['--help'])
    return capsys.readouterr().out


def test_help_lists_a_switchs_options_once_it_is_given(capsys):
    plain = help_text(capsys, '--distill', 'kd')
    assert len(plain.splitlines()) <= 140
    for switch, option in (('--ctkd', '--ctkd_t_start'), ('--logit_stand', '--base_temp'),
                           ('--optimizer', '--dot_delta'), ('--ckd', '--ckd_rounds')):
        assert switch in plain and option not in plain
        assert f'(give {switch} with --help to see its options)' in plain
        extra = ['dot'] if switch == '--optimizer' else ['ckd'] if switch == '--ckd' else []
        assert option in help_text(capsys, '--distill', 'kd', switch, *extra)
    assert '--ctkd_t_start' in help_text(capsys, '--distill', 'ctkd')  # the preset implies it
    # hidden or not, every option parses
    assert run_options('--distill', 'kd', '--ckd', 'clean', '--ckd_rounds', '3').ckd_rounds == 3
