"""Scores of how well frozen features suit a labelled target task, before any fine-tuning: the cheap probes
``tl diagnose`` (issue 13) ranks backbones with. Each takes features ``(n, d)`` from one forward pass and integer
labels ``(n,)``; none needs a backward pass through the backbone.

- :func:`logme`: LogME (You et al., ICML 2021), the maximum log marginal evidence per sample of a Bayesian linear
  model from the features to each class's one-hot column, averaged over classes. Computed from the paper's
  equations through one SVD of the features, exact for ``n < d`` as for ``n >= d``; ``alpha`` and ``beta`` come from
  MacKay's fixed-point updates, as in the paper.
- :func:`h_score`: the H-score (Bao et al., ICIP 2019), ``tr(cov(f)^+ cov(E[f|y]))``: how much of the features'
  variance lies between the classes (pseudo-inverse for a singular covariance).
- :func:`knn_accuracy`: leave-one-out k-nearest-neighbour accuracy under cosine similarity of the centred features
  (each item is classified by the others): independent re-evaluations of transferability scores (Agostinelli et
  al. 2022) found such a probe on frozen features as good as most of them.
- :func:`linear_probe_accuracy`: stratified k-fold cross-validated accuracy of an L2-regularised multinomial
  logistic regression on standardised features (fitted with L-BFGS).

All run on the CPU in float64 with torch, deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _inputs(features: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    f = torch.as_tensor(features).detach().to("cpu", torch.float64)
    y = torch.as_tensor(labels).detach().to("cpu", torch.long)
    if f.ndim != 2 or y.ndim != 1 or len(f) != len(y):
        raise ValueError(f"features must be (n, d) and labels (n,), got {tuple(f.shape)} and {tuple(y.shape)}")
    if len(y) < 2:
        raise ValueError("at least two labelled items are needed")
    return f, y


# ---------------------------------------------------------------- LogME


def log_evidence(features: Any, target: Any, alpha: float, beta: float) -> float:
    """``log p(target | features, alpha, beta)`` of Bayesian linear regression, prior ``w ~ N(0, alpha^-1 I)`` and
    noise ``N(0, beta^-1)``, per sample (LogME's eq. 2, closed form through the SVD of the features)."""
    import torch

    f = torch.as_tensor(features, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    return float(_evidence(u.T @ t, float(t @ t), s * s, n, d, alpha, beta)[0]) / n


def _evidence(z: torch.Tensor, yy: float, sigma: torch.Tensor, n: int, d: int, alpha: float, beta: float
              ) -> tuple[float, float, float, float]:
    """(log evidence, gamma, |m|^2, |y - F m|^2) from ``z = U^T y``, ``|y|^2`` and the squared singular values."""
    import torch

    denominator = alpha + beta * sigma
    m2 = float(((beta * sigma.sqrt() * z / denominator) ** 2).sum())
    residual = float(((alpha * z / denominator) ** 2).sum()) + max(yy - float((z * z).sum()), 0.0)
    gamma = float((beta * sigma / denominator).sum())
    log_det = float(torch.log(denominator).sum()) + (d - len(sigma)) * math.log(alpha)
    value = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi) - log_det / 2
             - beta / 2 * residual - alpha / 2 * m2)
    return value, gamma, m2, residual


def logme(features: Any, labels: Any, iterations: int = 100, tolerance: float = 1e-5) -> float:
    """LogME of ``features`` for ``labels``: the mean over classes of the maximised log evidence per sample (higher is
    better; it is comparable between backbones on the same data, not between data sets)."""
    import torch

    f, y = _inputs(features, labels)
    return _logme_columns(f, [(y == c).to(torch.float64) for c in torch.unique(y).tolist()], iterations, tolerance)


