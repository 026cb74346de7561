"""The classic methods: loss values, gradients, what each trains, and their command lines."""
import math
import os
from types import SimpleNamespace

import pytest
import torch

import train_student
from crd import ContrastLoss, ContrastMemory, CRDLoss
from distiller_zoo import (METHODS, ABLoss, Attention, Correlation, DistillKL, FactorTransfer,
                           FSP, HintLoss, KDSVD, NSTLoss, PKT, RKDLoss, Similarity, VIDLoss,
                           get_method)
from dataset.batch import Batch
from distiller_zoo.base import PREACT
from core.checkpoint import load_checkpoint
from helper.loops import Trainer
from models import get_model
from reference import det
from builders import build, fixed_batch, method_opt


# Values from running RepDistiller's own distiller_zoo (commit b84f547) on the inputs below.
REPDISTILLER_VALUES = {
    'KD': 0.3121137, 'Hint': 0.45973623, 'AT': 0.00086344412, 'SP': 0.37467104,
    'CC': 3.6254756, 'RKD': 5.5225735, 'PKT': 0.081993848, 'AB': 1.2445614,
    'FT': 0.020904785, 'FSP': 5.5594082e-05, 'NST': 0.79619932, 'KDSVD': 0.018145714,
}


def test_losses_match_repdistiller_values():
    B = 4
    g_s = [det(B, 8, 8, 8, phase=0.1), det(B, 16, 4, 4, phase=0.2)]
    g_t = [det(B, 8, 8, 8, phase=1.1), det(B, 16, 2, 2, phase=1.2)]
    e_s, e_t = det(B, 12, phase=0.3), det(B, 20, phase=1.3)
    pair_s = [g_s[0], det(B, 8, 4, 4, phase=0.7)]
    pair_t = [g_t[0], det(B, 8, 4, 4, phase=1.7)]
    ours = {
        'KD': DistillKL(4)(det(B, 10, phase=0.5), det(B, 10, phase=2.0)),
        'Hint': HintLoss()(g_s[0], g_t[0]),
        'AT': sum(Attention()(g_s, g_t)),
        'SP': sum(Similarity()([g_s[1]], [g_t[1]])),
        'CC': Correlation()(e_s, det(B, 12, phase=1.3)),
        'RKD': RKDLoss()(e_s, e_t),
        'PKT': PKT()(e_s, e_t),
        'AB': sum(ABLoss(2)(g_s, [g_t[0], det(B, 16, 4, 4, phase=1.2)])),
        'FT': FactorTransfer()(g_s[1], g_t[1]),
        'FSP': sum(FSP([(B, 8, 8, 8), (B, 8, 4, 4)], [(B, 8, 8, 8), (B, 8, 4, 4)])(pair_s, pair_t)),
        'NST': sum(NSTLoss()(g_s, g_t)),
        'KDSVD': sum(KDSVD()(pair_s, pair_t)),
    }
    for name, value in ours.items():
        assert value.item() == pytest.approx(REPDISTILLER_VALUES[name], rel=1e-5), name


def test_nst_product_form_equals_the_broadcast_form():
    f_s = det(3, 8, 4, 4, phase=0.4).requires_grad_()
    f_t = det(3, 8, 4, 4, phase=1.9)

    def broadcast_kernel(a, b):  # RepDistiller's form, through a (B, C, C, HW) tensor
        return (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)
    a = torch.nn.functional.normalize(f_s.flatten(2), dim=2)
    b = torch.nn.functional.normalize(f_t.flatten(2), dim=2)
    reference = (broadcast_kernel(b, b).mean() + broadcast_kernel(a, a).mean()
                 - 2 * broadcast_kernel(a, b).mean())
    grad_reference, = torch.autograd.grad(reference, f_s)
    value = sum(NSTLoss()([f_s], [f_t]))
    grad, = torch.autograd.grad(value, f_s)
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    assert torch.allclose(grad, grad_reference, atol=1e-7)


