"""The transferability scores against closed forms and hand-computed cases (tl_core/transferability.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tl_core.transferability import h_score, knn_accuracy, linear_probe_accuracy, log_evidence, logme


def gaussian_log_density(f: torch.Tensor, t: torch.Tensor, alpha: float, beta: float) -> float:
    """Marginalising w ~ N(0, I/alpha) out of t = F w + N(0, I/beta): t ~ N(0, F F^T / alpha + I / beta)."""
    cov = f @ f.T / alpha + torch.eye(len(f), dtype=torch.float64) / beta
    return float(torch.distributions.MultivariateNormal(torch.zeros(len(f), dtype=torch.float64), cov).log_prob(t))


@pytest.mark.parametrize("n,d", [(30, 5), (6, 20)], ids=["more items than features", "fewer"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.3, 7.0)])
def test_log_evidence_is_the_gaussian_marginal_likelihood(n, d, alpha, beta):
    g = torch.Generator().manual_seed(n * d)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    t = (torch.rand(n, generator=g) > 0.5).to(torch.float64)
    assert log_evidence(f, t, alpha, beta) == pytest.approx(gaussian_log_density(f, t, alpha, beta) / n, rel=1e-9)


def test_logme_is_the_maximum_of_the_evidence_over_alpha_and_beta():
    """LogME's fixed point is the evidence's maximum: no point of a fine grid over alpha and beta does better, and the
    best of the grid comes close (the grid's resolution)."""
    g = torch.Generator().manual_seed(3)
    f = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = (f[:, 0] + 0.5 * torch.randn(40, generator=g, dtype=torch.float64) > 0).long()
    grid = torch.logspace(-3, 3, 61).tolist()
    best = [max(log_evidence(f, (y == c).double(), a, b) for a in grid for b in grid) for c in (0, 1)]
    score = logme(f, y)  # the mean over the classes' one-hot columns
    assert score >= sum(best) / 2 - 1e-9
    assert score - sum(best) / 2 < 2e-3


def test_logme_prefers_features_that_carry_the_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    informative = torch.nn.functional.one_hot(y, 3).double() * 3 + torch.randn(60, 8, generator=g,
                                                                               dtype=torch.float64)[:, :3]
    informative = torch.cat([informative, torch.randn(60, 5, generator=g, dtype=torch.float64)], 1)
    noise = torch.randn(60, 8, generator=g, dtype=torch.float64)
    assert logme(informative, y) > logme(noise, y)


def test_h_score_of_one_feature_is_the_share_of_variance_between_the_classes():
    """f = -1 -/+ a for class 0 and 1 -/+ a for class 1: total variance 1 + a^2, between the classes 1."""
    a = 0.5
    f = torch.tensor([[-1 - a], [-1 + a], [1 - a], [1 + a]], dtype=torch.float64)
    assert h_score(f, torch.tensor([0, 0, 1, 1])) == pytest.approx(1 / (1 + a * a))


def test_h_score_is_bounded_by_the_classes_less_one_and_survives_a_singular_covariance():
    y = torch.arange(30) % 3
    perfect = torch.nn.functional.one_hot(y, 3).double()  # its covariance is singular (the columns sum to 1)
    assert h_score(torch.cat([perfect, perfect], 1), y) == pytest.approx(2.0)


def test_knn_leaves_each_item_out():
    """Pairs of near-identical points of opposite classes: each item's nearest other item is of the other class, so
    1-NN leave-one-out gets none right (a k-NN that saw the item itself would get all)."""
    f = torch.tensor([[1.0, 0.01], [1.0, -0.01], [0.01, 1.0], [-0.01, 1.0]], dtype=torch.float64)
    assert knn_accuracy(f, torch.tensor([0, 1, 0, 1]), k=1) == 0.0
    assert knn_accuracy(f, torch.tensor([0, 0, 1, 1]), k=1) == 1.0


def test_probes_on_separable_and_on_random_features():
    g = torch.Generator().manual_seed(1)
    y = torch.arange(80) % 2
    separable = torch.randn(80, 4, generator=g, dtype=torch.float64) + 4 * y[:, None].double()
    noise = torch.randn(80, 4, generator=g, dtype=torch.float64)
    assert knn_accuracy(separable, y) == 1.0 and knn_accuracy(noise, y) < 0.75
    probe = linear_probe_accuracy(separable, y)
    assert probe.mean == 1.0 and probe.folds == 5
    assert linear_probe_accuracy(noise, y).mean < 0.75


def test_the_probe_uses_fewer_folds_when_a_class_is_rare():
    y = torch.tensor([0] * 10 + [1] * 3)
    f = torch.randn(13, 2, dtype=torch.float64) + 3 * y[:, None].double()
    assert linear_probe_accuracy(f, y).folds == 3
    assert math.isfinite(linear_probe_accuracy(f, y).std)


def test_a_probe_on_features_wider_than_the_items_fits_in_their_span():
    """The L2-regularised solution lies in the span of the training rows: fitting in the coordinates of that span
    (what linear_probe_accuracy does when d > n) predicts what the fit in all d dimensions predicts."""
    from tl_core.transferability import _fit_logistic

    g = torch.Generator().manual_seed(5)
    y = torch.arange(40) % 4
    x = torch.randn(40, 300, generator=g, dtype=torch.float64) + torch.nn.functional.one_hot(y, 4).double().repeat(
        1, 75)
    new = torch.randn(10, 300, generator=g, dtype=torch.float64)
    weight, bias = _fit_logistic(x, y, 4, 1e-3)
    basis = torch.linalg.qr(x.T).Q
    w_span, b_span = _fit_logistic(x @ basis, y, 4, 1e-3)
    full = new @ weight + bias
    span = (new @ basis) @ w_span + b_span
    assert torch.equal(full.argmax(1), span.argmax(1))
    assert torch.allclose(full, span, atol=5e-3)  # the optimizer's tolerance on the 1200-parameter problem
