"""Logit, review and cross-layer methods: DIST, DKD, ReviewKD, SemCKD, DML."""
import json
import os

import pytest
import torch

import train_student
from distiller_zoo import ABF, DIST, DISTV2, SelfA, SemCKDLoss, dkd_loss, hcl_loss
from core.checkpoint import load_checkpoint
from helper.loops import Trainer
from models import get_model
from reference import det
from dataset.batch import Batch
from reference import assert_stats_close
from builders import build, fill_by_name, fixed_batch, grad_ends, make, method_opt

# Values from running the authors' code on the inputs below: DIST from
# hunto/image_classification_sota at d9662f7 (lib/models/losses/dist_kd.py, the commit DIST_KD
# pins), dkd_loss, hcl_loss and ABF from megvii-research/mdistiller at a08d46f, SemCKDLoss and
# SelfA from the SimKD toolbox (DefangChen/SimKD at 2b389c3). Each: value and [sum, abs-sum,
# first, last] of the gradient on the student's input.
REFERENCE = {
    'dist_b1_g1_t1': (2.4007248878479004, [1.862645149230957e-08, 0.8323923945426941,
                                           -0.032178495079278946, 0.0012949688825756311]),
    'dist_b1_g1_t4': (31.346786499023438, [2.384185791015625e-07, 16.596561431884766,
                                           -0.5688934922218323, 0.13511329889297485]),
    'dist_b2_g0.5_t4': (39.14751434326172, [3.5762786865234375e-07, 20.141613006591797,
                                            -0.8894993662834167, 0.2086142897605896]),
    'dist_b0.5_g3_t1': (4.220448970794678, [-3.725290298461914e-08, 1.5805622339248657,
                                            -0.029059670865535736, 0.0016721566207706928]),
    'dkd_tckd': (0.95399409532547, [-1.5087425708770752e-07, 0.7330217957496643,
                                    -0.10379982739686966, -0.0019771060906350613]),
    'dkd_nckd': (3.3593950271606445, [2.9802322387695312e-08, 2.153817892074585, 0.0,
                                      0.015199298970401287]),
    'dkd_a1_b8': (27.82915496826172, [6.556510925292969e-07, 17.692983627319336,
                                      -0.10379982739686966, 0.1196172833442688]),
    'hcl_8': (0.24654819071292877, [0.01012874860316515, 0.6569188833236694,
                                    -0.00020953371131327003, 0.0005150962970219553]),
    'hcl_4': (0.3262418210506439, [-0.0074752806685864925, 0.8827564120292664,
                                   -0.002361202845349908, -0.0024414812214672565]),
    'hcl_2': (0.43668973445892334, [0.1003272756934166, 1.1771878004074097,
                                    -0.0193293709307909, 0.0280506182461977]),
    'hcl_1': (0.4032459259033203, [0.24882936477661133, 1.1334295272827148,
                                   -0.10551652312278748, -0.11200033873319626]),
    'abf_fused': (-8.116890907287598, [7.306953193619847e-07, 0.06342959403991699,
                                       -0.00015303953841794282, 0.00012914621038362384]),
    'semckd_loss_3x2': (0.6666275858879089, [-0.022847553715109825, 0.24934978783130646,
                                             0.007939057424664497, 0.0043355305679142475]),
    'selfa_semckd': (0.5035820603370667, [-1.3567041605710983e-05, 1.3146904706954956,
                                          0.0011289739049971104, 0.0004164174315519631]),
}


def check(name, value, grad):
    expected, stats = REFERENCE[name]
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5), name
    assert_stats_close(grad_ends(grad), stats)


def logits():
    return (det(6, 10, phase=0.5) * 3).requires_grad_(), det(6, 10, phase=2.0) * 4


@pytest.mark.parametrize('name, beta, gamma, tau', [('dist_b1_g1_t1', 1, 1, 1),
                                                    ('dist_b1_g1_t4', 1, 1, 4),
                                                    ('dist_b2_g0.5_t4', 2, 0.5, 4),
                                                    ('dist_b0.5_g3_t1', 0.5, 3, 1)])
def test_dist_matches_the_authors_loss(name, beta, gamma, tau):
    z_s, z_t = logits()
    value = DIST(beta, gamma, tau)(z_s, z_t)
    check(name, value, torch.autograd.grad(value, z_s)[0])


