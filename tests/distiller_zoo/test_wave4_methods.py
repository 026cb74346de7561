"""The methods of 2024-26 papers' tables (TTM/WTTM, NKD, RLD, SDD, CAT-KD, MGD, FCFD): values and
gradients against their authors' code, the -a term they can take, their defaults, module sizes,
exact resume and refusals.

The reference values (tests/fixtures/wave4_reference.json) come from running the authors' code
on the inputs below; the file names each repository and commit."""
import json
import os

import pytest
import torch

import train_student
from helper import resolver
from builders import build, fill_by_name, fixed_batch, make
from conftest import FIXTURES
from core.util import UserError
from dataset.batch import Batch
from models import get_model
from distiller_zoo import (SPP, TTM, WTTM, CAT_loss, DistillKL, MGDLoss, NKDLoss, get_method,
                           multi_dkd, multi_nkd_loss, nkd_loss, rld_loss, sdd_kd_loss, sdd_logits)
from distiller_zoo.DKD import dkd_loss
from reference import (assert_close, assert_loss_and_stats_close, assert_stats_close, det,
                       grad_stats)
from runs import straight_and_resumed

REFERENCE = json.load(open(os.path.join(FIXTURES, 'wave4_reference.json')))
TARGET = torch.tensor([1, 3, 5, 7, 9, 0])


def value_and_grad(loss_fn):
    """``[loss, *grad_stats]`` of ``loss_fn(student, teacher)`` on the stored inputs."""
    s = (det(6, 10, phase=0.5) * 3).requires_grad_()
    t = det(6, 10, phase=2.0) * 4
    loss = loss_fn(s, t)
    loss.backward()
    return [loss.item()] + grad_stats(s.grad)


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
    beta = get_method(name).recipe.weights[2]
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


def parse(*flags, teacher='vgg13', student='vgg8'):
    return train_student.parse_option(['--path_t', f'save/models/{teacher}_vanilla/ckpt.pth',
                                       '--model_s', student] + list(flags))


def test_defaults_and_the_authors_command_lines():
    config = parse('--distill', 'ttm')  # the README's: --ttm_l 0.1 -r 1 -b 45 -a 0
    assert (config.method.weights, config.method.ttm_l) == ((1.0, 0.0, 45.0), 0.1)
    config = parse('--distill', 'crd', '--add', 'wttm', '--ttm_l', '0.2', '-b', '0.8', '-a', '4')
    assert (config.method.add, config.method.ttm_l, config.method.weights) == (
        'wttm', 0.2, (1.0, 4.0, 0.8))
    assert resolver.run_dir(config).endswith('_1_add:wttm_ttm_l:0.2')
    assert vars(parse('--distill', 'nkd').method.options) == {'nkd_T': 1.0, 'nkd_gamma': 1.5}
    rld = parse('--distill', 'rld').method.options
    assert (rld.rld_alpha, rld.rld_beta, rld.rld_T, rld.rld_alpha_T, rld.rld_warmup) == (
        1.0, 8.0, 4.0, None, 20)
    # with --logit_stand, as the RLD authors' train.py: alpha w, beta 8w, T = alpha_T = tau
    rld = parse('--distill', 'rld', '--logit_stand').method
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
        parse(*flags)


@pytest.mark.parametrize('name', ['ttm', 'wttm', 'nkd', 'rld'])
def test_logit_methods_can_train_from_the_teacher_cache(name):
    assert parse('--distill', name, '--teacher_cache', '2', '--epochs', '2').plugins


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
    assert parse('--distill', 'sdd_kd').method.options.sdd_m is None  # resolved at build
    from distiller_zoo.SDD import SDDKD, SDDNKD
    assert SDDKD.resolved_options({'sdd_m': None}, 'vgg13', 'vgg8')['sdd_m'] == '[1,2]'
    assert SDDKD.resolved_options({'sdd_m': None}, 'vgg13', 'MobileNetV2')['sdd_m'] == '[1,2,4]'
    assert SDDNKD.resolved_options({'sdd_m': None}, 'ResNet50', 'vgg8')['sdd_m'] == '[1,2]'
    assert SDDKD.resolved_options({'sdd_m': None}, 'ResNet50', 'vgg8')['sdd_m'] == '[1,2,4]'
    with pytest.raises(UserError, match='stores the teacher\'s logits'):
        parse('--distill', 'sdd_kd', '--teacher_cache', '2', '--epochs', '2')


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
        assert parse(*flags, teacher=teacher, student=student).options['sdd_nkd_gamma'] == value
    given = parse('--distill', 'sdd_nkd', '--sdd_nkd_gamma', '3', teacher=teacher,
                  student=student)
    assert given.options['sdd_nkd_gamma'] == 3.0


def cam_value_and_grad(loss_fn):
    s = (det(2, 10, 8, 8, phase=0.5) * 3).requires_grad_()
    t = det(2, 10, 8, 8, phase=2.0) * 4
    loss = loss_fn(s, t)
    loss.backward()
    return [loss.item()] + grad_stats(s.grad)


