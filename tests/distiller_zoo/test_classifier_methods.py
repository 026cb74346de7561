"""Methods that reuse the teacher's classifier: SimKD, SRRL, SRD, SRDwithDIST."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import eval_student
import train_student
from distiller_zoo import DISTV2, SRRL, SimKD, statm_loss, transfer_conv
from core.checkpoint import Checkpoint, load_checkpoint
from models import get_model
from dataset.batch import Batch
from reference import assert_stats_close, det
from builders import build, fixed_batch, grad_ends, make
from conftest import REPO



def fill(module, phase=0.0):
    """Deterministic parameters, in the order of their sorted names (the reference modules have
    the same names)."""
    with torch.no_grad():
        for i, (_, p) in enumerate(sorted(module.named_parameters())):
            p.copy_(det(*p.shape, phase=phase + 0.1 * i) * 0.5)
    return module


# Values from running the authors' modules on the inputs below: SimKD and SRRL from the SimKD
# toolbox (DefangChen/SimKD at 2b389c3, models/util.py), transfer_conv and statm_loss from
# SRD_ossl (jingyang2017/SRD_ossl at d295cd8, distiller_zoo/AIN.py, identical in the seed
# chitraz/KnowledgeDistillationForModelCompression at f2dc9f0), DISTV2 and the SRD loss
# composition (AvgPool2d + Flatten + teacher fc, MSE) from that seed's scripts/.
# Each entry: loss and [sum, abs-sum, first, last] of its gradient on the student input.
REFERENCE = {
    'simkd_pool_student': (0.5585383772850037, [0.0, 0.2138468474149704, -0.00031127798138186336,
                                                -2.1804315110784955e-05]),
    'simkd_pool_teacher': (0.3669017255306244, [-3.259629011154175e-09, 0.411487340927124,
                                                -0.0011010022135451436, -0.0003667411510832608]),
    'srrl': (4.9550065994262695, [0.0, 0.1687455028295517, -0.014340262860059738,
                                  0.00821106880903244]),
    'srd_feat_mse': (0.6452003121376038, [0.0, 0.17178557813167572, 0.0005911507178097963,
                                          -8.763111691223457e-05]),
    'srd_feat_stat': (0.08246511220932007, [-1.4551915228366852e-11, 0.03172237053513527,
                                            6.499524170067161e-05, 2.4271188522106968e-05]),
    'srd_logit_mse': (4.604433059692383, [-9.313225746154785e-09, 0.25713977217674255,
                                          2.025476351263933e-05, 0.0006058303988538682]),
    'srd_logit_dist': (1.935445785522461, [-1.4901161193847656e-08, 15.792120933532715,
                                           0.010632199235260487, -0.06382758170366287]),
}
SIMKD_PRED = {'simkd_pool_student': [-0.16895487904548645, 0.5638377070426941,
                                     -0.40644705295562744, -1.0219013690948486,
                                     -0.033604562282562256],
              'simkd_pool_teacher': [-0.18869134783744812, 0.5530292391777039,
                                     -0.38089489936828613, -1.0248416662216187,
                                     -0.057574570178985596]}


def assert_matches(name, loss, grad):
    value, stats = REFERENCE[name]
    assert loss.item() == pytest.approx(value, rel=1e-5), name
    assert_stats_close(grad_ends(grad), stats)


def teacher_classifier():
    return fill(nn.Linear(12, 5), 3.0)


@pytest.mark.parametrize('name, h_s, h_t', [('simkd_pool_student', 4, 2),
                                             ('simkd_pool_teacher', 2, 4)])
def test_simkd_matches_the_authors_module(name, h_s, h_t):
    projector = fill(SimKD(s_n=8, t_n=12, factor=2), 1.0).train()
    f_s = det(4, 8, h_s, h_s, phase=0.2).requires_grad_()
    f_t = det(4, 12, h_t, h_t, phase=1.2)
    trans_s, trans_t, pred = projector(f_s, f_t, teacher_classifier())
    assert trans_t.shape[2] == min(h_s, h_t)
    loss = F.mse_loss(trans_s, trans_t)
    assert_matches(name, loss, torch.autograd.grad(loss, f_s)[0])
    assert pred[0].tolist() == pytest.approx(SIMKD_PRED[name], rel=1e-5)


def test_srrl_matches_the_authors_module():
    connector = fill(SRRL(s_n=6, t_n=12), 2.0).train()
    e_s = det(4, 6, phase=0.3).requires_grad_()
    trans, pred = connector(e_s, teacher_classifier())
    loss = F.mse_loss(trans, det(4, 12, phase=1.3)) + F.mse_loss(pred, det(4, 5, phase=2.3) * 3)
    assert_matches('srrl', loss, torch.autograd.grad(loss, e_s)[0])


def test_srd_terms_match_the_authors_modules():
    adaptor = fill(transfer_conv(8, 12), 4.0).train()
    f_s = det(4, 8, 4, 4, phase=0.4).requires_grad_()
    f_t, z_t = det(4, 12, 4, 4, phase=1.4), det(4, 5, phase=2.4) * 3
    adapted = adaptor(f_s)
    cross = teacher_classifier()(adapted.mean((2, 3)))
    terms = {'srd_feat_mse': F.mse_loss(adapted, f_t), 'srd_feat_stat': statm_loss()(adapted, f_t),
             'srd_logit_mse': F.mse_loss(cross, z_t), 'srd_logit_dist': DISTV2()(cross, z_t)}
    for name, loss in terms.items():
        assert_matches(name, loss, torch.autograd.grad(loss, f_s, retain_graph=True)[0])
    assert DISTV2(2, 3)(det(6, 7, phase=0.1) * 4, det(6, 7, phase=0.9)).item() == pytest.approx(
        1.7365473508834839, rel=1e-5)


def test_srd_method_loss_is_the_seeds_composition():
    """The registered method's terms: 1 x feature MSE + 2 x logit MSE through the teacher's
    classifier, on the maps the classifiers pool (WRN: after the final BN and ReLU)."""
    distiller, teacher, student = build('srd', teacher='wrn_40_2', student='wrn_16_2')
    distiller.train()
    x, y, *_ = fixed_batch()
    batch = Batch(x, y)
    s, t = distiller.forward_nets(batch)
    terms = distiller.kd_loss(s, t, batch)
    adapted = distiller.adaptor(s.head_map)
    expected_logit = F.mse_loss(teacher.fc(F.avg_pool2d(adapted, 8).flatten(1)), t.logits)
    assert terms['feat'].item() == pytest.approx(F.mse_loss(adapted, t.head_map).item(), rel=1e-5)
    assert terms['logit'].item() == pytest.approx(2 * expected_logit.item(), rel=1e-5)
    assert not torch.allclose(t.head_map, t.feats[-2])  # WRN: the head map is not feats[-2]


@pytest.mark.parametrize('teacher, student, count', [
    ('resnet32x4', 'resnet8x4', {2: 214016, 4: 70400, 8: 26240}),
    ('vgg13', 'vgg8', {2: 854016, 4: 280064, 8: 103680})])
def test_simkd_projector_sizes(teacher, student, count):
    for factor, n in count.items():
        distiller = make('simkd', get_model(student, 100), get_model(teacher, 100), student,
                         teacher, factor=factor)
        assert sum(p.numel() for p in distiller.proj.parameters()) == n


@pytest.mark.parametrize('method, module, teacher, student, count', [
    ('srrl', 'connector', 'resnet32x4', 'resnet8x4', 66048),
    ('srrl', 'connector', 'vgg13', 'vgg8', 263168),
    ('srd', 'adaptor', 'resnet32x4', 'resnet8x4', 66048),
    ('srd', 'adaptor', 'wrn_40_2', 'wrn_40_1', 8448),
    ('srd_dist', 'adaptor', 'wrn_40_4', 'wrn_16_2', 33280),
    ('srd_dist', 'adaptor', 'wrn_40_4', 'wrn_16_4', 66048)])
def test_module_sizes_match_the_references(method, module, teacher, student, count):
    distiller = make(method, get_model(student, 100), get_model(teacher, 100), student, teacher)
    assert sum(p.numel() for p in getattr(distiller, module).parameters()) == count


def test_srd_default_weights_per_variant_and_pair():
    def weights(method, teacher, student, **flags):
        d = make(method, get_model(student, 10), get_model(teacher, 10), student, teacher,
                 **flags)
        return d.feat_weight, d.logit_weight
    assert weights('srd', 'wrn_40_2', 'wrn_40_1') == (1.0, 2.0)
    assert weights('srd', 'resnet32x4', 'ShuffleV1', srd_feat_loss='stat') == (10.0, 1.0)
    assert weights('srd', 'resnet32x4', 'resnet8x4', srd_feat_loss='stat') == (1.0, 1.0)
    assert weights('srd_dist', 'wrn_40_4', 'wrn_16_2') == (1.0, 4.0)
    assert weights('srd_dist', 'wrn_40_2', 'wrn_40_1') == (1.0, 10.0)
    assert weights('srd_dist', 'wrn_40_2', 'wrn_40_1', srd_logit_weight=3.0) == (1.0, 3.0)


CIFAR_PAIRS = [('resnet32x4', 'resnet8x4'), ('wrn_40_2', 'wrn_16_2'), ('vgg13', 'vgg8'),
               ('resnet32x4', 'ShuffleV2'), ('vgg13', 'MobileNetV2'), ('wrn_40_2', 'ShuffleV1'),
               ('ResNet50', 'MobileNetV2'), ('resnet56', 'resnet20')]
CLASSIFIER_METHODS = ['simkd', 'srrl', 'srd', 'srd_dist']


@pytest.mark.parametrize('teacher, student', CIFAR_PAIRS)
def test_every_pair_trains(teacher, student):
    torch.manual_seed(0)
    t, s = get_model(teacher, 10).eval(), get_model(student, 10)
    x, y, *_ = fixed_batch(n=4)
    for method in CLASSIFIER_METHODS:
        distiller = make(method, s, t, student, teacher).train()
        logits, losses = distiller.forward_train(Batch(x, y))
        assert logits.shape == (4, 10) and all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert distiller.eval().forward_test(x).shape == (4, 10)


@pytest.mark.parametrize('teacher, student', [('ResNet34', 'ResNet18'), ('ResNet50', 'MobileNetV1')])
def test_imagenet_pairs_build_and_step(teacher, student):
    torch.manual_seed(0)
    t = get_model(teacher, 20, 'imagenet').eval()
    s = get_model(student, 20, 'imagenet')
    x = torch.randn(2, 3, 224, 224)
    for method in CLASSIFIER_METHODS:
        distiller = make(method, s, t, student, teacher, image_size=224).train()
        _, losses = distiller.forward_train(Batch(x, torch.tensor([0, 1])))
        assert all(torch.isfinite(v) for v in losses.values())


def test_simkd_predicts_through_projector_and_teacher_classifier_without_the_teacher():
    distiller, teacher, student = build('simkd', teacher='resnet32x4', student='resnet8x4')
    x, y, *_ = fixed_batch(n=4)
    distiller.train()
    logits, losses = distiller.forward_train(Batch(x, y))
    assert set(losses) == {'cls', 'div', 'kd'}
    assert not torch.allclose(logits, student(x))  # training accuracy uses the SimKD prediction
    distiller.eval()
    with torch.no_grad():
        _, _, head_s = student(x, is_feat=True, with_head_map=True)
        expected = teacher.fc(distiller.proj.transfer(head_s).mean((2, 3)))

    def no_teacher(*args, **kwargs):
        raise AssertionError('validation must not run the teacher')
    teacher.forward = no_teacher
    with torch.no_grad():
        assert torch.allclose(distiller.forward_test(x), expected, atol=1e-5)
    assert torch.equal(distiller.cls_t.weight, teacher.fc.weight)
    assert not distiller.cls_t.weight.requires_grad


FAST = ['--epochs', '2', '--batch_size', '16', '--num_workers', '0', '--seed', '1']


@pytest.fixture(scope='module')
def simkd_layout(tmp_path_factory):
    """A tiny CIFAR-100 tree and a teacher saved where the SimKD toolbox keeps its teachers."""
    from conftest import tiny_data_and_teacher
    root = tmp_path_factory.mktemp('simkd')
    data, trained = tiny_data_and_teacher(root, 48, 40, model='resnet8x4')
    layout = root / 'save' / 'teachers' / 'models' / 'resnet8x4_vanilla'
    layout.mkdir(parents=True)
    teacher = layout / 'resnet8x4_best.pth'
    teacher.write_bytes(open(trained, 'rb').read())
    return data, root, str(teacher)


@pytest.mark.processes
def test_simkd_toolbox_command_and_self_contained_checkpoint(simkd_layout, capsys):
    data, root, teacher = simkd_layout
    save = str(root / 'run')
    # The SimKD toolbox's command line, as written, plus where the tiny data lives.
    argv = ['--path_t', teacher, '--distill', 'simkd', '--model_s', 'resnet8x4', '-c', '0',
            '-d', '0', '-b', '1', '--trial', '0', '--gpu_id', '0', '--data_folder', data,
            '--save_dir', save] + FAST
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'weights -r 0.0 -a 0.0 -b 1.0' in out and 'simkd: projector factor 2' in out
    run = os.path.join(save, 'student_model',
                       'S:resnet8x4_T:resnet8x4_cifar100_simkd_r:0.0_a:0.0_b:1.0_0')
    last = float(out.split('done:')[1].split('last acc@1 ')[1].split(';')[0])
    ckpt = load_checkpoint(os.path.join(run, 'resnet8x4_last.pth'))
    assert {'model', 'method_state', 'method', 'proj'} <= set(ckpt)
    assert 'cls_t.weight' in ckpt['method_state']
    os.rename(teacher, teacher + '.away')  # evaluation needs no teacher file
    try:
        result = subprocess.run(
            [sys.executable, 'eval_student.py', '--path', os.path.join(run, 'resnet8x4_last.pth'),
             '--data_folder', data, '--num_workers', '0'], cwd=REPO, capture_output=True,
            text=True)
    finally:
        os.rename(teacher + '.away', teacher)
    assert result.returncode == 0, result.stderr
    assert '(simkd)' in result.stdout and f'acc@1 {last:.2f}' in result.stdout


def test_srrl_toolbox_command_runs(simkd_layout, capsys):
    data, root, teacher = simkd_layout
    argv = ['--path_t', teacher, '--distill', 'srrl', '--model_s', 'resnet8x4', '-c', '1',
            '-d', '1', '-b', '1', '--trial', '0', '--gpu_id', '0', '--data_folder', data,
            '--save_dir', str(root / 'srrl')] + FAST
    assert train_student.main(argv) == 0
    assert 'weights -r 1.0 -a 1.0 -b 1.0' in capsys.readouterr().out


def test_srd_logs_each_term(simkd_layout, capsys):
    data, root, teacher = simkd_layout
    argv = ['--path_t', teacher, '--distill', 'srd_dist', '--model_s', 'resnet8x4',
            '--data_folder', data, '--save_dir', str(root / 'srd')] + FAST
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'srd_dist: 1 x feature mse + 10 x logit DISTV2' in out
    assert 'kd_feat' in out and 'kd_logit' in out


def test_eval_student_builds_simkd_from_its_checkpoint_alone(simkd_layout):
    distiller, teacher, student = build('simkd', teacher='resnet32x4', student='resnet8x4')
    state = Checkpoint(distiller.checkpoint_state(), arch='resnet8x4')
    opt = eval_student.parse_option(['--path', 'nowhere/resnet8x4_last.pth', '--dataset',
                                     'cifar10'])
    module, predict, name = eval_student.build_predictor(state, opt, 10)
    x = fixed_batch(n=2)[0]
    distiller.eval(), module.eval()
    with torch.no_grad():
        assert torch.allclose(predict(x), distiller.forward_test(x))
    assert name == 'resnet8x4 (simkd)'