def test_dist_zero_for_identical_logits_and_blind_to_shifts():
    z_s, z_t = logits()
    assert DIST(1, 1, 4)(z_t, z_t).abs() < 1e-4  # up to the eps in the correlation
    # softmax ignores a constant added to the teacher's logits; DIST therefore does too, and
    # the raw-logit DISTV2 (Pearson correlations) ignores any positive affine map.
    shifted = z_t + det(6, 1, phase=0.3) * 5
    assert DIST(1, 1, 4)(z_s, shifted).item() == pytest.approx(DIST(1, 1, 4)(z_s, z_t).item(),
                                                               rel=1e-5)
    assert DISTV2()(z_s, 2.5 * z_t + 7).item() == pytest.approx(DISTV2()(z_s, z_t).item(),
                                                                rel=1e-5)


@pytest.mark.parametrize('name, alpha, beta', [('dkd_tckd', 1, 0), ('dkd_nckd', 0, 1),
                                               ('dkd_a1_b8', 1, 8)])
def test_dkd_matches_the_authors_loss(name, alpha, beta):
    z_s, z_t = logits()
    value = dkd_loss(z_s, z_t, torch.tensor([0, 3, 9, 2, 2, 7]), alpha, beta, 4.0)
    check(name, value, torch.autograd.grad(value, z_s)[0])