def test_pkt_and_kdsvd_let_non_finite_features_through():
    """Divergence must reach the non-finite guard rather than be zeroed away."""
    e_s, e_t = det(4, 12), det(4, 20, phase=1.0)
    e_s[1, 3] = float('nan')
    assert torch.isnan(PKT()(e_s, e_t))
    maps_s = [det(4, 8, 4, 4), det(4, 8, 4, 4, phase=0.5)]
    maps_t = [det(4, 8, 4, 4, phase=1.0), det(4, 8, 4, 4, phase=1.5)]
    assert torch.isfinite(sum(KDSVD()(maps_s, maps_t)))
    maps_s[1][0, 0, 0, 0] = float('inf')
    assert torch.isnan(sum(KDSVD()(maps_s, maps_t)))


def test_identical_features_give_zero():
    f = torch.randn(4, 8, 6, 6)
    e = torch.randn(4, 16)
    assert HintLoss()(f, f) == 0
    assert sum(Attention()([f], [f])) == 0
    assert FactorTransfer()(f, f) == 0
    assert sum(NSTLoss()([f], [f])).abs() < 1e-6
    assert sum(FSP([f.shape] * 2, [f.shape] * 2)([f, f], [f, f])) == 0
    assert sum(Similarity()([f], [f])) == 0
    assert RKDLoss()(e, e) < 1e-6


def test_relational_losses_ignore_student_scale():
    f, e = torch.randn(4, 8, 6, 6), torch.randn(6, 16)
    assert sum(Similarity()([3 * f], [f])) < 1e-10
    assert RKDLoss()(3 * e, e) < 1e-5
    assert PKT()(3 * e, e) < 1e-6


def test_vid_at_init_with_perfect_mean():
    vid = VIDLoss(4, 6, 4)
    for conv in vid.regressor[::2]:
        torch.nn.init.zeros_(conv.weight)
    target = torch.zeros(2, 4, 3, 3)  # regressor(anything) == 0 == target
    assert vid(torch.randn(2, 4, 3, 3), target).item() == pytest.approx(0.5 * math.log(5), abs=1e-5)


