"""Feature and map methods of the 2019-23 papers: CAT-KD, MGD, FCFD and OFD. Values and gradients
against their authors' code (tests/fixtures/reference/<method>.json names each repository and
commit), module sizes, exact resume, and the refusal of a network without the map they
read."""

import pytest
import torch
import torch.nn as nn

from builders import build, fill_by_name, fixed_batch, make, run_config
from core.util import UserError
from dataset.batch import Batch
from distiller_zoo import CAT_loss, ConnectorConvBN, MGDLoss, feat_loss, get_margin_from_BN
from helper import resolver
from models import get_model
from reference import (assert_close, assert_loss_and_stats_close, assert_matches,
                       assert_stats_close, det, grad_stats, reference, value_and_grad_stats)
from runs import straight_and_resumed

REFERENCE = reference('catkd', 'mgd', 'fcfd', 'ofd')
TARGET = torch.tensor([1, 3, 5, 7, 9, 0])


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
    config = run_config('--distill', 'catkd', teacher='resnet32x4', student='ShuffleV1')
    assert config.method.weights == (1.0, 0.0, 600.0)
    assert (config.method.options.catkd_resolution, config.method.options.catkd_normalize) == (
        4, 1)
    assert config.training.learning_rate == 0.01
    config = run_config('--distill', 'catkd', '-b', '20', teacher='resnet32x4', student='resnet8x4')
    assert config.method.weights[2] == 20.0 and config.method.options.catkd_normalize == 0
    assert run_config('--distill', 'catkd', teacher='resnet8',
                      student='resnet8').method.weights[2] \
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
    config = run_config('--distill', 'mgd', teacher='resnet32x4', student='ShuffleV1')
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
    config = run_config('--distill', 'fcfd', teacher='resnet32x4', student='ShuffleV1')
    assert (config.method.kd_T, config.training.nesterov) == (8.0, True)  # the authors' recipe
    assert config.method.options.fcfd_weight_l2 == 5.0
    assert run_config('--distill', 'fcfd', teacher='wrn_40_2', student='wrn_16_2').method.options \
        .fcfd_mix_weight == 0.2
    with pytest.raises(UserError, match='stores the teacher\'s logits'):
        run_config('--distill', 'fcfd', '--teacher_cache', '2', '--epochs', '2')


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


# -- OFD ---------------------------------------------------------------------------------------
def reference_bn():
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -0.5, 2.0, 0.3, 1.2, 0.05]))
        bn.bias.copy_(torch.tensor([0.0, 0.4, -1.0, 0.9, -3.0, 0.5]))
    return bn


def test_margins_and_partial_l2_match_the_authors():
    margin = get_margin_from_BN(reference_bn())
    assert_close(margin.tolist(), REFERENCE['ofd_margin'])
    assert (margin < 0).all()
    got = value_and_grad_stats(
        lambda s: feat_loss(s, det(3, 6, 4, 4, phase=1.5, scale=2), margin),
        det(3, 6, 4, 4, phase=0.5, scale=2))
    assert_matches(got[:3], REFERENCE['ofd_feat_loss'][:3])


def test_stage_sum_with_connectors_matches_the_authors():
    from distiller_zoo.OFD import stage_sum
    connectors = ConnectorConvBN([4, 4], [6, 6])
    with torch.no_grad():
        for name, p in connectors.named_parameters():
            p.copy_(det(*p.shape, phase=len(name) * 0.1))
    margin = get_margin_from_BN(reference_bn())
    fs = [det(3, 4, 8, 8, phase=0.2).requires_grad_(), det(3, 4, 4, 4, phase=0.7).requires_grad_()]
    ft = [det(3, 6, 8, 8, phase=1.2, scale=2), det(3, 6, 2, 2, phase=1.9, scale=2)]
    value = stage_sum(connectors(fs), ft, [margin, margin])
    grads = torch.autograd.grad(value, fs)
    assert_close([value.item()] + [g.sum().item() for g in grads], REFERENCE['ofd_loss'],
                 abs_=1e-4)


@pytest.mark.parametrize('teacher, student, size', [('resnet32x4', 'resnet8x4', 86_912),
                                                    ('wrn_40_2', 'wrn_16_2', 21_952)])
def test_connector_sizes(teacher, student, size):
    distiller = build('ofd', teacher=teacher, student=student)[0]
    assert sum(p.numel() for p in distiller.connectors.parameters()) == size


@pytest.mark.parametrize('mode', ['batch', 'eval'])
def test_ofd_teacher_bn_mode_and_statistics_kept(mode):
    distiller, teacher, _ = build('ofd', ofd_teacher_bn=mode)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller.train()
    x = torch.randn(8, 3, 32, 32)
    _, t_out = distiller.forward_nets(Batch(x, torch.zeros(8, dtype=torch.long)))
    eval_feats = teacher(x, is_feat=True, preact=True)[0]
    same = torch.allclose(t_out.feats[2], eval_feats[2])
    assert same == (mode == 'eval')
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training and not any(m.training for m in teacher.modules())