def test_dkd_is_computed_in_fp32_under_low_precision():
    """A confident teacher's non-target mass underflows in fp16; the loss stays finite."""
    z_t = torch.zeros(2, 10)
    z_t[:, 0] = 100.0
    z_s = torch.randn(2, 10)
    target = torch.tensor([0, 0])
    exact = dkd_loss(z_s, z_t, target, 1.0, 8.0, 4.0)
    half = dkd_loss(z_s.half(), z_t.half(), target, 1.0, 8.0, 4.0)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert half.item() == pytest.approx(exact.item(), rel=1e-2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.isfinite(dkd_loss(z_s, z_t, target, 1.0, 8.0, 4.0))


@pytest.mark.parametrize('side', [8, 4, 2, 1])
def test_hcl_matches_the_authors_loss(side):
    f_s = det(3, 5, side, side, phase=0.1 * side).requires_grad_()
    f_t = det(3, 5, side, side, phase=1.0 + 0.1 * side)
    value = hcl_loss([f_s], [f_t])
    check(f'hcl_{side}', value, torch.autograd.grad(value, f_s)[0])


def test_abf_matches_the_authors_module():
    abf = fill_by_name(ABF(6, 4, 5, True)).train()
    x = det(2, 6, 4, 4, phase=0.3).requires_grad_()
    out, residual = abf(x, det(2, 4, 2, 2, phase=0.6), 4, 8)
    assert out.shape == (2, 5, 8, 8) and residual.shape == (2, 4, 8, 8)
    value = out.pow(2).mean() + residual.sum() * 0.1
    check('abf_fused', value, torch.autograd.grad(value, x)[0])


def test_semckd_loss_on_a_three_by_two_grid():
    s_value = [[det(4, 3, 2, 2, phase=i + 0.1 * j).requires_grad_() for j in range(2)]
               for i in range(3)]
    f_target = [[det(4, 3, 2, 2, phase=5 + i + 0.2 * j) for j in range(2)] for i in range(3)]
    weight = torch.softmax(det(4, 3, 2, phase=0.7) * 2, dim=-1)
    value = SemCKDLoss()(s_value, f_target, weight)
    check('semckd_loss_3x2', value, torch.autograd.grad(value, s_value[1][0])[0])


def test_selfa_matches_the_authors_module():
    attention = fill_by_name(SelfA(8, [4, 6, 6], [5, 7], 1.0)).train()
    feat_s = [det(8, 4, 8, 8, phase=0.1).requires_grad_(), det(8, 6, 4, 4, phase=0.2),
              det(8, 6, 2, 2, phase=0.3)]
    feat_t = [det(8, 5, 4, 4, phase=1.1), det(8, 7, 2, 2, phase=1.2)]
    proj, target, weight = attention(feat_s, feat_t)
    assert weight.shape == (8, 3, 2)
    assert weight[0].flatten().tolist() == pytest.approx(
        [0.6850970387458801, 0.3149028718471527, 0.6889721751213074, 0.3110278248786926,
         0.6026846766471863, 0.39731529355049133], rel=1e-5)
    value = SemCKDLoss()(proj, target, weight)
    check('selfa_semckd', value, torch.autograd.grad(value, feat_s[0])[0])


@pytest.mark.parametrize('method, module, teacher, student, count, batch', [
    ('reviewkd', 'abfs', 'resnet32x4', 'resnet8x4', 1808774, 64),  # mdistiller's config
    ('semckd', 'attention', 'resnet32x4', 'resnet8x4', 10233632, 64)])  # without unused parts
def test_module_sizes_match_the_references(method, module, teacher, student, count, batch):
    distiller = make(method, get_model(student, 100), get_model(teacher, 100), student, teacher,
                     batch_size=batch)
    assert sum(p.numel() for p in getattr(distiller, module).parameters()) == count


def test_reviewkd_config_is_derived_from_the_shapes():
    distiller, _, _ = build('reviewkd', teacher='resnet32x4', student='resnet8x4')
    assert (distiller.shapes, distiller.out_shapes) == ([1, 8, 16, 32], [1, 8, 16, 32])
    distiller, _, _ = build('reviewkd', teacher='vgg13', student='ShuffleV1')  # 4 vs 3 stages
    assert distiller.depth == 3 and distiller.out_shapes == [1, 4, 4, 8]
    assert distiller.shapes == [1, 4, 8, 16]


@pytest.mark.parametrize('method, flag, pair, expected', [
    ('dkd', 'dkd_beta', ('resnet32x4', 'resnet8x4'), 8.0),
    ('dkd', 'dkd_beta', ('wrn_40_2', 'wrn_16_2'), 6.0),
    ('dkd', 'dkd_beta', ('resnet56', 'resnet20'), 2.0),
    ('dkd', 'dkd_beta', ('resnet32x4', 'ShuffleV2'), 8.0),
    ('reviewkd', 'weight', ('resnet32x4', 'resnet8x4'), 5.0),
    ('reviewkd', 'weight', ('resnet32x4', 'ShuffleV2'), 8.0),
    ('reviewkd', 'weight', ('resnet56', 'resnet20'), 0.6),
    ('reviewkd', 'weight', ('vgg13', 'vgg8'), 1.0)])
def test_per_pair_defaults(method, flag, pair, expected):
    distiller, _, _ = build(method, teacher=pair[0], student=pair[1])
    assert getattr(distiller, flag) == expected


@pytest.mark.parametrize('method', ['dkd', 'reviewkd'])
def test_warmup_counts_epochs_from_one(method):
    distiller, _, _ = build(method, teacher='resnet32x4', student='resnet8x4')
    distiller.train()
    x, y, *_ = fixed_batch(n=4)
    terms = {}
    for epoch in (1, 10, 20, 30):
        distiller.set_epoch(epoch)
        torch.manual_seed(0)
        terms[epoch] = distiller.forward_train(Batch(x, y))[1]['kd'].item()
        assert distiller.warmup_weight(20) == min(epoch / 20, 1.0)
    assert terms[1] == pytest.approx(terms[20] / 20, rel=1e-4)
    assert terms[10] == pytest.approx(terms[20] / 2, rel=1e-4)
    assert terms[30] == pytest.approx(terms[20], rel=1e-5)


def test_the_loop_gives_the_epoch_and_skips_short_batches_for_semckd(tmp_path):
    distiller, _, _ = build('semckd')
    seen, sizes = [], []
    distiller.set_epoch = seen.append
    original = distiller.forward_train

    def forward_train(batch):
        sizes.append(len(batch.image))
        return original(batch)
    distiller.forward_train = forward_train
    x, y, index, _ = fixed_batch(n=20)
    batches = [Batch(x[:8], y[:8], index[:8]), Batch(x[8:16], y[8:16], index[8:16]),
               Batch(x[16:], y[16:], index[16:])]  # the last one is short
    test = [Batch(x[:4], y[:4])]
    opt = method_opt('semckd', epochs=2, save_freq=100)
    trainer = Trainer(distiller, batches, test, opt, 'resnet8', str(tmp_path), NullLogger(),
                      torch.device('cpu'), {'seed': 0})
    trainer.run(lambda: torch.optim.SGD(distiller.trainable_parameters(), lr=0.01))
    assert seen == [1, 2] and sizes == [8, 8, 8, 8]


class NullLogger:
    def log_epoch(self, *args):
        pass


@pytest.mark.parametrize('teacher, student', [
    ('resnet32x4', 'resnet8x4'), ('wrn_40_2', 'wrn_16_2'), ('vgg13', 'vgg8'),
    ('resnet32x4', 'ShuffleV2'), ('vgg13', 'MobileNetV2'), ('wrn_40_2', 'ShuffleV1'),
    ('ResNet50', 'MobileNetV2'), ('resnet56', 'resnet20')])
def test_every_pair_trains(teacher, student):
    torch.manual_seed(0)
    x, y, *_ = fixed_batch(n=4)
    for method in ('dist', 'dkd', 'reviewkd', 'semckd', 'dml'):
        if method == 'semckd' and teacher == 'ResNet50':
            continue  # works, but its 2048-channel projections take 600M parameters here
        t, s = get_model(teacher, 10), get_model(student, 10)
        distiller = make(method, s, t, student, teacher, batch_size=4).train()
        logits, losses = distiller.forward_train(Batch(x, y))
        assert all(torch.isfinite(v) for v in losses.values()), (method, losses)
        sum(losses.values()).backward()


@pytest.mark.parametrize('teacher, student', [('ResNet34', 'ResNet18'), ('ResNet50', 'MobileNetV1')])
def test_imagenet_pairs_build_and_step(teacher, student):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 224, 224)
    t = get_model(teacher, 20, 'imagenet').eval()
    s = get_model(student, 20, 'imagenet')
    for method in ('dist', 'dkd', 'reviewkd') + ('semckd',) * (teacher != 'ResNet50'):
        distiller = make(method, s, t, student, teacher, image_size=224, batch_size=4).train()
        _, losses = distiller.forward_train(Batch(x, torch.tensor([0, 1, 2, 3])))
        assert all(torch.isfinite(v) for v in losses.values()), method