def test_ab_zero_student_costs_one_per_element():
    s, t = torch.zeros(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    terms = ABLoss(3)([s, s, s], [t, t, t])
    for w, term in zip([0.25, 0.5, 1.0], terms):
        assert term.item() == pytest.approx(w * s.numel() / 2 * 0.003)


def test_cc_two_samples():
    z_s, z_t = torch.randn(2, 5), torch.randn(2, 5)
    delta = (z_s - z_t).abs()
    assert Correlation()(z_s, z_t).item() == pytest.approx((delta[0] * delta[1]).sum().item(),
                                                           rel=1e-6)


def test_contrast_loss_constant_scores():
    v, n_data, m = 0.3, 1000, 9
    c = m / n_data
    expected = -(math.log(v / (v + c)) + m * math.log(c / (v + c)))
    assert ContrastLoss(n_data)(torch.full((3, m + 1, 1), v)).item() == pytest.approx(
        expected, rel=1e-4)


def test_crd_memory_momentum_update_and_fixed_normalisers():
    torch.manual_seed(0)
    memory = ContrastMemory(8, 20, K=5, T=0.07, momentum=0.5)
    v_s = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    v_t = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    idx = torch.tensor([2, 7, 11])
    old_v1, old_v2 = memory.memory_v1[idx].clone(), memory.memory_v2[idx].clone()
    contrast_idx = torch.randint(0, 20, (3, 6))
    contrast_idx[:, 0] = idx
    out_s, out_t = memory(v_s, v_t, idx, contrast_idx)
    assert out_s.shape == (3, 6, 1) and out_t.shape == (3, 6, 1)
    expected_v1 = torch.nn.functional.normalize(0.5 * old_v1 + 0.5 * v_s, dim=1)
    assert torch.allclose(memory.memory_v1[idx], expected_v1, atol=1e-6)
    expected_v2 = torch.nn.functional.normalize(0.5 * old_v2 + 0.5 * v_t, dim=1)
    assert torch.allclose(memory.memory_v2[idx], expected_v2, atol=1e-6)
    z = memory.params[2:4].clone()
    assert (z > 0).all()
    memory(v_s, v_t, idx, contrast_idx)
    assert torch.equal(memory.params[2:4], z)
    # without contrast indices, negatives are drawn on the fly (any device)
    out_s, _ = memory(v_s, v_t, idx)
    assert out_s.shape == (3, 6, 1)


# The REFERENCE.md table of default weights: --distill -> (-r, -a, -b)
DEFAULT_WEIGHTS = {
    'kd': (0.1, 0.9, 0), 'hint': (1, 0, 100), 'attention': (1, 0, 1000),
    'similarity': (1, 0, 3000), 'correlation': (1, 0, 0.02), 'vid': (1, 0, 1), 'rkd': (1, 0, 1),
    'pkt': (1, 0, 30000), 'abound': (1, 0, 1), 'factor': (1, 0, 200), 'fsp': (1, 0, 50),
    'nst': (1, 0, 50), 'crd': (1, 0, 0.8),
    # METHODS_MODERN.md: the authors' scripts (SimKD toolbox; the SRD seed with -r 1 -a 0)
    'simkd': (0, 0, 1), 'srrl': (1, 1, 1), 'srd': (1, 0, 1), 'srd_dist': (1, 0, 1),
    'dist': (1, 0, 2), 'dkd': (1, 0, 1), 'reviewkd': (1, 0, 1), 'semckd': (1, 1, 400),
    'dml': (1, 1, 1), 'icd': (1, 0, 1), 'rrd': (1, 0, 1), 'mlkd': (1, 50, 1, 20),
    # METHODS_WAVE3.md: CTKD's script, MLLD's configs (CE 0.1, KD 0.9), mdistiller's OFD
    'ctkd': (0.1, 0.9, 0), 'mlld': (0.1, 0.9, 0), 'ofd': (1, 0, 0.001),
    # METHODS_WAVE4.md: TTM's README command (-b 45; WTTM: its -a 4 beside CRD), NKD's and
    # RLD's distillers (CE 1, their term 1)
    'ttm': (1, 0, 45), 'wttm': (1, 0, 4), 'nkd': (1, 0, 1), 'rld': (1, 0, 1),
    # SDD: mdistiller's KD weights for SD-KD, DKD's for SD-DKD and SD-NKD
    'sdd_kd': (0.1, 0, 0.9), 'sdd_dkd': (1, 0, 1), 'sdd_nkd': (1, 0, 1),
    # CAT-KD: CE 1 and its cfg.py's beta (per pair from per_pair/catkd.toml)
    'catkd': (1, 0, 400),
    # MGD: CE 1 and its term (alpha inside it, as the authors)
    'mgd': (1, 0, 1),
    # FCFD: CE 1, the student's KL 1, the feature and mixed-path terms 1
    'fcfd': (1, 1, 1),
    # OFA-KD: the authors' gt, kd and ofa weights 1 (-b weighs the branches and the logits)
    'ofa': (1, 0, 1),
    # METHODS_WAVE5.md: GDKD's, LumiNet's (its cfg.py's CE 2), IKL's and GKL's distillers; the
    # ABKD scripts' (abkd: the README's -b 32; abkd_ttm: -b is its script's argument)
    'gdkd': (1, 0, 1), 'gdkd3': (1, 0, 1), 'luminet': (2, 0, 1), 'ikl': (1, 0, 1),
    'gkl': (1, 0, 1), 'abkd': (1, 0, 32), 'abkd_lsd': (0.1, 0, 9), 'abkd_dkd': (1, 0, 1),
    'abkd_ttm': (1, 0, None),
    # TeKAP-L: the authors' KD command (-r 0.1 -a 0.9 -b 0), its -a term TeKAP's
    'tekap': (0.1, 0.9, 0),
    # TeKAP-F: the README's --distill crd -a 0 -b 0.8
    'tekap_crd': (1, 0, 0.8),
    # SKD: torchdistill's sample config (no CE), the authors' SKD class defaults
    'skd': (0, 0, 1), 'skd_authors': (0.1, 0, 0.9),
    # CRLD: its cfg.py's CE 1; -b weighs its within- and cross-view terms
    'crld': (1, 0, 1),
    # WKD: its distiller's CE 1 and loss 1 (the weights inside its term, per pair)
    'wkd_l': (1, 0, 1), 'wkd_f': (1, 0, 1), 'wkd_lf': (1, 0, 1),
}
ALIASES = {'fitnet': 'hint', 'at': 'attention', 'sp': 'similarity', 'cc': 'correlation',
           'ab': 'abound', 'ft': 'factor', 'dcd': 'icd', 'rcd': 'rrd'}
CANONICAL = sorted(DEFAULT_WEIGHTS) + ['kdsvd']


def test_registry_names_aliases_and_default_weights():
    for name, weights in DEFAULT_WEIGHTS.items():
        assert get_method(name).needs.weights == weights, name
    for alias, name in ALIASES.items():
        assert METHODS[alias] is METHODS[name]
    assert set(METHODS) == set(CANONICAL) | set(ALIASES)


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


# FCFD draws 2 of its 4 mixed paths a step: with all 4 every bridge is used in every step.
EVERY_MODULE_IN_USE = {'fcfd': {'fcfd_paths': 4}}


@pytest.mark.parametrize('name', CANONICAL)
def test_training_steps_update_student_and_method_modules_only(name):
    distiller, teacher, student = build(name, **EVERY_MODULE_IN_USE.get(name, {}))
    teacher_before = snapshot(teacher)
    frozen_before = [snapshot(m) for m in distiller.frozen]
    own = {n: p for n, p in distiller.named_parameters()
           if not n.startswith(('student.', 'teacher.'))}
    own_before = {n: p.detach().clone() for n, p in own.items()}
    student_before = snapshot(student)
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.01, momentum=0.9)
    x, y, index, contrast_idx = fixed_batch()
    if distiller.views is not None:  # MLKD's four rotations of each image, MLLD's two views
        x = torch.stack([x.rot90(k, dims=(2, 3)) for k in range(distiller.views.count)], 1)
    totals = []
    distiller.train()
    for _ in range(6):
        _, losses = distiller.forward_train(Batch(x, y, index, contrast_idx))
        assert all(torch.isfinite(v).all() for v in losses.values())
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < totals[0], totals
    if not distiller.needs.teacher_trains:
        assert not changed(teacher_before, teacher)  # weights and BN statistics
        assert all(p.grad is None for p in teacher.parameters())
    else:  # DML's peer learns too
        assert changed(teacher_before, teacher)
    for module, before in zip(distiller.frozen, frozen_before):
        assert not changed(before, module)
    assert changed(student_before, student)
    trainable_own = {n for n, p in own.items() if not any(p is q for m in distiller.frozen
                                                          for q in m.parameters())}
    # Every connector / embedding the method adds receives gradients and (nearly all) move;
    # a few can stay put on this tiny batch (SemCKD's attention MLPs have dead ReLU units).
    assert all(own[n].grad is not None for n in trainable_own)
    moved = [n for n in trainable_own if not torch.equal(own[n].detach(), own_before[n])]
    assert len(moved) >= 0.9 * len(trainable_own), sorted(set(trainable_own) - set(moved))


