"""Logit methods of the 2023-24 papers: TTM/WTTM, NKD, RLD, SDD and MLLD. Values and gradients
against their authors' code (tests/fixtures/reference/<method>.json names each repository and
commit), the -a term they can take, their defaults and per-pair values, MLLD's views, and
their refusals."""

import numpy as np
import pytest
import torch
from PIL import Image

from builders import build, fixed_batch, run_config, run_options
from core.util import UserError
from dataset.batch import Batch
from dataset.randaugment import CUTOUT_FILL, cutout, rand_augment
from dataset.views import WeakStrongViews, crop_and_flip_one
from distiller_zoo import (SPP, TTM, WTTM, DistillKL, NKDLoss, bc_loss, cc_loss, dkd_loss,
                           get_method, mlld_loss, multi_dkd, multi_nkd_loss, nkd_loss, rld_loss,
                           sdd_kd_loss, sdd_logits)
from helper import resolver
from helper.distillation import for_teacher
from reference import (assert_close, assert_loss_and_stats_close, assert_stats_close, det, flat,
                       grad_stats, reference, value_and_grad)

REFERENCE = reference('ttm', 'nkd', 'rld', 'sdd', 'mlld')
TARGET = torch.tensor([1, 3, 5, 7, 9, 0])


@pytest.mark.parametrize('power', [0.1, 0.2, 1.0])
def test_ttm_and_wttm_equal_the_authors(power):
    assert_loss_and_stats_close(value_and_grad(TTM(power)), REFERENCE[f'ttm_{power}'])
    assert_loss_and_stats_close(value_and_grad(WTTM(power)), REFERENCE[f'wttm_{power}'])


def test_ttm_at_power_one_is_the_kl_at_temperature_one_and_wttm_weighs_flat_teachers_more():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    assert torch.allclose(TTM(1.0)(s, t), DistillKL(1)(s, t), atol=1e-6)
    assert torch.allclose(WTTM(1.0)(s, t), TTM(1.0)(s, t), atol=1e-6)  # weights sum_c p_t = 1
    flat, sharp = torch.zeros(1, 10), torch.eye(10)[:1] * 20
    assert WTTM(0.1)(s[:1], flat) / TTM(0.1)(s[:1], flat) > WTTM(0.1)(s[:1], sharp) / TTM(0.1)(
        s[:1], sharp)


@pytest.mark.parametrize('temp, gamma', [(1.0, 1.5), (3.0, 3.5)])
def test_nkd_equals_the_authors(temp, gamma):
    assert_loss_and_stats_close(value_and_grad(lambda s, t: NKDLoss(temp, gamma)(s, t, TARGET)),
                                REFERENCE[f'nkd_T{temp}_g{gamma}'])


def test_nkd_takes_mixed_labels_by_their_largest_entry_and_is_not_zero_at_a_match():
    soft = torch.zeros(6, 10)
    soft[torch.arange(6), TARGET] = 0.7
    soft[torch.arange(6), (TARGET + 1) % 10] = 0.3
    assert_loss_and_stats_close(value_and_grad(lambda s, t: NKDLoss(3.0, 3.5)(s, t, soft)),
                                REFERENCE['nkd_soft_labels'])
    t = det(6, 10, phase=2.0) * 4  # a cross-entropy: the teacher's entropy remains at a match
    assert nkd_loss(t, t, TARGET, 3.0, 3.5) > 1


@pytest.mark.parametrize('stand', [0, 1])
@pytest.mark.parametrize('alpha_T', [1.0, 4.0])
def test_rld_equals_the_authors(stand, alpha_T):
    assert_loss_and_stats_close(value_and_grad(
        lambda s, t: rld_loss(s, t, TARGET, 1.0, 8.0, 4.0, bool(stand), alpha_T)),
        REFERENCE[f'rld_stand{stand}_aT{alpha_T}'])


def test_rld_is_dkd_where_the_teacher_is_right():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    right = t.argmax(1)  # the teacher's top class is the label: nothing to refine
    assert torch.allclose(rld_loss(s, t, right, 1.0, 8.0, 4.0, False, 4.0),
                          dkd_loss(s, t, right, 1.0, 8.0, 4.0), atol=1e-5)


@pytest.mark.parametrize('name, module', [
    ('ttm', lambda: TTM(0.1)), ('wttm', lambda: WTTM(0.1)),
    ('nkd', lambda: (lambda s, t: NKDLoss(1.0, 1.5)(s, t, fixed_batch()[1])))])
