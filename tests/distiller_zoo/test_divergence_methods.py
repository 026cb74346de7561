"""Logit methods that change the divergence of the 2025-26 papers: GDKD/GDKD3, LumiNet, ABKD's
four forms, IKL and GKL, and TeKAP's -a term and its CRD. Values and gradients against their authors' code
(tests/fixtures/reference/<method>.json names each repository and commit), the cases where they
reduce to older methods, their per-pair defaults, IKL's class prior and their refusals."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from builders import build, fill_by_name, fixed_batch, run_config
from core.util import UserError
from dataset.batch import Batch
from distiller_zoo import (ABKL, ABTTM, GDKD_SETTINGS, GKL_SETTINGS, IKL_SETTINGS, LS,
                           LUMINET_SETTINGS, TTM, ClassPrior, DistillKL, TeKAPCRDLoss,
                           TeKAPDistillKL,
                           ab_dkd_loss, dkd_loss,
                           dkl_loss, gdkd3_loss, gdkd_loss, gkl_loss, luminet_loss, perception)
from distiller_zoo.LSKD import normalize
from reference import (assert_close, assert_loss_and_stats_close, assert_stats_close, det,
                       grad_stats, reference, value_and_grad)

REFERENCE = reference('gdkd', 'luminet', 'abkd', 'dkl', 'tekap', 'tekap_crd')
TARGET = torch.tensor([1, 3, 5, 7, 9, 0])
PRIOR = F.softmax(det(10, 10, phase=1.0) * 2, 1)  # the prior the DKL fixtures were given
CLASS_PRIOR = PRIOR[TARGET]


def with_parts(fn):
    """``value_and_grad``'s list with the other values ``fn`` returns (a loss's parts, for
    logging) after the loss, as stored."""
    parts = []

    def loss(s, t):
        total, *rest = fn(s, t)
        parts.extend(p.item() for p in rest)
        return total
    values = value_and_grad(loss)
    return values[:1] + parts + values[1:]


@pytest.mark.parametrize('k, strategy, kl_type, w, T', [
    (5, 'best', 'forward', (1, 2, 8), 4.0), (3, 'worst', 'reverse', (1, 1, 1), 2.0),
    (5, 'best', 'both', (0.5, 1, 6), 4.0), (1, 'best', 'forward', (1, 1, 8), 4.0)])
def test_gdkd_equals_the_authors(k, strategy, kl_type, w, T):
    key = f'gdkd_k{k}_{strategy}_{kl_type}_w{w[0]:g},{w[1]:g},{w[2]:g}_T{T:g}'
    got = with_parts(lambda s, t: gdkd_loss(s, t, TARGET, k, strategy, *w, T, kl_type))
    assert_close(got[:4], REFERENCE[key][:4], rel=1e-5, abs_=1e-6)
    assert_loss_and_stats_close(got[:1] + got[4:], REFERENCE[key][:1] + REFERENCE[key][4:])


@pytest.mark.parametrize('k, w, T', [(4, (1, 2, 8), 4.0), (3, (0.5, 1, 6), 2.0)])
def test_gdkd3_equals_the_authors(k, w, T):
    key = f'gdkd3_k{k}_w{w[0]:g},{w[1]:g},{w[2]:g}_T{T:g}'
    got = with_parts(lambda s, t: gdkd3_loss(s, t, TARGET, k, *w, T))
    assert_close(got[:4], REFERENCE[key][:4], rel=1e-5, abs_=1e-6)
    assert_loss_and_stats_close(got[:1] + got[4:], REFERENCE[key][:1] + REFERENCE[key][4:])


def test_gdkd_with_one_class_and_a_teacher_right_everywhere_is_dkd():
    s, t = (det(6, 10, phase=0.5) * 3).requires_grad_(), det(6, 10, phase=2.0) * 4
    right = t.argmax(1)
    loss, _, low_top, _ = gdkd_loss(s, t, right, 1, 'best', 1.0, 3.0, 8.0, 4.0, 'forward')
    assert low_top == 0  # a group of one class has no distribution inside
    expected = dkd_loss(s, t, right, 1.0, 8.0, 4.0)
    assert torch.allclose(loss, expected, rtol=1e-5)
    g, = torch.autograd.grad(loss, s)
    assert torch.allclose(g, torch.autograd.grad(expected, s)[0], atol=1e-6)
    wrong = (right + 1) % 10  # the label plays no role: the groups are the teacher's
    assert torch.equal(gdkd_loss(s, t, wrong, 1, 'best', 1, 3, 8, 4.0, 'forward')[0], loss)


@pytest.mark.parametrize('alpha, T', [(33.0, 4.0), (70.0, 8.0), (2.0, 0.7)])
def test_luminet_equals_the_authors(alpha, T):
    assert_loss_and_stats_close(value_and_grad(lambda s, t: luminet_loss(s, t, TARGET, alpha, T)),
                                REFERENCE[f'luminet_a{alpha:g}_T{T:g}'])


def test_luminet_standardises_each_class_over_the_batch_and_squares_alpha():
    z = det(6, 10, phase=0.5) * 3
    p = perception(z)
    assert torch.allclose(p.mean(0), torch.zeros(10), atol=1e-6)
    assert torch.allclose(p.var(0, unbiased=False), torch.ones(10), atol=1e-4)
    s, t = z, det(6, 10, phase=2.0) * 4
    assert torch.allclose(luminet_loss(s, t, TARGET, 2.0, 4.0), 4 * luminet_loss(
        s, t, TARGET, 1.0, 4.0))
    # a KL of the standardised logits, without T^2
    assert torch.allclose(luminet_loss(s, t, TARGET, 1.0, 4.0),
                          DistillKL(4.0)(perception(s), perception(t)) / 16, rtol=1e-5)


@pytest.mark.parametrize('alpha, beta', [(0.5, 0.5), (0.8, 0.3), (1.0, 0.0), (0.5, 0.0),
                                         (0.0, 0.5), (0.5, -0.5), (0.0, 0.0), (0.5, 1e-4)])
def test_abkl_equals_the_authors_with_their_special_cases(alpha, beta):
    expected = REFERENCE[f'abkl_{alpha:g},{beta:g}']
    got = with_parts(ABKL(4.0, alpha, beta, with_entropies=True))  # and the two entropies
    assert_close(got[1:3], expected[1:3])
    assert_loss_and_stats_close(got[:1] + got[3:], expected[:1] + expected[3:])


def test_abkl_special_branches_are_not_the_general_forms_limits():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    # (1, 0) is KL(p || q) exactly; (0.5, 0) is half the textbook alpha-divergence, which the
    # general form approaches at (0.5, 1e-4)
    assert torch.allclose(ABKL(4.0, 1.0, 0.0)(s, t), DistillKL(4.0)(s, t) / 16, rtol=1e-5)
    branch, near = ABKL(4.0, 0.5, 0.0)(s, t), ABKL(4.0, 0.5, 1e-4)(s, t)
    assert near / branch == pytest.approx(2.0, rel=1e-2)


@pytest.mark.parametrize('alpha, beta, T', [(0.9, 0.3, 2.0), (1.0, 0.0, 2.0), (0.8, 0.3, 4.0)])
def test_ablsd_equals_the_authors_and_is_T2_abkl_on_standardised_logits(alpha, beta, T):
    assert_loss_and_stats_close(value_and_grad(lambda s, t: LS(T, alpha, beta)(s, t, TARGET, 1)),
                                REFERENCE[f'ls_{alpha:g},{beta:g}_T{T:g}'])
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    # the general form's terms cancel to a small difference: float32 noise of ~1e-5 of it
    assert torch.allclose(LS(T, alpha, beta)(s, t), T ** 2 * ABKL(T, alpha, beta)(
        normalize(s), normalize(t)), rtol=1e-4)


@pytest.mark.parametrize('ab_alpha, ab_beta', [(1.0, 0.0), (0.9, 0.3)])
def test_ab_dkd_equals_the_authors_and_is_dkd_at_one_zero(ab_alpha, ab_beta):
    assert_loss_and_stats_close(value_and_grad(
        lambda s, t: ab_dkd_loss(s, t, TARGET, 1.0, 6.0, 4.0, ab_alpha, ab_beta)),
        REFERENCE[f'abdkd_{ab_alpha:g},{ab_beta:g}'])
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    assert torch.allclose(ab_dkd_loss(s, t, TARGET, 1.0, 6.0, 4.0, 1, 0),
                          dkd_loss(s, t, TARGET, 1.0, 6.0, 4.0), rtol=1e-5)


@pytest.mark.parametrize('alpha, beta', [(1.0, 0.0), (0.8, 0.3), (1.6, -0.5)])
def test_abttm_equals_the_authors_and_is_ttm_at_one_zero(alpha, beta):
    assert_loss_and_stats_close(value_and_grad(lambda s, t: ABTTM(0.1, alpha, beta)(s, t)),
                                REFERENCE[f'abttm_{alpha:g},{beta:g}'])
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    assert torch.allclose(ABTTM(0.1, 1.0, 0.0)(s, t), TTM(0.1)(s, t), rtol=1e-5)


@pytest.mark.parametrize('key, fn', [
    ('ikl_T4_a1_b8_gi0_T2100', lambda s, t: dkl_loss(s, t, 4.0, 1.0, 8.0, None, False, 100.0)),
    ('ikl_T1_a1_b0.5_gi1_T21', lambda s, t: dkl_loss(s, t, 1.0, 1.0, 0.5, CLASS_PRIOR, True,
                                                     1.0)),
    ('gkl_T4_a1_b16_g0.05_gi1_T24', lambda s, t: gkl_loss(s, t, 4.0, 1.0, 16.0, 0.05, CLASS_PRIOR,
                                                          True, 4.0)),
    ('gkl_T4_a3_b20_g0.3_gi0_T24', lambda s, t: gkl_loss(s, t, 4.0, 3.0, 20.0, 0.3, None, False,
                                                         4.0)),
    ('gkl_T4_a1_b8_g0_gi1_T24', lambda s, t: gkl_loss(s, t, 4.0, 1.0, 8.0, 0.0, CLASS_PRIOR, True,
                                                      4.0))])
def test_ikl_and_gkl_equal_the_authors(key, fn):
    assert_loss_and_stats_close(value_and_grad(fn), REFERENCE[key])


def test_the_weighted_mse_is_the_sum_over_every_pair_of_classes():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    w = F.softmax(t / 2, 1)
    pairs = ((t[:, :, None] - t[:, None, :]) - (s[:, :, None] - s[:, None, :])) ** 2
    weights = w[:, :, None] * w[:, None, :]
    by_batch = 0.25 * (pairs * weights).sum() / 6
    sce = -(F.softmax(t / 4, 1) * F.log_softmax(s / 4, 1)).sum(1).mean()
    assert torch.allclose(dkl_loss(s, t, 4.0, 0.0, 1.0, None, False, 2.0), by_batch, rtol=1e-5)
    assert torch.allclose(dkl_loss(s, t, 4.0, 1.0, 0.0, None, False, 2.0), sce)
    # GKL at gamma 0: a plain mean of the squared errors, over the weights' sum
    assert torch.allclose(gkl_loss(s, t, 4.0, 0.0, 1.0, 0.0, None, False, 2.0),
                          0.25 * pairs.mean(), rtol=1e-5)


def test_class_prior_is_the_previous_epochs_mean_teacher_distribution():
    prior = ClassPrior(3, T2=2.0)
    assert torch.equal(prior.prior, torch.full((3, 3), 1 / 3))
    prior.start_epoch(1)
    logits = [torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]]), torch.tensor([[0.0, 0.0, 6.0]])]
    targets = [torch.tensor([0, 1]), torch.tensor([0])]
    for z, y in zip(logits, targets):
        prior.update(z, y)
    assert torch.equal(prior.prior, torch.full((3, 3), 1 / 3))  # epoch 1: uniform throughout
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    prior.start_epoch(1)  # a resumed epoch keeps its sums
    assert torch.equal(prior.sums, state['sums'])
    prior.start_epoch(2)
    p = F.softmax(torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]]) / 2, 1)
    assert torch.allclose(prior.prior[0], (p[0] + p[2]) / 2)
    assert torch.allclose(prior.prior[1], p[1])
    assert torch.equal(prior.prior[2], torch.full((3,), 1 / 3))  # no sample: its row is kept
    assert torch.equal(prior.class_prior(torch.tensor([1, 0])), prior.prior[[1, 0]])
    restored = ClassPrior(3, T2=2.0)
    restored.load_state_dict(state)
    restored.start_epoch(2)
    assert torch.equal(restored.prior, prior.prior)


def test_gkl_accumulates_the_prior_in_training_only_and_checkpoints_it():
    distiller, _, _ = build('gkl', ikl_gi=1, gkl_gamma=0.5)
    x, y, index, contrast = fixed_batch()
    distiller.set_epoch(1)
    distiller.train()
    distiller.forward_train(Batch(x, y, index, contrast))
    assert distiller.prior.sums.sum().item() == pytest.approx(len(y))
    distiller.eval()
    with torch.no_grad():
        distiller.forward_train(Batch(x, y, index, contrast))
    assert distiller.prior.sums.sum().item() == pytest.approx(len(y))
    state = distiller.checkpoint_state()['method_state']
    assert {'prior.prior', 'prior.sums', 'prior.epoch'} <= set(state)


def test_settings_mappings_are_the_authors_tables():
    assert len(GDKD_SETTINGS) == 11 and GDKD_SETTINGS['resnet32x4', 'resnet8x4'] == (
        1.0, 2.0, 8.0, 5, 4.0)
    assert GDKD_SETTINGS['wrn_40_2', 'ShuffleV1'] == (1.0, 2.0, 6.0, 5, 4.0)
    assert len(LUMINET_SETTINGS) == 6 and LUMINET_SETTINGS['wrn_40_2', 'wrn_40_1'] == (
        75.0, 8.0, 1.0)
    assert len(IKL_SETTINGS) == 11 and IKL_SETTINGS['wrn_40_2', 'wrn_16_2'] == (3.0, 12.0, 4.0)
    assert len(GKL_SETTINGS) == 11 and GKL_SETTINGS['resnet110', 'resnet32'] == (
        1.0, 4.0, 0.1, 4.0, 0, 4.0)


@pytest.mark.parametrize('flags, teacher, student, expected', [
    (['--distill', 'gdkd'], 'resnet32x4', 'resnet8x4',
     {'gdkd_w0': 1.0, 'gdkd_w1': 2.0, 'gdkd_w2': 8.0, 'gdkd_k': 5, 'gdkd_T': 4.0}),
    (['--distill', 'gdkd', '--gdkd_w2', '3'], 'vgg13', 'vgg8', {'gdkd_w1': 1.0, 'gdkd_w2': 3.0}),
    (['--distill', 'gdkd3'], 'resnet56', 'resnet20', {'gdkd_w2': 1.0, 'gdkd3_k': 4}),
    (['--distill', 'gdkd'], 'resnet8', 'resnet8', {'gdkd_w1': 1.0, 'gdkd_w2': 8.0}),
    (['--distill', 'luminet'], 'vgg13', 'vgg8', {'luminet_alpha': 70.0, 'luminet_T': 8.0}),
    (['--distill', 'luminet'], 'resnet56', 'resnet20', {'luminet_alpha': 31.0, 'luminet_T': 4.0}),
    (['--distill', 'ikl'], 'wrn_40_2', 'wrn_16_2',
     {'ikl_alpha': 3.0, 'ikl_beta': 12.0, 'ikl_T': 4.0, 'ikl_T2': 100.0, 'ikl_gi': 0}),
    (['--distill', 'gkl'], 'wrn_40_2', 'wrn_16_2',
     {'ikl_alpha': 3.0, 'ikl_beta': 20.0, 'gkl_gamma': 0.3, 'ikl_T2': 4.0, 'ikl_gi': 0}),
    (['--distill', 'gkl'], 'resnet32x4', 'resnet8x4', {'ikl_beta': 16.0, 'ikl_gi': 1}),
    (['--distill', 'abkd_dkd'], 'vgg13', 'vgg8', {'dkd_beta': 6.0, 'dkd_warmup': 20})])
def test_per_pair_defaults(flags, teacher, student, expected):
    options = run_config(*flags, teacher=teacher, student=student).method.options
    assert {k: getattr(options, k) for k in expected} == expected


def test_luminets_cross_entropy_weight_and_abkd_lsds_temperature_are_the_authors():
    assert run_config('--distill', 'luminet').method.weights == (1.0, 0.0, 1.0)  # vgg13 -> vgg8
    assert run_config('--distill', 'luminet', teacher='vgg13', student='MobileNetV2'
                      ).method.weights == (2.0, 0.0, 1.0)
    assert run_config('--distill', 'luminet', '-r', '3').method.weights == (3.0, 0.0, 1.0)
    assert run_config('--distill', 'abkd_lsd').method.kd_T == 2.0
    assert run_config('--distill', 'abkd_lsd', '--kd_T', '3').method.kd_T == 3.0
    # the authors' spellings of ABKD's options
    abkd = run_config('--distill', 'abkd', '--ab_alpha', '0.8', '--ab_beta', '0.3').method
    assert (abkd.options.abkd_alpha, abkd.options.abkd_beta, abkd.weights) == (0.8, 0.3,
                                                                                (1.0, 0.0, 32.0))
    ttm = run_config('--distill', 'abkd_ttm', '--ttm_l', '0.2', '-b', '76').method
    assert (ttm.ttm_l, ttm.weights) == (0.2, (1.0, 0.0, 76.0))


@pytest.mark.parametrize('flags, message', [
    (['--distill', 'abkd_ttm'], 'give its weight -b W'),
    (['--distill', 'abkd_lsd', '--abkd_alpha', '0'], 'alpha, beta and alpha \\+ beta must be'),
    (['--distill', 'abkd_dkd', '--abkd_alpha', '0.5', '--abkd_beta', '-0.5'], 'must be nonzero'),
    (['--distill', 'abkd', '--ttm_l', '0.2'], '--ttm_l is the power of TTM'),
    (['--distill', 'gdkd', '--gdkd_kl_type', 'sideways'], 'invalid choice'),
    (['--distill', 'ikl', '--ikl_T2', '0'], 'must be a positive number'),
    (['--distill', 'gkl', '--ikl_gi', '2'], 'invalid choice'),
    (['--distill', 'abkd', '--ab_alpha', 'nan'], 'must be a finite number')])
def test_refusals_are_one_line(flags, message):
    with pytest.raises((UserError, SystemExit), match=message):
        run_config(*flags)


@pytest.mark.parametrize('name', ['gdkd', 'gdkd3', 'luminet', 'abkd', 'abkd_lsd', 'abkd_dkd',
                                  'ikl', 'gkl'])
def test_they_read_only_logits_so_the_teacher_cache_serves_them(name):
    assert run_config('--distill', name, '--teacher_cache', '2', '--epochs', '2').plugins


@pytest.mark.parametrize('T, seed', [(4.0, 0), (2.0, 7)])
def test_tekap_equals_the_authors_with_the_same_draws(T, seed):
    def loss(s, t):
        torch.manual_seed(seed)  # the noise is drawn first thing in the call, as theirs
        return TeKAPDistillKL(T)(s, t, TARGET)
    assert_loss_and_stats_close(value_and_grad(loss), REFERENCE[f'tekap_T{T:g}_seed{seed}'])


def test_tekap_is_kd_plus_three_noisy_teachers_and_draws_anew_each_call():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    torch.manual_seed(3)
    noise = [torch.randn(6, 10) for _ in range(3)]
    torch.manual_seed(3)
    kl = DistillKL(4.0)
    expected = kl(s, t) + 0.8 * sum(kl(s, 0.9 * t + 0.1 * e) for e in noise)
    assert torch.allclose(TeKAPDistillKL(4.0)(s, t), expected, rtol=1e-6)
    assert not torch.equal(TeKAPDistillKL(4.0)(s, t), TeKAPDistillKL(4.0)(s, t))


def test_tekap_is_the_a_term_of_kd_and_of_any_method_whose_a_term_is_kd():
    tekap = run_config('--distill', 'tekap').method
    assert (tekap.name, tekap.add, tekap.weights) == ('kd', 'tekap', (0.1, 0.9, 0.0))
    crd = run_config('--distill', 'crd', '--add', 'tekap', '-a', '1').method
    assert (crd.add, crd.weights) == ('tekap', (1.0, 1.0, 0.8))
    distiller, _, _ = build('tekap')
    x, y, index, contrast = fixed_batch()
    with torch.no_grad():
        torch.manual_seed(5)
        _, losses = distiller.forward_train(Batch(x, y, index, contrast))
        s, t = distiller.student(x), distiller.teacher_net(x)
        torch.manual_seed(5)
        assert torch.allclose(losses['div'], 0.9 * TeKAPDistillKL(4)(s, t), rtol=1e-5)


@pytest.mark.parametrize('flags, message', [
    (['--distill', 'kd', '--add', 'tekap', '-a', '0'], 'makes the -a term TEKAP, of weight 0'),
    (['--distill', 'mlld', '--add', 'tekap'], 'is its own, not the KD term'),
    (['--distill', 'tekap', '--ttm_l', '0.2'], '--ttm_l is the power of TTM')])
def test_tekap_refusals_are_one_line(flags, message):
    with pytest.raises(UserError, match=message):
        run_config(*flags)


def tekap_crd_loss():
    """TeKAP-F's loss set up as the fixture's (tests/fixtures/reference/tekap_crd.json)."""
    opt = SimpleNamespace(s_dim=16, t_dim=24, feat_dim=8, nce_k=5, nce_t=0.07, nce_m=0.5,
                          n_data=20)
    loss = fill_by_name(TeKAPCRDLoss(opt))
    with torch.no_grad():
        loss.contrast.memory_v1.copy_(det(20, 8, phase=0.2) * 0.4)
        loss.contrast.memory_v2.copy_(det(20, 8, phase=0.9) * 0.4)
    return loss


def test_tekap_crd_equals_the_authors_over_two_batches_memories_included():
    loss_fn = tekap_crd_loss()
    idx = torch.tensor([3, 7, 11, 0, 19, 5])
    contrast = torch.stack([(idx + 1 + 3 * k) % 20 for k in range(6)], 1)
    contrast[:, 0] = idx
    for step, (seed, expected) in enumerate(zip((0, 5), REFERENCE['tekap_crd_two_batches'])):
        f_s = (det(6, 16, phase=0.5 + step) * 2).requires_grad_()
        f_t = det(6, 24, phase=2.0 + step) * 2
        torch.manual_seed(seed)  # the noise is drawn first thing in the call, as theirs
        loss = loss_fn(f_s, f_t, idx, contrast)
        loss.backward()
        assert_stats_close([loss.item()] + grad_stats(f_s.grad), expected[:4], scalars=1)
        m = loss_fn.contrast
        memories = [m.memory_v1.sum().item(), m.memory_v1.abs().sum().item(),
                    m.memory_v2.sum().item(), m.memory_v2.abs().sum().item()]
        assert_close(memories, expected[4:8], rel=1e-5, abs_=1e-5)
        assert_close(m.params[2:4].tolist(), expected[8:], rel=1e-5)


def test_tekap_crd_is_crd_with_tekaps_a_term_and_refuses_another():
    config = run_config('--distill', 'tekap_crd').method
    assert config.weights == (1.0, 0.0, 0.8)
    distiller, _, _ = build('tekap_crd', **{'alpha': 1.0})
    assert isinstance(distiller.criterion_kd, TeKAPCRDLoss)
    x, y, index, contrast = fixed_batch()
    with torch.no_grad():
        torch.manual_seed(2)
        _, losses = distiller.forward_train(Batch(x, y, index, contrast))
        s, t = distiller.student(x), distiller.teacher_net(x)
        torch.manual_seed(2)
        assert torch.allclose(losses['div'], TeKAPDistillKL(4)(s, t), rtol=1e-5)  # -a 1: F+L
    with pytest.raises(UserError, match='is its own, not the KD term'):
        run_config('--distill', 'tekap_crd', '--add', 'ttm')