@pytest.mark.parametrize('resolution', [2, 4])
@pytest.mark.parametrize('normalize', [0, 1])
def test_cat_loss_equals_the_authors(resolution, normalize):
    assert_loss_and_stats_close(cam_value_and_grad(
        lambda s, t: CAT_loss(s, t, resolution, bool(normalize))),
        REFERENCE[f'cat_r{resolution}_norm{normalize}'])


def test_cat_loss_with_binarised_teacher_maps_equals_the_authors_forward():
    assert_loss_and_stats_close(cam_value_and_grad(lambda s, t: CAT_loss(s, t, 2, True, True)),
                                REFERENCE['cat_binarized_r2_norm1'])


def test_catkd_maps_are_the_classifier_at_every_position_and_the_student_has_no_bias():
    distiller, teacher, student = build('catkd', teacher='resnet8x4', student='resnet8x4')
    fc = student.get_classifier()
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias)) and not fc.bias.requires_grad
    assert all(p is not fc.bias for p in distiller.trainable_parameters())
    x, y, index, contrast = fixed_batch()
    _, losses = distiller.train().forward_train(Batch(x, y, index, contrast))
    with torch.no_grad():
        head_s = student(x, is_feat=True, with_head_map=True)[2]
        head_t = teacher.eval()(x, is_feat=True, with_head_map=True)[2]
        cam_s = torch.einsum('kc,bchw->bkhw', fc.weight, head_s)
        cam_t = torch.einsum('kc,bchw->bkhw', teacher.fc.weight, head_t)
        assert torch.allclose(cam_s.mean((2, 3)), student(x), atol=1e-5)  # logits: the mean map
    expected = 400 * CAT_loss(cam_s, cam_t, 2, True)  # the defaults: beta 400, r 2, normalised
    assert torch.allclose(losses['kd'], expected, rtol=1e-4)
    losses['kd'].backward()
    assert fc.weight.grad.abs().sum() > 0 and fc.bias.grad is None
    kept, _, s_kept = build('catkd', teacher='resnet8x4', student='resnet8x4', catkd_bias=True)
    assert s_kept.get_classifier().bias.requires_grad


def test_catkd_takes_the_authors_settings_per_pair():
    config = parse('--distill', 'catkd', teacher='resnet32x4', student='ShuffleV1')
    assert config.method.weights == (1.0, 0.0, 600.0)
    assert (config.method.options.catkd_resolution, config.method.options.catkd_normalize) == (
        4, 1)
    assert config.training.learning_rate == 0.01
    config = parse('--distill', 'catkd', '-b', '20', teacher='resnet32x4', student='resnet8x4')
    assert config.method.weights[2] == 20.0 and config.method.options.catkd_normalize == 0
    assert parse('--distill', 'catkd', teacher='resnet8', student='resnet8').method.weights[2] \
        == 400.0  # not run by the authors: their cfg.py's default


@pytest.mark.parametrize('channels', [(64, 128), (32, 32)])
def test_mgd_equals_the_authors_with_the_same_mask_draw(channels):
    c_s, c_t = channels
    loss_fn = fill_by_name(MGDLoss(c_s, c_t, alpha_mgd=0.0012, lambda_mgd=0.15))
    s = det(2, c_s, 4, 4, phase=0.5).requires_grad_()
    torch.manual_seed(7)  # the mask is the first draw of the forward, as the authors'
    loss = loss_fn(s, det(2, c_t, 4, 4, phase=2.0))
    loss.backward()
    expected = REFERENCE[f'mgd_{c_s}_{c_t}']
    assert_loss_and_stats_close([loss.item()] + grad_stats(s.grad), expected[:4])
    assert_stats_close(grad_stats(loss_fn.generation[0].weight.grad), expected[4:])
    assert (loss_fn.align is None) == (c_s == c_t)


def test_mgd_modules_have_the_authors_sizes_and_masks_whole_channels():
    assert sum(p.numel() for p in MGDLoss(256, 256).parameters()) == 1_180_160
    assert sum(p.numel() for p in MGDLoss(64, 128).parameters()) == 303_488
    distiller, _, _ = build('mgd', teacher='resnet8x4', student='resnet8')
    assert sum(p.numel() for p in distiller.criterion_kd.parameters()) == 2 * (
        9 * 256 * 256 + 256) + 64 * 256 + 256
    loss_fn = MGDLoss(4, 4, alpha_mgd=1.0, lambda_mgd=0.5)
    seen = []
    loss_fn.generation.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    loss_fn(torch.ones(3, 4, 2, 2), torch.zeros(3, 4, 2, 2))
    per_channel = seen[0].amax((2, 3))
    assert torch.equal(per_channel, seen[0].amin((2, 3)))  # a channel is kept or zeroed whole
    assert 0 < per_channel.sum() < per_channel.numel()


def test_mgd_refuses_a_pair_whose_last_maps_differ_in_size_in_one_line():
    config = parse('--distill', 'mgd', teacher='resnet32x4', student='ShuffleV1')
    with pytest.raises(UserError, match='cannot distil resnet32x4 into ShuffleV1: MGD '
                                        'generates .* must be as large: \\(4, 4\\) here'):
        resolver.check_pair(config, 'resnet32x4')