def test_the_methods_term_is_the_authors_module(name, module):
    distiller, teacher, student = build(name)
    x, y, index, contrast = fixed_batch()
    with torch.no_grad():
        logits, losses = distiller.train().forward_train(Batch(x, y, index, contrast))
        expected = module()(logits, teacher.eval()(x))
    beta = get_method(name).needs.weights[2]
    assert torch.allclose(losses['kd'], beta * expected, rtol=1e-5)


def test_rld_term_is_the_authors_after_its_warm_up():
    distiller, teacher, _ = build('rld')
    distiller.set_epoch(10)  # half-way through the 20-epoch warm-up
    x, y, index, contrast = fixed_batch()
    with torch.no_grad():
        logits, losses = distiller.train().forward_train(Batch(x, y, index, contrast))
        expected = rld_loss(logits, teacher.eval()(x), y, 1.0, 8.0, 4.0, False, 4.0)
    assert torch.allclose(losses['kd'], 0.5 * expected, rtol=1e-5)


def test_add_wttm_makes_the_a_term_of_another_method_wttm():
    distiller, teacher, _ = build('crd', add='wttm', ttm_l=0.2, alpha=4.0)
    x, y, index, contrast = fixed_batch()
    with torch.no_grad():
        logits, losses = distiller.train().forward_train(Batch(x, y, index, contrast))
        expected = WTTM(0.2)(logits, teacher.eval()(x))
    assert torch.allclose(losses['div'], 4 * expected, rtol=1e-5)
    assert 'WTTM, teacher power 0.2' in distiller.kl.describe()


