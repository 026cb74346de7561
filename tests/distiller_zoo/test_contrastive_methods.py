"""Contrastive and multi-view methods: ICD/DCD, RRD, MLKD."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train_student
from dataset import DATASETS, build_loaders
from dataset.base import ArrayDataset
from distiller_zoo import AlignLoss, CorrLoss, DCDLoss, ICDLoss, METHODS, RRDLoss, SupConLoss
from models import get_model
from reference import det
from dataset.batch import Batch, BatchSpec
from dataset.views import RotatedViews
from reference import assert_stats_close
from builders import build, fill_by_name, fixed_batch, grad_ends, make

# Values from running the authors' code on the inputs below: DCDLoss from
# giakoumoglou/distillers at a2ee80b (cifar/distillers/DCD.py), RRDLoss from the same repository
# at 72aa7d7 (distillers/RRD.py, the September 2024 version: loss, then enqueue, temperatures
# 0.04 / 0.10), CorrLoss, SupConLoss and AlignLoss from ifding/DLKD at c7528eb
# (helper/losses.py). Each: value and [sum, abs-sum, first, last] of the gradient on the
# student's input.
REFERENCE = {
    'dcd': (1.47964608669281, [0.022829055786132812, 1.6977978944778442, -0.051274821162223816,
                               0.12550579011440277]),
    'dcd_fixed': (1.4620213508605957, [-0.01845172978937626, 0.10666166990995407,
                                       -0.003072561463341117, -0.00542672723531723]),
    'mlkd_corr': (0.4747787117958069, [1.7462298274040222e-10, 0.011738798581063747,
                                       -0.0005136649706400931, 6.994311115704477e-05]),
    'mlkd_supcon': (14.289013862609863, [-0.19916006922721863, 2.6217892169952393,
                                         0.04271833598613739, 0.03211714327335358]),
    'mlkd_align': (1.9965754747390747, [8.731149137020111e-10, 0.01971711590886116,
                                        -0.00012954522389918566, -8.106303721433505e-05]),
}
RRD_STEPS = [  # value, gradient statistics, queue pointer after the step (queue of 12, batch 4)
    (3.622223138809204, [0.24715930223464966, 2.774357557296753, -0.08467458188533783,
                         -0.04586368426680565], 4),
    (8.33220386505127, [-3.6665759086608887, 8.420126914978027, 0.2818187475204468,
                        -1.339127779006958], 8),
    (29.228300094604492, [4.931912899017334, 12.86274242401123, 1.9737176895141602,
                          -0.44859421253204346], 0),
    (12.387330055236816, [0.5327433347702026, 11.348995208740234, -0.006975500378757715,
                          -0.9494702816009521], 4)]
OPT = SimpleNamespace(s_dim=6, t_dim=10, feat_dim=8, nce_k=12, nce_t_s=0.04, nce_t_t=0.1,
                      nce_t=0.07)


def check(name, value, grad):
    expected, stats = REFERENCE[name]
    assert value.item() == pytest.approx(expected, rel=1e-5), name
    assert_stats_close(grad_ends(grad), stats)


@pytest.mark.parametrize('name, trainable', [('dcd', True), ('dcd_fixed', False)])
def test_dcd_matches_the_authors_loss(name, trainable):
    loss = fill_by_name(DCDLoss(OPT, trainable=trainable))
    if trainable:
        with torch.no_grad():
            loss.params.tau.fill_(0.7)
            loss.params.b.fill_(0.3)
    f_s, f_t = det(4, 6, phase=0.3).requires_grad_(), det(4, 10, phase=1.3)
    value = loss(f_s, f_t)
    check(name, value, torch.autograd.grad(value, f_s, retain_graph=True)[0])
    if trainable:
        tau_grad, b_grad = torch.autograd.grad(value, [loss.params.tau, loss.params.b])
        assert tau_grad.item() == pytest.approx(0.5946070551872253, rel=1e-4)
        assert abs(b_grad.item()) < 1e-6  # a shift of every score changes neither softmax


def test_icd_temperature_is_learned_and_capped():
    loss = ICDLoss(OPT)
    assert isinstance(loss, DCDLoss) and loss.params.tau.requires_grad
    with torch.no_grad():
        loss.params.tau.fill_(3.0)  # exp(3) = 20 > the cap of 10
    assert loss.inverse_temperature().item() == 10.0
    f_s, f_t = det(4, 6, phase=0.3), det(4, 10, phase=1.3)
    fill_by_name(loss)
    with torch.no_grad():
        loss.params.tau.fill_(3.0)
    value = loss(f_s, f_t)
    assert value.item() == pytest.approx(4.885623931884766, rel=1e-5)  # the authors' value
    # Training moves the exponent while it is below the cap.
    distiller, _, _ = build('icd')
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.5)
    before = distiller.criterion_kd.params.tau.item()
    x, y, *_ = fixed_batch()
    optimizer.zero_grad()
    sum(distiller.train().forward_train(Batch(x, y))[1].values()).backward()
    optimizer.step()
    assert distiller.criterion_kd.params.tau.item() != before
    assert METHODS['dcd'] is METHODS['icd']


def test_rrd_matches_the_authors_loss_and_queue_over_steps():
    loss = fill_by_name(RRDLoss(OPT))
    with torch.no_grad():
        loss.queue.copy_(F.normalize(det(12, 8, phase=2.2), dim=0))
    for step, (value, stats, pointer) in enumerate(RRD_STEPS):
        f_s = det(4, 6, phase=0.3 + step).requires_grad_()
        out = loss(f_s, det(4, 10, phase=1.3 + step))
        assert out.item() == pytest.approx(value, rel=1e-5)
        assert_stats_close(grad_ends(torch.autograd.grad(out, f_s)[0]), stats)
        assert int(loss.queue_ptr) == pointer
    assert loss.queue.sum().item() == pytest.approx(3.8840556144714355, rel=1e-5)
    assert METHODS['rcd'] is METHODS['rrd']


def test_rrd_queue_wraps_with_a_batch_that_does_not_divide_it():
    loss = RRDLoss(OPT)
    keys = []
    for step in range(4):  # 4 x 5 = 20 keys through a queue of 12
        f_t = det(5, 10, phase=step)
        loss(det(5, 6, phase=step), f_t)
        keys.append(F.normalize(loss.embed_t(f_t), dim=1).detach())
    keys = torch.cat(keys)
    assert int(loss.queue_ptr) == 20 % 12
    expected = torch.empty(12, 8)
    for i, key in enumerate(keys):
        expected[i % 12] = key
    assert torch.allclose(loss.queue, expected)
    f_t = det(30, 10, phase=9)
    loss(det(30, 6), f_t)  # a batch longer than the queue: its last 12 keys, where they fall
    keys = F.normalize(loss.embed_t(f_t), dim=1).detach()
    for i in range(18, 30):
        assert torch.allclose(loss.queue[(20 + i) % 12], keys[i])
    assert int(loss.queue_ptr) == (20 + 30) % 12


@pytest.mark.parametrize('name', ['corr', 'supcon', 'align'])
def test_mlkd_losses_match_the_authors(name):
    opt = SimpleNamespace(s_dim=6, t_dim=10, feat_dim=8)
    h_s, h_t = det(12, 6, phase=0.4).requires_grad_(), det(12, 10, phase=1.4) * 2
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    module = fill_by_name({'corr': CorrLoss, 'supcon': SupConLoss, 'align': AlignLoss}[name](opt))
    value = module(h_s, h_t, labels) if name == 'supcon' else module(h_s, h_t)
    check(f'mlkd_{name}', value, torch.autograd.grad(value, h_s)[0])


@pytest.mark.parametrize('method, modules, count', [
    ('icd', ['criterion_kd'], 65794), ('rrd', ['criterion_kd'], 65792),
    ('mlkd', ['criterion_corr', 'criterion_kd', 'criterion_align'], 132096 + 65792 + 2109696)])
def test_module_sizes_match_the_references(method, modules, count):
    distiller = make(method, get_model('resnet8x4', 100), get_model('resnet32x4', 100),
                     'resnet8x4', 'resnet32x4', nce_k=16384, feat_dim=128)
    assert sum(p.numel() for m in modules for p in getattr(distiller, m).parameters()) == count


def test_mlkd_weights_and_the_meaning_of_d():
    config = train_student.parse_option(['--path_t', 'x.pth', '--distill', 'mlkd', '-r', '1',
                                         '-a', '50', '-b', '1', '-d', '20'])
    assert config.method.weights == (1, 50, 1, 20)
    config = train_student.parse_option(['--path_t', 'x.pth', '--distill', 'mlkd'])
    assert config.method.weights == (1, 50, 1, 20)
    config = train_student.parse_option(['--path_t', 'x.pth', '--distill', 'kd', '-d', '0.3'])
    assert config.method.weights == (0.1, 0.3, 0)  # SimKD's alias of -a elsewhere
    assert config.options['alpha'] == 0.3 and config.options['delta'] is None


def test_mlkd_step_uses_unrotated_views_for_ce_and_all_views_for_the_rest():
    distiller, teacher, student = build('mlkd', teacher='resnet32x4', student='resnet8x4')
    distiller.train()
    x, y, *_ = fixed_batch(n=3)
    views = torch.stack([x.rot90(k, dims=(2, 3)) for k in range(4)], 1)
    seen = []
    original = teacher.forward
    teacher.forward = lambda image, **kw: seen.append(len(image)) or original(image, **kw)
    logits, losses = distiller.forward_train(Batch(views, y))
    assert seen == [12] and logits.shape == (3, 10)
    assert set(losses) == {'cls', 'corr', 'kd', 'align'}
    student.eval()
    with torch.no_grad():
        assert torch.allclose(distiller.eval().forward_train(Batch(views, y))[0], student(x),
                              atol=1e-5)


def square_images(n=3, size=32):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), [0, 1, 2][:n])


@pytest.mark.parametrize('loader', ['device', 'classic'])
def test_rotated_views_in_the_authors_order_on_both_loaders(loader, monkeypatch):
    """Without the crops, view k is view 0 turned k quarter-turns counter-clockwise (numpy's
    rot90), and view 0 is the image or its mirror."""
    import dataset.views
    data = square_images()
    monkeypatch.setitem(DATASETS, 'synthetic', DATASETS['synthetic'].__class__(
        lambda root, splits=('train', 'test'): [square_images() for _ in splits], 3, (0.0,) * 3,
        (1 / 255,) * 3))
    def centred(count, draws, device, flip=True):  # crops at offset 4: the images themselves
        return (torch.full((count,), 4), torch.full((count,), 4),
                torch.zeros(count, dtype=torch.bool))
    monkeypatch.setattr(dataset.views, 'random_crops', centred)
    train, _ = build_loaders('synthetic', batch_size=3, num_workers=0, seed=0, loader=loader,
                             spec=BatchSpec(views=RotatedViews()))
    views, labels, *_ = next(iter(train))
    order = [int(t) for t in labels]
    assert views.shape == (3, 4, 3, 32, 32)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float()
    for i, label in enumerate(order):
        v = views[i].round()
        assert torch.equal(v[0], images[label]) or torch.equal(v[0], images[label].flip(2))
        for k in range(1, 4):
            expected = np.rot90(v[0].permute(1, 2, 0).numpy(), k).copy()  # numpy's, on HWC
            assert torch.equal(v[k], torch.from_numpy(expected).permute(2, 0, 1))


def test_mlkd_runs_from_the_command_line_and_validates_on_plain_images(tiny, tmp_path, capsys):
    data, teacher, _ = tiny
    for loader in ('device', 'classic'):
        argv = ['--path_t', teacher, '--distill', 'mlkd', '--model_s', 'resnet8', '-r', '1',
                '-a', '50', '-b', '1', '-d', '20', '--trial', loader, '--data_folder', data,
                '--save_dir', str(tmp_path / 'save'), '--epochs', '1', '--batch_size', '8',
                '--num_workers', '0', '--loader', loader]
        assert train_student.main(argv) == 0
        out = capsys.readouterr().out
        assert 'weights -r 1.0 -a 50.0 -b 1.0 -d 20.0' in out
        assert 'corr' in out and 'align' in out


def test_mlkd_teacher_layout_with_state_dict_loads(tmp_path):
    """The MLKD scripts' teachers: ``<arch>_vanilla/<arch>.pth`` holding ``'state_dict'``."""
    from helper.teachers import load_teacher
    folder = tmp_path / 'resnet8_vanilla'
    folder.mkdir()
    state = get_model('resnet8', 100).state_dict()
    torch.save({'epoch': 240, 'state_dict': state}, folder / 'resnet8.pth')
    teacher, name = load_teacher(str(folder / 'resnet8.pth'), 100, 'cifar100')
    assert name == 'resnet8' and torch.equal(teacher.state_dict()['fc.weight'], state['fc.weight'])