def test_mgd_resumed_inside_an_epoch_is_bit_identical(tiny, monkeypatch, capsys):
    straight_and_resumed(tiny, monkeypatch, capsys, 'mgd', [], 9, 'mgd')  # epoch 2, step 2


FCFD_CASES = [k for k in REFERENCE if k.startswith('fcfd_')]
FCFD_PAIRS = {'resnet56': ('resnet56', 'resnet20'), 'wrn': ('wrn_40_2', 'ShuffleV1'),
              'vgg13': ('vgg13', 'MobileNetV2')}  # by the teacher's name in the case's key


@pytest.mark.parametrize('key', FCFD_CASES)
def test_fcfd_objective_equals_the_authors_for_fixed_mixed_paths(key, monkeypatch):
    case = REFERENCE[key]
    teacher_name, student_name = FCFD_PAIRS[key.split('_')[1]]
    teacher = fill_by_name(get_model(teacher_name, 10))
    student = fill_by_name(get_model(student_name, 10))
    distiller = make('fcfd', student, teacher, student_name, teacher_name, kd_T=case['T'],
                     fcfd_weight_l2=case['w_l2'], fcfd_mix_weight=case['mix_w'])
    fill_by_name(distiller.bridges)
    assert sum(p.numel() for p in distiller.bridges.parameters()) == case['bridge_params']
    n = student.num_stages
    paths = [(0,) * n, (1,) * n] + [tuple(p) for p in case['extra']]
    monkeypatch.setattr(distiller, 'draw_paths', lambda: paths)
    distiller.set_epoch(int(key.split('_e')[-1]) + 1)  # the authors count epochs from 0
    x, labels = det(4, 3, 32, 32, phase=0.3), torch.tensor([1, 3, 5, 7])
    _, losses = distiller.train().forward_train(Batch(x, labels, torch.arange(4), None))
    assert_close([(losses['cls'] + losses['div']).item(), losses['kd_l2'].item(),
                  losses['kd_mix'].item()], [case['student'], case['l2'], case['mixed']],
                 rel=1e-4)
    sum(losses.values()).backward()
    classifier = [k for k in student.state_dict() if k.endswith('weight')][-1]
    assert_stats_close(grad_stats(dict(student.named_parameters())[classifier].grad),
                       case['grad_student_classifier'])
    assert all(p.grad is None for p in teacher.parameters())  # frozen; gradients pass through


def test_fcfd_bridges_and_refusals():
    distiller, teacher, _ = build('fcfd', teacher='wrn_16_2', student='resnet8')
    assert sum(p.numel() for p in distiller.bridges.parameters()) == 194_208  # as the authors'
    bridge = distiller.bridges[1][0][1]  # resnet8 -> wrn_16_2 (before BN): no LeakyReLU
    assert [type(m).__name__ for m in bridge] == ['Conv2d', 'BatchNorm2d']
    assert isinstance(distiller.bridges[1][1][0][-1], torch.nn.LeakyReLU)  # into resnet8
    with pytest.raises(ValueError, match='as many stages: resnet32x4 has 4, MobileNetV2 5'):
        build('fcfd', teacher='resnet32x4', student='MobileNetV2')
    unsplit = get_model('MobileNetV1', 10, 'imagenet')  # the ImageNet models have no stages
    with pytest.raises(ValueError, match='MobileNetV1 is not split into stages'):
        make('fcfd', get_model('resnet8', 10), unsplit, 'resnet8', 'MobileNetV1')
    config = parse('--distill', 'fcfd', teacher='resnet32x4', student='ShuffleV1')
    assert (config.method.kd_T, config.training.nesterov) == (8.0, True)  # the authors' recipe
    assert config.method.options.fcfd_weight_l2 == 5.0
    assert parse('--distill', 'fcfd', teacher='wrn_40_2', student='wrn_16_2').method.options \
        .fcfd_mix_weight == 0.2
    with pytest.raises(UserError, match='stores the teacher\'s logits'):
        parse('--distill', 'fcfd', '--teacher_cache', '2', '--epochs', '2')


def test_fcfd_draws_its_mixed_paths_from_the_torch_generator():
    distiller, _, _ = build('fcfd', teacher='resnet8x4', student='resnet8x4')
    torch.manual_seed(3)
    first = distiller.draw_paths()
    torch.manual_seed(3)
    assert distiller.draw_paths() == first and len(first) == 4
    assert first[:2] == [(0, 0, 0, 0), (1, 1, 1, 1)] and len(set(first[2:])) == 2


@pytest.mark.parametrize('name', ['sdd_kd', 'catkd', 'simkd'])
def test_a_network_without_the_head_map_is_refused_by_the_methods_that_read_it(name,
                                                                               monkeypatch):
    student = get_model('resnet8', 10)
    forward = student.forward

    def without_head_map(x, **kw):  # a network outside the head contract
        out = forward(x, **kw)
        return out[:2] + (None,) if kw.get('with_head_map') else out
    monkeypatch.setattr(student, 'forward', without_head_map)
    with pytest.raises(ValueError, match="student's classifier pools, which resnet8 does not"):
        make(name, student, get_model('resnet8', 10), 'resnet8', 'resnet8')