@pytest.mark.parametrize('name', ['ttm', 'nkd', 'rld'])
def test_the_learned_temperature_trains_through_the_new_logit_terms(name):
    distiller, _, _ = build(name, ctkd=True)
    distiller.set_epoch(30)
    x, y, index, contrast = fixed_batch()
    _, losses = distiller.train().forward_train(Batch(x, y, index, contrast))
    losses['kd'].backward()
    grads = [p.grad for p in distiller.learned_T.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_defaults_and_the_authors_command_lines():
    config = run_config('--distill', 'ttm')  # the README's: --ttm_l 0.1 -r 1 -b 45 -a 0
    assert (config.method.weights, config.method.ttm_l) == ((1.0, 0.0, 45.0), 0.1)
    config = run_config('--distill', 'crd', '--add', 'wttm', '--ttm_l', '0.2', '-b', '0.8',
                        '-a', '4')
    assert (config.method.add, config.method.ttm_l, config.method.weights) == (
        'wttm', 0.2, (1.0, 4.0, 0.8))
    assert resolver.run_dir(config).endswith('_1_add:wttm_ttm_l:0.2')
    assert vars(run_config('--distill', 'nkd').method.options) == {'nkd_T': 1.0, 'nkd_gamma': 1.5}
    rld = run_config('--distill', 'rld').method.options
    assert (rld.rld_alpha, rld.rld_beta, rld.rld_T, rld.rld_alpha_T, rld.rld_warmup) == (
        1.0, 8.0, 4.0, None, 20)
    # with --logit_stand, as the RLD authors' train.py: alpha w, beta 8w, T = alpha_T = tau
    rld = run_config('--distill', 'rld', '--logit_stand').method
    assert (rld.options.rld_alpha, rld.options.rld_beta, rld.options.rld_T) == (9.0, 72.0, 2.0)
    assert rld.logit_stand


@pytest.mark.parametrize('flags, message', [
    (['--distill', 'kd', '--add', 'wttm', '-a', '0'], 'of weight 0 here'),
    (['--distill', 'dml', '--add', 'ttm'], 'is its own, not the KD term'),
    (['--distill', 'kd', '--ttm_l', '0.3'], '--ttm_l is the power of TTM and WTTM'),
    (['--distill', 'nkd', '--nkd_T', '0'], 'must be a positive number'),
    (['--distill', 'kd', '--nesterov', '--optimizer', 'dot'], 'which --optimizer dot replaces')])
def test_refusals_are_one_line(flags, message):
    with pytest.raises(UserError, match=message):
        run_config(*flags)


@pytest.mark.parametrize('name', ['ttm', 'wttm', 'nkd', 'rld'])
def test_logit_methods_can_train_from_the_teacher_cache(name):
    assert run_config('--distill', name, '--teacher_cache', '2', '--epochs', '2').plugins


def multi_value_and_grad(loss_fn, regions):
    s = (det(6, 10, regions, phase=0.5) * 3).requires_grad_()
    t = det(6, 10, regions, phase=2.0) * 4
    loss = loss_fn(s, t)
    loss.backward()
    return [loss.item()] + grad_stats(s.grad)


@pytest.mark.parametrize('regions', [5, 21])
def test_sdd_losses_equal_the_authors(regions):
    for name, fn in (('sdd_kd', lambda s, t: sdd_kd_loss(s, t, 4.0, TARGET)),
                     ('sdd_dkd', lambda s, t: multi_dkd(s, t, TARGET, 1.0, 8.0, 4.0)),
                     ('sdd_nkd', lambda s, t: multi_nkd_loss(s, t, TARGET, 4.0, 8.0))):
        assert_loss_and_stats_close(multi_value_and_grad(fn, regions),
                                    REFERENCE[f'{name}_N{regions}'])


@pytest.mark.parametrize('M, size', [('[1,2,4]', 8), ('[1,2]', 8), ('[1,2,4]', 2)])
def test_sdd_region_logits_equal_the_authors(M, size):
    fc = torch.nn.Linear(8, 10)
    with torch.no_grad():
        fc.weight.copy_(det(10, 8, phase=1.0) * 0.5)
        fc.bias.copy_(det(10, phase=3.0) * 0.1)
        x = det(2, 8, size, size, phase=0.7)
        score = sdd_logits(x, fc, M)
        total, absolute, first, shape = REFERENCE[f'sdd_logits_{M}_{size}']
        assert list(score.shape) == shape
        assert_close([score.sum().item(), score.abs().sum().item()] + score.flatten()[:5].tolist(),
                     [total, absolute] + first, scale=absolute)
        assert torch.allclose(score[..., 0], fc(x.mean((2, 3))), atol=1e-5)  # region 0: global
        assert SPP(M)(x)[0].shape == (2, 8, score.shape[2])


def test_sdd_with_one_scale_is_plain_kd_and_regions_that_disagree_count_twice():
    s, t = det(6, 10, 1, phase=0.5) * 3, det(6, 10, 1, phase=2.0) * 4
    assert torch.allclose(sdd_kd_loss(s, t, 4.0, TARGET), DistillKL(4)(s[..., 0], t[..., 0]),
                          atol=1e-6)
    from distiller_zoo.SDD import region_weights
    # 2 regions of a batch of 3, labels 0 1 1: the teacher's global predictions 0 1 2 (right,
    # right, wrong), its local ones 0 2 1 (right, wrong, right)
    out_t = torch.eye(3)[[0, 1, 2, 0, 2, 1]]
    weights = region_weights(out_t, torch.tensor([0, 1, 1, 0, 1, 1]), 3)
    assert weights.tolist() == [1, 1, 1, 1, 2, 2]  # global right/local wrong and the reverse


@pytest.mark.parametrize('name', ['sdd_kd', 'sdd_dkd', 'sdd_nkd'])
def test_sdd_methods_take_their_regions_through_each_networks_classifier(name):
    distiller, teacher, student = build(name, teacher='resnet8x4', student='resnet8x4',
                                        sdd_m='[1,2]')
    distiller.set_epoch(30)
    x, y, index, contrast = fixed_batch()
    _, losses = distiller.train().forward_train(Batch(x, y, index, contrast))
    with torch.no_grad():
        head_s = student(x, is_feat=True, with_head_map=True)[2]
        head_t = teacher.eval()(x, is_feat=True, with_head_map=True)[2]
        out_s = sdd_logits(head_s, student.fc, '[1,2]')
        out_t = sdd_logits(head_t, teacher.fc, '[1,2]')
    expected = {'sdd_kd': lambda: 0.9 * sdd_kd_loss(out_s, out_t, 4.0, y),
                'sdd_dkd': lambda: multi_dkd(out_s, out_t, y, 1.0, 8.0, 4.0),
                'sdd_nkd': lambda: multi_nkd_loss(out_s, out_t, y, 4.0, 8.0)}[name]()
    assert torch.allclose(losses['kd'], expected, rtol=1e-4)
    losses['kd'].backward()
    assert distiller.student.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in distiller.teacher_net.parameters())


