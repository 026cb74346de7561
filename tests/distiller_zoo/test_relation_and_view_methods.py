"""Logit methods of the 2025-26 papers that relate the samples of a batch or its views: SKD in
its two forms and CRLD. Values and gradients against their authors' code (tests/fixtures/reference/
<method>.json names each repository and commit), special cases, per-pair weights and what
the teacher-output cache can serve."""
import pytest
import torch
import torch.nn.functional as F

from builders import build, fixed_batch, run_config
from dataset.batch import Batch
from core.util import UserError
from distiller_zoo import (CRLD_SETTINGS, SKD_loss, SKDDirectionLoss, SKDInstanceLoss,
                           crld_losses, skd_losses)
from distiller_zoo.MLLD import kl_per_sample
from distiller_zoo.SKD import direction_loss
from reference import assert_close, assert_loss_and_stats_close, det, reference, value_and_grad

REFERENCE = reference('skd', 'crld')
TARGET = torch.tensor([1, 3, 5, 7, 9, 0])
S_STRONG, T_STRONG = det(6, 10, phase=1.3) * 3, det(6, 10, phase=2.7) * 4  # CRLD's strong view


@pytest.mark.parametrize('T', [4.0, 2.0])
def test_skd_instance_term_equals_torchdistills(T):
    assert_loss_and_stats_close(value_and_grad(lambda s, t: SKDInstanceLoss(T)(s, t)),
                                REFERENCE[f'skd_instance_T{T:g}'])


@pytest.mark.parametrize('tikhonov', [0.1, 0.01])
def test_skd_direction_terms_equal_torchdistills_and_the_authors(tikhonov):
    assert_loss_and_stats_close(value_and_grad(lambda s, t: SKDDirectionLoss(tikhonov)(s, t)),
                                REFERENCE[f'skd_direction_l{tikhonov:g}'])
    assert_loss_and_stats_close(value_and_grad(lambda s, t: SKD_loss(s, t, tikhonov)),
                                REFERENCE[f'skd_authors_direction_l{tikhonov:g}'])


@pytest.mark.parametrize('T, tik, ce, kd', [(4.0, 0.1, 0.1, 0.9), (2.0, 0.01, 0.5, 0.5)])
def test_skd_authors_objective_equals_theirs_term_by_term(T, tik, ce, kd):
    parts = []

    def total(s, t):
        terms = skd_losses(s, t, TARGET, T, tik, ce, kd)
        parts.extend(terms[k].item() for k in ('loss_ce', 'loss_kd', 'loss_bc'))
        return sum(terms.values())
    got = value_and_grad(total)
    expected = REFERENCE[f'skd_authors_T{T:g}_l{tik:g}_ce{ce:g}_kd{kd:g}']
    assert_close(parts, expected[1:4], rel=1e-5)
    assert_loss_and_stats_close(got, expected[:1] + expected[4:])


def test_direction_term_is_a_mahalanobis_length_that_a_large_lambda_makes_euclidean():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    z_s, z_t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    diff = z_s @ z_s.t() - z_t @ z_t.t()
    euclidean = diff.norm(dim=1).mean()
    assert torch.allclose(direction_loss(s, t, 1e4), euclidean / 100, rtol=1e-3)
    assert direction_loss(s, t, 0.1) < 0.9 * euclidean / 0.1 ** 0.5  # the covariance acts
    assert direction_loss(t, t, 0.1) == 0
    assert direction_loss(s[:1], t[:1], 0.1) == 0  # one row has no covariance


def test_the_authors_masks_scale_each_term_by_the_fraction_at_or_below_the_median():
    s, t = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    terms = skd_losses(s, t, TARGET, 4.0, 0.1, 1.0, 1.0)
    kd = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction='batchmean') * 16
    assert torch.allclose(terms['loss_kd'], kd * 3 / 6, rtol=1e-6)  # 3 of 6 samples
    assert torch.allclose(terms['loss_bc'], SKD_loss(s, t, 0.1) * 5 / 10, rtol=1e-6)


def test_skd_methods_terms_and_weights():
    skd = run_config('--distill', 'skd').method
    assert skd.weights == (0.0, 0.0, 1.0)
    assert (skd.options.skd_T, skd.options.skd_tikhonov) == (4.0, 0.1)
    authors = run_config('--distill', 'skd_authors', teacher='resnet32x4', student='resnet8x4')
    assert authors.method.weights == (0.5, 0.0, 0.5)  # the pair the authors name
    assert run_config('--distill', 'skd_authors').method.weights == (0.1, 0.0, 0.9)
    assert run_config('--distill', 'skd_authors', '-r', '1', teacher='resnet32x4',
                      student='resnet8x4').method.weights == (1.0, 0.0, 0.5)
    for name, keys in (('skd', {'cls', 'div', 'kd_instance', 'kd_direction'}),
                       ('skd_authors', {'cls', 'div', 'kd_kd', 'kd_bc'})):
        distiller, _, _ = build(name)
        x, y, index, _ = fixed_batch()
        with torch.no_grad():
            _, losses = distiller.forward_train(Batch(x, y, index))
            s, t = distiller.student(x), distiller.teacher_net(x)
        assert set(losses) == keys
        if name == 'skd_authors':
            expected = skd_losses(s, t, y)
            assert torch.allclose(losses['cls'] + losses['kd_kd'] + losses['kd_bc'],
                                  sum(expected.values()), rtol=1e-5)