# -- from the command line --------------------------------------------------------------------
FAST = ['--epochs', '2', '--batch_size', '16', '--num_workers', '0', '--seed', '2']


def test_dml_trains_both_checkpoints_both_and_needs_no_teacher_file(tiny, capsys):
    data, _, root = tiny
    save = str(root / 'dml')
    argv = ['--distill', 'dml', '--model_t', 'resnet14', '--model_s', 'resnet8',
            '--data_folder', data, '--save_dir', save] + FAST
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'teacher resnet14: acc@1' not in out and 'peer acc@1' in out
    run = os.path.join(save, 'student_model', os.listdir(os.path.join(save, 'student_model'))[0])
    metrics = [json.loads(line) for line in open(os.path.join(run, 'metrics.jsonl'))]
    assert all('test_peer_top1' in m and 'train_loss_peer_cls' in m for m in metrics)
    last = load_checkpoint(os.path.join(run, 'resnet8_last.pth'))
    get_model('resnet8', 100).load_state_dict(last['model'])
    peer = get_model('resnet14', 100)
    peer.load_state_dict(last['peer'])
    fresh = get_model('resnet14', 100)
    assert any(not torch.equal(a, b) for a, b in zip(peer.state_dict().values(),
                                                      fresh.state_dict().values()))


def test_semckd_refuses_batches_too_small_for_its_attention():
    with pytest.raises(ValueError, match='--batch_size 4 or more'):
        make('semckd', get_model('resnet8', 10), get_model('resnet14', 10), 'resnet8',
             'resnet14', batch_size=2)


def test_dml_without_path_t_needs_model_t(tiny, capsys):
    assert train_student.main(['--distill', 'dml']) == 2
    assert '--model_t NAME' in capsys.readouterr().err
    assert train_student.main(['--distill', 'kd']) == 2
    assert '--path_t (the teacher checkpoint) is required' in capsys.readouterr().err


@pytest.mark.parametrize('method, expected', [
    ('dist', 'dist: beta 1 (inter-class), gamma 1 (intra-class), tau 4'),
    ('dkd', 'dkd: alpha 1 (TCKD), beta 8 (NCKD), T 4, warm-up 20 epochs'),
    ('reviewkd', 'reviewkd: HCL weight 1, warm-up 20 epochs, 3 stages'),
    ('semckd', 'semckd: attention temperature 1, sized for batches of 16')])
def test_methods_print_their_settings(tiny, capsys, method, expected):
    data, teacher, root = tiny
    argv = ['--path_t', teacher, '--distill', method, '--model_s', 'resnet8', '--data_folder',
            data, '--save_dir', str(root / method)] + FAST
    assert train_student.main(argv) == 0
    assert expected in capsys.readouterr().out