def test_sdd_scales_per_pair():
    config = run_config('--distill', 'sdd_kd')  # vgg13 -> vgg8
    assert config.method.options.sdd_m == '[1,2]' and config.options['sdd_m'] is None
    assert 'sdd_m' not in resolver.run_name(config, 'vgg13')  # the pair's value names no folder
    given = run_config('--distill', 'sdd_kd', '--sdd_m', '[1,2,4]')
    assert given.method.options.sdd_m == '[1,2,4]'
    assert '_sdd_m:[1,2,4]' in resolver.run_name(given, 'vgg13')
    # A teacher whose architecture only its file tells: filled in once it is loaded.
    opt, flags = resolver.read_command_line(['--path_t', 'teacher.pth', '--model_s', 'vgg8',
                                             '--distill', 'sdd_kd'])
    unknown = resolver.resolve_options(opt, flags, None).method
    assert unknown.options.sdd_m is None
    assert for_teacher(unknown, get_method('sdd_kd'), 'vgg13', 64).options.sdd_m == '[1,2]'
    from distiller_zoo.SDD import SDDKD, SDDNKD
    assert SDDKD.resolved_options({'sdd_m': None}, 'vgg13', 'vgg8')['sdd_m'] == '[1,2]'
    assert SDDKD.resolved_options({'sdd_m': None}, 'vgg13', 'MobileNetV2')['sdd_m'] == '[1,2,4]'
    assert SDDNKD.resolved_options({'sdd_m': None}, 'ResNet50', 'vgg8')['sdd_m'] == '[1,2]'
    assert SDDKD.resolved_options({'sdd_m': None}, 'ResNet50', 'vgg8')['sdd_m'] == '[1,2,4]'
    with pytest.raises(UserError, match='stores the teacher\'s logits'):
        run_config('--distill', 'sdd_kd', '--teacher_cache', '2', '--epochs', '2')


@pytest.mark.parametrize('teacher, student, value', [
    ('vgg13', 'MobileNetV2', 6.0), ('vgg13', 'vgg8', 6.0), ('wrn_40_2', 'MobileNetV2', 6.0),
    ('resnet32x4', 'MobileNetV2', 6.0), ('resnet56', 'resnet20', 2.0),
    ('resnet32x4', 'ShuffleV1', 8.0), ('ResNet50', 'vgg8', 8.0), ('wrn_40_2', 'ShuffleV1', 8.0)])
def test_sdd_dkds_beta_and_sdd_nkds_gamma_are_the_pairs_config_beta(teacher, student, value):
    """SDD's code reads its configs' DKD.BETA as SD-DKD's beta and as SD-NKD's gamma
    (configs/cifar100/sdd_{dkd,nkd}/*.yaml at e412036; 8.0 where a config sets none)."""
    from distiller_zoo.SDD import SDDDKD
    beta = SDDDKD.resolved_options({'sdd_dkd_beta': None}, teacher, student)['sdd_dkd_beta']
    assert beta == value
    for flags in (('--distill', 'sdd_nkd'), ('--distill', 'sdd_nkd', '--sdd_m', '[1]')):
        config = run_config(*flags, teacher=teacher, student=student)
        assert config.options['sdd_nkd_gamma'] == value
    given = run_config('--distill', 'sdd_nkd', '--sdd_nkd_gamma', '3', teacher=teacher,
                  student=student)
    assert given.options['sdd_nkd_gamma'] == 3.0


# -- MLLD --------------------------------------------------------------------------------------
def mlld_inputs(B):
    return (det(B, 10, phase=0.3, scale=3), det(B, 10, phase=0.9, scale=3),
            det(B, 10, phase=2.1, scale=6), det(B, 10, phase=2.8, scale=6), torch.arange(B) % 10)


@pytest.mark.parametrize('B', [16, 15])
def test_mlld_terms_and_gradients_match_the_authors(B):
    weak, strong, t_weak, t_strong, y = mlld_inputs(B)
    weak.requires_grad_(), strong.requires_grad_()
    terms = mlld_loss(weak, strong, t_weak, t_strong, y)
    expected = REFERENCE[f'mlld_B{B}']
    for ours, theirs in (('cls', 'loss_ce'), ('kd', 'loss_kd'), ('cc', 'loss_cc'),
                         ('bc', 'loss_bc')):
        assert terms[ours].item() == pytest.approx(expected[theirs], rel=1e-5), ours
    g_weak, g_strong = torch.autograd.grad(sum(terms.values()), (weak, strong))
    expected = flat(REFERENCE[f'mlld_B{B}_grads'])
    assert_stats_close(grad_stats(g_weak), expected[:5])
    assert_stats_close(grad_stats(g_strong), expected[5:])