@pytest.mark.parametrize('name, teacher, trains', [
    ('abound', 'resnet8x4', {'connector', 'student_features'}),  # widths differ: real connectors
    ('factor', 'resnet14', {'paraphraser'}),
    ('fsp', 'resnet14', {'student_features'})])
def test_init_stage_trains_exactly_its_modules(name, teacher, trains, tmp_path):
    distiller, teacher, student = build(name, teacher=teacher)
    batches = [Batch(*fixed_batch()[:2]) for _ in range(3)]
    feature_keys = {f'{i}.{k}' for i, m in enumerate(student.get_feat_modules())
                    for k in m.state_dict()}
    before = snapshot(distiller)
    trainer = Trainer(distiller, batches, None, method_opt(name), 'resnet8', str(tmp_path), None,
                      torch.device('cpu'), {'seed': 0})
    trainer._init_stage(resume=None)
    after = distiller.state_dict()
    moved = {k for k, v in after.items() if not torch.equal(v, before[k])}
    groups = {
        'connector': {k for k in moved if k.startswith('connector.')},
        'paraphraser': {k for k in moved if k.startswith('paraphraser.')},
        'translator': {k for k in moved if k.startswith('translator.')},
        'teacher': {k for k in moved if k.startswith('teacher.')},
        'student_features': {k for k in moved if k.startswith('student.')},
    }
    assert {g for g, keys in groups.items() if keys} == trains
    student_moved = {k[len('student.'):] for k in groups['student_features']}
    assert all(not k.startswith(('fc.', 'linear.', 'classifier.')) for k in student_moved)
    for module in distiller.frozen:  # init-only modules are fixed for distillation
        assert all(not p.requires_grad for p in module.parameters())
    frozen_ids = {id(p) for m in distiller.frozen for p in m.parameters()}
    assert not frozen_ids & {id(p) for p in distiller.trainable_parameters()}
    assert feature_keys  # the student exposes its feature modules