def logme_regression(features: Any, targets: Any, iterations: int = 100, tolerance: float = 1e-5) -> float:
    """LogME for real-valued targets ``(n, k)`` (the paper's regression case): the mean over the ``k`` target columns
    of the maximised log evidence per sample; what a task without classes (translation) is scored with."""
    import torch

    f = torch.as_tensor(features).detach().to("cpu", torch.float64)
    t = torch.as_tensor(targets).detach().to("cpu", torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if f.ndim != 2 or t.ndim != 2 or len(f) != len(t) or len(f) < 2:
        raise ValueError(f"features must be (n, d) and targets (n, k), n >= 2, got {tuple(f.shape)} and "
                         f"{tuple(t.shape)}")
    return _logme_columns(f, [t[:, j] for j in range(t.shape[1])], iterations, tolerance)


def _logme_columns(f: torch.Tensor, columns: list[torch.Tensor], iterations: int, tolerance: float) -> float:
    import torch

    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    sigma = s * s
    scores = []
    for t in columns:
        z, yy = u.T @ t, float(t @ t)
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            _, gamma, m2, residual = _evidence(z, yy, sigma, n, d, alpha, beta)
            # clamped: features that carry nothing (all zero) drive alpha to 0, where the evidence no longer
            # depends on it (the prior's terms cancel) but log(0) would fail
            new_alpha = min(max(gamma / max(m2, 1e-12), 1e-12), 1e12)
            new_beta = min(max((n - gamma) / max(residual, 1e-12), 1e-12), 1e12)
            done = abs(new_alpha / new_beta - alpha / beta) <= tolerance * alpha / beta
            alpha, beta = new_alpha, new_beta
            if done:
                break
        scores.append(_evidence(z, yy, sigma, n, d, alpha, beta)[0] / n)
    return float(sum(scores) / len(scores))


# ---------------------------------------------------------------- H-score


def h_score(features: Any, labels: Any) -> float:
    """The H-score: ``tr(cov(f)^+ cov(E[f | y]))`` with population covariances (higher is better; at most the number
    of classes less one)."""
    import torch

    f, y = _inputs(features, labels)
    f = f - f.mean(0)
    cov = f.T @ f / len(f)
    means = torch.zeros_like(f)
    for c in torch.unique(y):
        mask = y == c
        means[mask] = f[mask].mean(0)
    between = means.T @ means / len(f)
    return float(torch.trace(torch.linalg.pinv(cov, hermitian=True) @ between))


# ---------------------------------------------------------------- probes


def knn_accuracy(features: Any, labels: Any, k: int = 5) -> float:
    """Leave-one-out accuracy of a ``k``-nearest-neighbour vote under cosine similarity of the centred features
    (pooled ReLU features all point into one orthant: uncentred, every pair looks alike): each item is classified by
    the ``k`` most similar *other* items (ties in the vote go to the class with the larger summed similarity)."""
    return float(knn_correct(features, labels, k).double().mean())


def knn_correct(features: Any, labels: Any, k: int = 5) -> torch.Tensor:
    """Per item, whether :func:`knn_accuracy`'s leave-one-out vote gets it right (a bool tensor ``(n,)``)."""
    import torch

    f, y = _inputs(features, labels)
    f = torch.nn.functional.normalize(f - f.mean(0), dim=1)
    similarity = f @ f.T
    similarity.fill_diagonal_(-math.inf)  # an item is not its own neighbour
    k = max(1, min(k, len(f) - 1))
    top, index = similarity.topk(k, dim=1)
    classes = int(y.max()) + 1
    votes = torch.zeros(len(f), classes, dtype=torch.float64)
    votes.scatter_add_(1, y[index], torch.ones_like(top))
    weight = torch.zeros_like(votes).scatter_add_(1, y[index], top)  # |weight| <= k: it only breaks ties of votes
    predicted = (votes + weight / (2 * k + 1)).argmax(1)
    return predicted == y


@dataclass
class ProbeResult:
    """A cross-validated linear probe: mean and standard deviation of the accuracy over the folds, and per item
    whether the fold that held it out classified it right (``correct``)."""

    mean: float
    std: float
    folds: int
    correct: list[bool] = field(default_factory=list)


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> list[list[int]]:
    """``folds`` disjoint index lists, each class dealt round-robin over them after a seeded shuffle."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)].tolist()
        for i in members:
            out[position % folds].append(i)
            position += 1
    return out


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by L-BFGS: the weights and biases."""
    import torch

    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=200, history_size=10,  # scipy's default
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + l2 * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe_accuracy(features: Any, labels: Any, folds: int = 5, l2: float = 1e-3, seed: int = 0
                          ) -> ProbeResult:
    """Stratified ``folds``-fold accuracy of multinomial logistic regression (weight decay ``l2`` on the mean loss)
    on features standardised with each training fold's statistics. Fewer folds are used when the rarest class has
    fewer items than ``folds`` (at least 2)."""
    import torch

    f, y = _inputs(features, labels)
    rarest = int(torch.bincount(y).masked_fill(torch.bincount(y) == 0, len(y)).min())
    folds = max(2, min(folds, rarest))
    classes = int(y.max()) + 1
    scores = []
    correct = [False] * len(y)
    for held in stratified_folds(y, folds, seed):
        test = torch.zeros(len(y), dtype=torch.bool)
        test[held] = True
        train_f = f[~test]
        mean, std = train_f.mean(0), train_f.std(0, unbiased=False).clamp_min(1e-8)
        train_x, test_x = (train_f - mean) / std, (f[test] - mean) / std
        if train_x.shape[1] > train_x.shape[0]:
            # wider than the fold is long: the L2-regularised solution lies in the span of the training rows
            # (the representer theorem), so fitting in the coordinates of that span gives the same predictions,
            # at the cost of n dimensions instead of d
            basis = torch.linalg.qr(train_x.T).Q  # (d, n): orthonormal columns spanning the training rows
            train_x, test_x = train_x @ basis, test_x @ basis
        weight, bias = _fit_logistic(train_x, y[~test], classes, l2)
        with torch.no_grad():
            right = (test_x @ weight + bias).argmax(1) == y[test]
        scores.append(float(right.double().mean()))
        for i, r in zip(torch.nonzero(test).flatten().tolist(), right.tolist()):
            correct[i] = bool(r)
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return ProbeResult(mean, std, folds, correct)


# ---------------------------------------------------------------- domain shift


@dataclass
class ShiftResult:
    """A two-sample test between target and reference features: the unbiased squared MMD under a Gaussian kernel
    (bandwidth: the median pairwise distance of the pooled sample), its permutation p-value, and the sizes."""

    mmd2: float
    p_value: float
    permutations: int
    target: int
    reference: int


def mmd_test(target: Any, reference: Any, permutations: int = 500, seed: int = 0) -> ShiftResult:
    """Maximum mean discrepancy (Gretton et al., JMLR 2012) between two samples of features, with a permutation test:
    the p-value is ``(1 + #{permuted MMD^2 >= observed}) / (1 + permutations)``, the share of random relabellings of
    the pooled sample that look at least as different as the two samples do. Features are scaled by the pooled
    sample's overall standard deviation first (the kernel's bandwidth is then comparable between backbones)."""
    import torch

    x = torch.as_tensor(target).detach().to("cpu", torch.float64)
    y = torch.as_tensor(reference).detach().to("cpu", torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"both samples must be (n, d) with the same d, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each sample needs at least two items")
    pooled = torch.cat([x, y])
    pooled = (pooled - pooled.mean(0)) / pooled.std().clamp_min(1e-12)
    distance = torch.cdist(pooled, pooled).pow(2)
    upper = distance[torch.triu(torch.ones_like(distance, dtype=torch.bool), diagonal=1)]
    bandwidth = float(upper.median().clamp_min(1e-12))
    kernel = torch.exp(-distance / bandwidth)
    n = len(x)
    generator = torch.Generator().manual_seed(seed)

    def statistic(order: torch.Tensor) -> float:
        k = kernel[order][:, order]
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
        m = len(k) - n
        return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                     + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())

    observed = statistic(torch.arange(len(pooled)))
    beyond = sum(statistic(torch.randperm(len(pooled), generator=generator)) >= observed for _ in range(permutations))
    return ShiftResult(observed, (1 + beyond) / (1 + permutations), permutations, n, len(y))