@pytest.mark.parametrize('B', [16, 15])
def test_mlld_sample_masks_follow_the_papers_reading(B):
    terms = mlld_loss(*mlld_inputs(B), mask='sample')
    expected = REFERENCE[f'mlld_sample_B{B}']
    for name in ('kd', 'cc', 'bc'):
        assert terms[name].item() == pytest.approx(expected[name], rel=1e-5), name
    # The authors' code gives a different (fraction-scaled) value on the same inputs.
    assert mlld_loss(*mlld_inputs(B))['cc'].item() != pytest.approx(expected['cc'], rel=1e-3)


def test_gram_terms_match_the_authors():
    a, b = det(8, 10, phase=0.1), det(8, 10, phase=1.1)
    assert cc_loss(a, b, 4.0).item() == pytest.approx(REFERENCE['cc_loss'], rel=1e-5)
    assert bc_loss(a, b, 4.0).item() == pytest.approx(REFERENCE['bc_loss'], rel=1e-5)
    assert cc_loss(a, b, 4.0, reduce=False).shape == (10, 10)
    assert bc_loss(a, b, 4.0, reduce=False).shape == (8, 8)
    assert cc_loss(a, a, 4.0).item() == 0 and bc_loss(a, a, 4.0).item() == 0


def test_weak_view_is_a_crop_and_flip_and_strong_view_differs():
    rng = np.random.RandomState(0)
    image = np.random.RandomState(1).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    views = WeakStrongViews().make_one(image, rng)
    assert views.shape == (2, 32, 32, 3) and views.dtype == np.uint8
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    windows = [padded[r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
    assert any(np.array_equal(views[0], w) or np.array_equal(views[0], w[:, ::-1])
               for w in windows)
    again = WeakStrongViews().make_one(image, np.random.RandomState(0))
    assert np.array_equal(views, again)  # all draws come from the given state
    strong = [WeakStrongViews().make_one(image, np.random.RandomState(s))[1] for s in range(8)]
    assert not any(any(np.array_equal(v, w) or np.array_equal(v, w[:, ::-1]) for w in windows)
                   for v in strong)


def test_rand_augment_keeps_size_and_cutout_fills_a_square():
    img = Image.fromarray(np.full((32, 32, 3), 7, np.uint8))
    for seed in range(20):
        assert rand_augment(img, np.random.RandomState(seed)).size == (32, 32)
    out = np.asarray(cutout(img, 8.0, np.random.RandomState(0)))
    filled = (out == CUTOUT_FILL).all(-1)
    rows, cols = np.nonzero(filled)
    assert 0 < filled.sum() <= 81 and filled[rows.min():rows.max() + 1,
                                             cols.min():cols.max() + 1].all()
    assert np.array_equal(np.asarray(cutout(img, 0.0, np.random.RandomState(0))),
                          np.asarray(img))
    assert np.array_equal(crop_and_flip_one(np.asarray(img), np.random.RandomState(0)).shape,
                          (32, 32, 3))


def test_mlld_runs_the_student_once_per_view():
    distiller, teacher, student = build('mlld')
    calls = []
    student.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    teacher.register_forward_hook(lambda m, i, o: calls.append(-i[0].shape[0]))
    x = torch.randn(4, 2, 3, 32, 32)
    logits, terms = distiller.forward_train(Batch(x, torch.arange(4)))
    assert sorted(calls) == [-4, -4, 4, 4] and set(terms) == {'cls', 'kd', 'cc', 'bc'}
    assert torch.allclose(logits, student(x[:, 0]))  # the weak view's (its own BN statistics)


def test_mlld_defaults_follow_the_authors_recipe(capsys):
    opt = run_options('--distill', 'mlld')
    assert (opt.epochs, opt.learning_rate, opt.gamma, opt.alpha, opt.kd_T) == (
        480, 0.025, 0.1, 0.9, 4)
    assert '--epochs 480 --learning_rate 0.025' in capsys.readouterr().out
    opt = run_options('--distill', 'mlld', student='ShuffleV2')
    assert (opt.epochs, opt.learning_rate) == (960, 0.01)
    opt = run_options('--distill', 'mlld', '--epochs', '240', '--learning_rate', '0.05')
    assert (opt.epochs, opt.learning_rate) == (240, 0.05)