def test_ab_reads_preactivations_and_others_do_not():
    assert PREACT in get_method('abound').needs.student_reads
    assert PREACT not in get_method('kd').needs.student_reads


def test_fitnet_regressor_follows_hint_layer():
    distiller, _, _ = build('hint', teacher='resnet32x4', student='resnet8x4')
    assert isinstance(distiller.regress_s.conv, torch.nn.Conv2d)
    assert distiller.regress_s.conv.kernel_size == (1, 1)
    distiller, _, _ = build('hint', teacher='resnet32x4', student='ShuffleV2')
    assert isinstance(distiller.regress_s.conv, torch.nn.ConvTranspose2d)


@pytest.mark.parametrize('name, teacher, student', [('fsp', 'wrn_40_2', 'wrn_40_1'),
                                                     ('kdsvd', 'resnet32x4', 'resnet8')])
def test_impossible_pairs_raise(name, teacher, student):
    with pytest.raises(ValueError, match='channel counts'):
        build(name, teacher=teacher, student=student)


def test_crd_loss_repdistiller_signature():
    opt = SimpleNamespace(s_dim=8, t_dim=12, feat_dim=4, nce_k=5, nce_t=0.07, nce_m=0.5,
                          n_data=30)
    loss = CRDLoss(opt)(torch.randn(3, 8), torch.randn(3, 12), torch.tensor([0, 1, 2]))
    assert loss.shape == (1,) and torch.isfinite(loss).all()


FAST = ['--epochs', '1', '--batch_size', '32', '--num_workers', '0', '--init_epochs', '1',
        '--nce_k', '40', '--feat_dim', '16']
# What the folder name adds for the FAST options a method reads (those that differ from their
# defaults), and for MLKD its fourth weight.
NAME_SUFFIXES = {'correlation': '_feat_dim:16', 'crd': '_feat_dim:16_nce_k:40',
                 'tekap_crd': '_feat_dim:16_nce_k:40',
                 'icd': '_feat_dim:16', 'rrd': '_feat_dim:16_nce_k:40', 'mlkd': '_feat_dim:16',
                 'abound': '_init_epochs:1', 'factor': '_init_epochs:1', 'fsp': '_init_epochs:1',
                 'catkd': '_catkd_resolution:2_catkd_normalize:1',  # the per-pair values
                 'fcfd': '_fcfd_weight_l2:5.0_fcfd_mix_weight:1.0'}