@pytest.mark.parametrize('name', ['skd', 'skd_authors'])
def test_skd_reads_only_logits_so_the_teacher_cache_serves_it(name):
    assert run_config('--distill', name, '--teacher_cache', '2', '--epochs', '2').plugins


@pytest.mark.parametrize('ce, wv, cv, T, tau_w, tau_s', [(1.0, 2.0, 0.5, 4.0, 0.9, 0.2),
                                                        (2.0, 4.0, 1.0, 2.0, 0.5, 0.3)])
def test_crld_equals_the_authors_term_by_term(ce, wv, cv, T, tau_w, tau_s):
    parts = []

    def total(s, t):
        terms = crld_losses(s, S_STRONG, t, T_STRONG, TARGET, ce, wv, cv, T, tau_w, tau_s)
        parts.extend(terms[k].item() for k in ('loss_ce', 'loss_kd_wv', 'loss_kd_cv'))
        return sum(terms.values())
    got = value_and_grad(total)
    expected = REFERENCE[f'crld_ce{ce:g}_wv{wv:g}_cv{cv:g}_T{T:g}_tw{tau_w:g}_ts{tau_s:g}']
    assert_close(parts, expected[1:4], rel=1e-5)
    assert_loss_and_stats_close(got, expected[:1] + expected[4:])


def test_crld_masks_gate_as_the_authors_apply_them():
    s_w, t_w = det(6, 10, phase=0.5) * 3, det(6, 10, phase=2.0) * 4
    same = crld_losses(s_w, s_w, t_w, t_w, TARGET, 1.0, 2.0, 0.5, 4.0, 0.0, 0.0)
    kd = kl_per_sample(s_w, t_w, 4.0).mean()
    assert torch.allclose(same['loss_kd_wv'], 2 * 2.0 * kd, rtol=1e-6)  # identical views
    assert torch.allclose(same['loss_kd_cv'], 2 * 0.5 * kd, rtol=1e-6)
    weak_conf = F.softmax(t_w, 1).max(1).values
    tau = weak_conf.sort().values[3].item()  # three of six samples at or above it
    gated = crld_losses(s_w, S_STRONG, t_w, T_STRONG, TARGET, 1.0, 1.0, 1.0, 4.0, tau, 0.0)
    mask = (weak_conf >= tau).float()
    expected = ((kl_per_sample(s_w, t_w, 4.0) + kl_per_sample(S_STRONG, T_STRONG, 4.0))
                * mask).sum() / 6  # the weak mask gates the strong pair too; mean over all 6
    assert mask.sum() == 3 and torch.allclose(gated['loss_kd_wv'], expected, rtol=1e-6)


def test_crld_sees_two_views_with_its_settings_and_the_cache_cannot_serve_it():
    assert len(CRLD_SETTINGS) == 12 and set(CRLD_SETTINGS.values()) == {
        (1.0, 2.0, 0.5, 4.0, 0.9, 0.2)}
    config = run_config('--distill', 'crld')
    assert config.method.weights == (1.0, 0.0, 1.0)
    distiller, _, _ = build('crld', crld_tau_w=0.0, crld_tau_s=0.0)
    x, y, index, _ = fixed_batch()
    views = torch.stack([x, x.flip(3)], 1)
    with torch.no_grad():
        logits, losses = distiller.forward_train(Batch(views, y, index))
        s = [distiller.student(v) for v in (x, x.flip(3))]
        t = [distiller.teacher_net(v) for v in (x, x.flip(3))]
    assert torch.equal(logits, s[0])  # accuracy on the weak view
    expected = crld_losses(*s, *t, y, 1.0, 2.0, 0.5, 4.0, 0.0, 0.0)
    assert torch.allclose(losses['cls'], expected['loss_ce'], rtol=1e-5)
    assert torch.allclose(losses['kd_wv'], expected['loss_kd_wv'], rtol=1e-5)
    assert torch.allclose(losses['kd_cv'], expected['loss_kd_cv'], rtol=1e-5)
    with pytest.raises(UserError, match='needs the teacher on views it makes'):
        run_config('--distill', 'crld', '--teacher_cache', '2', '--epochs', '2')
