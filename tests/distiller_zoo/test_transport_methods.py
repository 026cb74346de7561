"""WKD (Lv et al., NeurIPS 2024): its transport and Gaussian terms against the authors' code
(tests/fixtures/reference/wkd.json names the commit), Sinkhorn's fixed iterations, the cost
matrices, the cosine decay, the cost computed once per run, the projector's size, per-pair defaults and
its refusals."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from builders import build, fixed_batch, run_config
from core.util import UserError
from dataset.batch import Batch
from distiller_zoo import (WKD_SETTINGS, adaptive_avg_std_pool2d, cka_cost_matrix,
                           fc_cost_matrix, linear_CKA_precenter, nkd_loss, sinkhorn,
                           wkd_feature_loss, wkd_logit_loss_with_separation,
                           wkd_logit_loss_with_speration)
from dataset.base import ArrayDataset
from distiller_zoo.WKD import COST_FILE, cosine_decayed, teacher_class_features
from reference import (assert_close, assert_loss_and_stats_close, assert_stats_close, det,
                       grad_stats, reference, value_and_grad)

REFERENCE = reference('wkd')
TARGET = torch.tensor([1, 3, 5, 7, 9, 0])
RAW = det(10, 10, phase=0.3).abs()
COST = 1 - torch.exp(-(RAW + RAW.t()) / 2 * (1 - torch.eye(10)))  # the fixture's cost


@pytest.mark.parametrize('T, gamma, iters', [(8.0, 600.0, 10), (4.0, 60.0, 10),
                                             (4.0, 60.0, 11), (6.0, 0.0, 10)])
def test_wkd_l_equals_the_authors(T, gamma, iters):
    got = value_and_grad(lambda s, t: wkd_logit_loss_with_speration(s, t, TARGET, T, gamma,
                                                                    COST, 0.05, iters))
    assert_loss_and_stats_close(got, REFERENCE[f'wkd_l_T{T:g}_g{gamma:g}_it{iters}'])


@pytest.mark.parametrize('grid, shape', [(1, (2, 4, 8, 8)), (4, (2, 4, 7, 7)),
                                         (2, (2, 3, 8, 8))])
def test_wkd_f_equals_the_authors(grid, shape):
    f_s = (det(*shape, phase=0.5) * 2).requires_grad_()
    f_t = det(*shape, phase=1.7) * 3
    mean, cov = wkd_feature_loss(f_s, f_t, 1e-5, grid)
    (3 * mean + cov).backward()
    expected = REFERENCE[f'wkd_f_grid{grid}_' + 'x'.join(map(str, shape))]
    assert_close([mean.item(), cov.item()], expected[:2], rel=1e-5)
    assert_stats_close(grad_stats(f_s.grad), expected[2:])


def test_sinkhorn_rows_are_the_students_and_the_iterations_are_part_of_the_loss():
    p_s, p_t = F.softmax(det(6, 10, phase=0.5), 1), F.softmax(det(6, 10, phase=2.0), 1)
    cost = COST.expand(6, -1, -1) + 1e-8
    flow = sinkhorn(p_s, p_t, cost, 0.05, 10)
    assert torch.allclose(flow.sum(2), p_s, atol=1e-6)
    assert (flow.sum(1) - p_t).abs().max() > 1e-7  # the columns are not matched exactly
    more = sinkhorn(p_s, p_t, cost, 0.05, 200)
    assert (more.sum(1) - p_t).abs().max() < (flow.sum(1) - p_t).abs().max()
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    target = wkd_logit_loss_with_separation(s, t, TARGET, 4.0, 0.0, COST)
    assert torch.allclose(target, nkd_loss(s, t, TARGET, 1.0, 0.0), rtol=1e-6)  # gamma 0


def test_cost_matrices_and_the_grid_cells():
    feats = det(3, 40, 5, phase=0.7)
    cost = cka_cost_matrix(torch.stack([feats[0], feats[1], feats[0]]), sharpen=0)
    assert torch.equal(cost, cost.t()) and torch.all(cost.diagonal() == 0)
    assert abs(cost[0, 2].item()) < 1e-6  # a class against itself
    assert torch.allclose(cost[0, 1], 1 - linear_CKA_precenter(feats[0], feats[1]))
    assert torch.allclose(cka_cost_matrix(feats, 1.0), 1 - torch.exp(-cka_cost_matrix(feats, 0)))
    weight = det(4, 6, phase=0.2)
    cos = F.cosine_similarity(weight[:, None], weight[None], dim=-1)
    assert torch.allclose(fc_cost_matrix(weight, 0), 1 - cos, atol=1e-6)
    x = det(1, 1, 7, 7, phase=0.3)
    mean, std = adaptive_avg_std_pool2d(x, (4, 4))
    assert torch.allclose(mean[0, 0, 0, 0], x[0, 0, 0:2, 0:2].mean())  # rows 0-1
    assert torch.allclose(mean[0, 0, 1, 1], x[0, 0, 1:4, 1:4].mean())  # rows 1-3: overlap
    assert torch.allclose(std[0, 0, 1, 1], (x[0, 0, 1:4, 1:4].var() + 1e-5).sqrt())


def test_weights_decay_on_a_cosine_after_the_decay_epoch():
    values = [cosine_decayed(200.0, e, 150, 240) for e in (150, 151, 200, 240)]
    assert values[0] == 200 and values[3] == pytest.approx(0, abs=1e-9)
    assert values[1] == pytest.approx(199.939, abs=1e-3)
    assert values[2] == pytest.approx(100 * (1 + math.cos(math.pi * 50 / 90)))
    assert run_config('--distill', 'wkd_f', '--epochs', '100').method.epochs == 100


def test_per_pair_defaults_and_the_projector():
    lf = run_config('--distill', 'wkd_lf', '--wkd_cost', 'fc', teacher='resnet32x4',
                    student='resnet8x4').method.options
    assert (lf.wkd_T, lf.wkd_logit_weight, lf.wkd_feat_weight, lf.wkd_mean_cov_ratio,
            lf.wkd_spatial_grid, lf.wkd_decay_epoch) == WKD_SETTINGS[
        ('wkd_lf', 'resnet32x4', 'resnet8x4')] == (8.0, 200.0, 0.08, 8.0, 1, 150)
    f = run_config('--distill', 'wkd_f').method.options  # vgg13 -> vgg8: cfg.py's
    assert (f.wkd_feat_weight, f.wkd_mean_cov_ratio, f.wkd_spatial_grid) == (1.0, 2.0, 4)
    assert not hasattr(f, 'wkd_logit_weight')  # WKD-F has no transport term
    distiller, _, _ = build('wkd_f', teacher='resnet32x4', student='resnet8x4', num_classes=100)
    assert sum(p.numel() for p in distiller.projector.parameters()) == 66304


def test_wkd_l_keeps_its_cost_in_the_checkpoint_and_the_cache_serves_it(tmp_path):
    path = tmp_path / 'linear_cka.pth'
    torch.save(COST, path)
    distiller, _, _ = build('wkd_l', wkd_cost_matrix=str(path), wkd_sharpen=1.0)
    assert torch.allclose(distiller.cost, 1 - torch.exp(-COST))
    assert torch.equal(distiller.checkpoint_state()['method_state']['cost'], distiller.cost)
    x, y, index, _ = fixed_batch()
    with torch.no_grad():
        _, losses = distiller.forward_train(Batch(x, y, index))
    assert set(losses) == {'cls', 'div', 'kd_wkd_l'}
    assert run_config('--distill', 'wkd_l', '--wkd_cost', 'fc', '--teacher_cache', '2',
                      '--epochs', '2').plugins
    fc, _, _ = build('wkd_l', wkd_cost='fc', wkd_sharpen=0.0)
    weight = fc.teacher_net.get_classifier().weight
    assert torch.allclose(fc.cost, fc_cost_matrix(weight.detach(), 0))


def small_training_set(n=12, classes=10):
    images = (torch.rand(n, 32, 32, 3, generator=torch.Generator().manual_seed(3)) * 255)
    targets = [i % (classes - 1) for i in range(n)]  # the last class has no image
    return SimpleNamespace(dataset=ArrayDataset(images.to(torch.uint8).numpy(), targets),
                           batch_size=5, device=torch.device('cpu'), mean=(0.5,) * 3,
                           std=(0.25,) * 3)


def test_the_cka_cost_is_computed_once_per_run_and_read_back(tmp_path, monkeypatch):
    loader = small_training_set()
    distiller, teacher, _ = build('wkd_l')
    assert distiller.from_data and torch.all(distiller.cost == 0)
    distiller.prepare(loader, str(tmp_path))
    stored = torch.load(tmp_path / COST_FILE)
    images = torch.from_numpy(loader.dataset.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        maps = teacher((images - 0.5) / 0.25, is_feat=True)[0][-2]
    rows = maps.permute(0, 2, 3, 1).flatten(1, 2)  # image-major, then positions
    first = [rows[c] for c in (0, 1)]  # the smallest class has one image: one kept of each
    assert torch.allclose(stored[0, 1], 1 - linear_CKA_precenter(first[0], first[1]), atol=1e-5)
    assert torch.all(stored[9, :9] == 1) and stored[9, 9] == 0  # a class without images
    assert torch.allclose(distiller.cost, 1 - torch.exp(-stored))  # sharpened 1
    monkeypatch.setattr('distiller_zoo.WKD.cka_distance_of_teacher', None)  # never again
    resumed, _, _ = build('wkd_l')
    resumed.prepare(loader, str(tmp_path))
    assert torch.equal(resumed.cost, distiller.cost)
    assert run_config('--distill', 'wkd_l', '--wkd_cost_matrix', str(tmp_path / COST_FILE)
                      ).method.options.wkd_cost_matrix  # the authors' format: reusable


def test_refusals_are_one_line(tmp_path):
    folder_like = SimpleNamespace(dataset=SimpleNamespace(targets=[0]))
    with pytest.raises(UserError, match='from a data set held in memory'):
        teacher_class_features(None, folder_like, 10)
    torch.save(torch.zeros(3, 3), tmp_path / 'small.pth')
    with pytest.raises(UserError, match='must hold a 10 x 10 tensor'):
        build('wkd_l', wkd_cost_matrix=str(tmp_path / 'small.pth'))
    with pytest.raises(UserError, match='does not exist'):
        build('wkd_l', wkd_cost_matrix=str(tmp_path / 'missing.pth'))
    with pytest.raises(UserError, match='is not a torch-saved tensor'):
        (tmp_path / 'text.pth').write_text('not a tensor')
        build('wkd_l', wkd_cost_matrix=str(tmp_path / 'text.pth'))