@pytest.mark.parametrize('name', CANONICAL + sorted(ALIASES))
def test_every_method_runs_from_the_command_line(name, tiny, capsys, monkeypatch):
    data, teacher, root = tiny
    save = str(root / 'save')
    monkeypatch.setattr('dataset.cifar.download', lambda *a: None)
    canonical = ALIASES.get(name, name)
    r, a, b = get_method(canonical).needs.weights[:3]
    given_b = ['-b', '76'] if b is None else []  # a weight without a default
    r, a, b = float(r), float(a), float(76 if b is None else b)
    argv = ['--path_t', teacher, '--model_s', 'resnet8', '--distill', name, '--data_folder',
            data, '--save_dir', save, '--trial', f'cli_{name}'] + FAST + given_b
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert f'weights -r {r} -a {a} -b {b}' in out
    assert ('init   1/1' in out) == (canonical in ('abound', 'factor', 'fsp'))
    d = '_d:20.0' if canonical == 'mlkd' else ''
    suffix = NAME_SUFFIXES.get(canonical, '')
    run = os.path.join(save, 'student_model', f'S:resnet8_T:resnet8_cifar100_{name}_r:{r}_a:{a}'
                                              f'_b:{b}{d}_cli_{name}{suffix}')
    ckpt = load_checkpoint(os.path.join(run, 'resnet8_last.pth'))
    get_model('resnet8', 100).load_state_dict(ckpt['model'])
    if canonical == 'crd':
        assert ckpt['method_state']['criterion_kd.contrast.memory_v1'].shape == (64, 16)


def test_impossible_pair_stops_before_training(tiny, capsys):
    data, teacher, root = tiny
    save = str(root / 'save')
    argv = ['--path_t', teacher, '--model_s', 'resnet8x4', '--distill', 'fsp', '--data_folder',
            data, '--save_dir', save] + FAST
    assert train_student.main(argv) == 2
    err = capsys.readouterr().err
    assert 'cannot distil resnet8 into resnet8x4' in err and 'channel counts' in err


def test_crd_scores_through_gather_or_full_product_agree():
    torch.manual_seed(0)
    memory = torch.randn(50, 8)
    v = torch.randn(3, 8, requires_grad=True)
    few = torch.randint(0, 50, (3, 5))      # 15 < 50 rows: gathered
    many = torch.randint(0, 50, (3, 40))    # 120 > 50 rows: one product with the whole memory
    for idx in (few, many):
        expected = (memory[idx] * v.detach()[:, None, :]).sum(-1, keepdim=True)
        got = ContrastMemory._scores(memory, v, idx)
        assert torch.allclose(got, expected, atol=1e-5)
        grad, = torch.autograd.grad(got.sum(), v)
        assert torch.allclose(grad, memory[idx].sum(1), atol=1e-5)


def test_a_methods_options_are_a_frozen_dataclass_of_its_options():
    import dataclasses
    from distiller_zoo.base import MethodConfig
    from helper.resolver import resolve
    config = resolve(['--path_t', 'save/models/resnet8_vanilla/a.pth', '--distill', 'crd',
                      '--nce_k', '40'])[0].method
    options = config.options
    assert type(options).__name__ == 'CRDOptions' and dataclasses.is_dataclass(options)
    assert [f.name for f in dataclasses.fields(options)] == [
        o.dest for o in get_method('crd').options]
    assert options.nce_k == 40 and options.feat_dim == 128
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.nce_k = 3
    assert MethodConfig.from_dict(config.as_dict()) == config  # as checkpoints store it
    older = dict(config.as_dict(), options={'nce_k': 40, 'dropped_option': 1})
    assert MethodConfig.from_dict(older).options == dataclasses.replace(options)
