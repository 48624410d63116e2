"""Pure maths behind the probes: gradient norms, confidence scores, class geometry, separability, probes.

Every function here is stateless and deterministic (fixed seeds, no global random state). Tensors document
their shapes: ``(N, D)`` features, ``(N,)`` integer labels in ``0 .. C - 1``, ``(C, D)`` prototypes.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmviz.scores import confidence_scores


@functools.cache
def _blas_controller(scipy_loaded: bool):
    """A threadpoolctl controller over the BLAS libraries loaded so far (scanning them takes ~1 ms, so it is kept;
    a new one is made once scipy, which brings its own BLAS, has been imported)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_blas_thread():
    """Context manager limiting numpy's / scipy's BLAS to one thread: on these small problems more threads only
    contend with training (and with each other), sometimes by orders of magnitude on a busy machine."""
    return _blas_controller("scipy.linalg" in sys.modules).limit(limits=1, user_api="blas")


# ----------------------------------------------------------------------------------------- gradients


def compute_group_norm(tensors: Sequence[torch.Tensor | None], device: torch.device | None = None) -> torch.Tensor:
    """L2 norm of a group of tensors taken as one vector (``None`` entries skipped), as a 0-d float tensor.

    Stays on the tensors' device (no host sync): per-tensor norms with ``torch._foreach_norm``, then the norm of
    those norms. Used for gradient norms and for distances between parameter sets. An empty group gives 0 on
    ``device``.
    """
    gs = [g for g in tensors if g is not None]
    if not gs:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)).float())


def compute_grad_cosine(
    g1: Sequence[torch.Tensor | None],
    g2: Sequence[torch.Tensor | None],
    eps: float = 1e-12,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Cosine between two gradients given as aligned lists of tensors (``None`` = zero), as a 0-d tensor.

    >>> float(compute_grad_cosine([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]))  # doctest: +ELLIPSIS
    0.7071...
    """
    pairs = [(a, b) for a, b in zip(g1, g2, strict=True) if a is not None and b is not None]
    if not pairs:
        return torch.zeros((), device=device)
    dot = torch.stack([(a.float() * b.float()).sum() for a, b in pairs]).sum()
    n1 = compute_group_norm(g1)
    n2 = compute_group_norm(g2)
    return dot / (n1 * n2).clamp_min(eps)


# ------------------------------------------------------------------------------- confidence scores


def compute_confidence_scores(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """OGM-GE confidence score per modality, ``(M,)``: see :func:`mmviz.scores.confidence_scores`."""
    return confidence_scores(logits, labels)


def compute_score_ratios(scores: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each modality's score over the mean score of the others: ``r_m = s_m / mean_{k != m} s_k``; ``(M,)``.

    With two modalities ``r_a = s_a / s_b`` (OGM-GE's discrepancy ratio).

    >>> [round(r, 4) for r in compute_score_ratios(torch.tensor([2.0, 1.0, 3.0])).tolist()]
    [1.0, 0.4, 2.0]
    """
    m = scores.shape[0]
    others = (scores.sum() - scores) / max(1, m - 1)
    return scores / others.clamp_min(eps)


# ---------------------------------------------------------------------------------- class geometry


def compute_class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes (means) ``(C, D)`` and a ``(C,)`` bool mask of the classes present."""
    x = features.double()
    counts = torch.bincount(labels, minlength=num_classes).double()
    sums = torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels, x)
    present = counts > 0
    return sums / counts.clamp_min(1).unsqueeze(1), present


def compute_ncm_predictions(features: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Nearest-class-mean predictions ``(N,)``: the class whose prototype is closest in Euclidean distance."""
    d = torch.cdist(features.double(), prototypes.double())
    d[:, ~present] = math.inf
    return d.argmin(1)


def compute_ncm_loo_predictions(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Leave-one-out nearest-class-mean predictions ``(N,)`` on one labelled set.

    Each sample is compared with the means of the other classes and with the mean of its own class *without
    itself*: ``x_i - mu_y^(-i) = n_y / (n_y - 1) (x_i - mu_y)``, so no refit is needed. A sample alone in its class
    cannot be assigned to it.
    """
    x = features.double()
    means, present = compute_class_means(x, labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).double()
    d = torch.cdist(x, means).square_()
    d[:, ~present] = math.inf
    n_own = counts[labels]
    idx = labels.unsqueeze(1)
    own = d.gather(1, idx).squeeze(1) * (n_own / (n_own - 1).clamp_min(1)).square()
    own = torch.where(n_own > 1, own, torch.full_like(own, math.inf))
    d.scatter_(1, idx, own.unsqueeze(1))
    return d.argmin(1)


def compute_prototype_stats(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor
) -> dict[str, float]:
    """Class-geometry summary around given prototypes.

    Returns:
        ``intra``: mean distance of a sample to its class prototype; ``inter``: mean distance over pairs of
        (present) prototypes; ``margin``: ``inter / intra`` (scale-free; larger = better separated).
    """
    x = features.double()
    intra = float((x - prototypes.double()[labels]).norm(dim=1).mean())
    p = prototypes.double()[present]
    k = p.shape[0]
    inter = float(torch.pdist(p).mean()) if k > 1 else 0.0
    margin = inter / intra if intra > 0 else (0.0 if inter == 0 else math.inf)
    return {"intra": intra, "inter": inter, "margin": margin}


def compute_prototype_drift(previous: torch.Tensor, current: torch.Tensor, present: torch.Tensor) -> float:
    """Mean L2 distance by which the (present) class prototypes moved between two epochs."""
    if not bool(present.any()):
        return 0.0
    return float((current.double()[present] - previous.double()[present]).norm(dim=1).mean())


# -------------------------------------------------------------------------------------- separability


def compute_fisher_ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Trace of the between-class scatter over the trace of the within-class scatter.

    ``tr(S_B) = sum_c n_c ||mu_c - mu||^2`` and ``tr(S_W) = sum_i ||x_i - mu_{y_i}||^2``: 0 when the class means
    coincide, large when classes are tight and far apart.
    """
    x = features.double()
    num_classes = int(labels.max()) + 1 if labels.numel() else 1
    means, present = compute_class_means(x, labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).double()
    between = float((counts[present] * (means[present] - x.mean(0)).pow(2).sum(1)).sum())
    within = float((x - means[labels]).pow(2).sum())
    return between / within if within > 0 else math.inf


def compute_silhouette(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette coefficient of the partition given by ``labels`` (Euclidean; as ``sklearn.metrics``).

    ``s_i = (b_i - a_i) / max(a_i, b_i)`` with ``a_i`` the mean distance to the other members of its class and
    ``b_i`` the smallest mean distance to another class; ``s_i = 0`` for a sample alone in its class.
    """
    _, y = torch.unique(labels, return_inverse=True)
    k = int(y.max()) + 1
    if k < 2:
        return 0.0
    d = torch.cdist(features.float(), features.float()).double()  # float32 distances, float64 sums
    onehot = F.one_hot(y, k).double()  # (N, K)
    counts = onehot.sum(0)  # (K,)
    per_class = d @ onehot  # (N, K) summed distances to each class
    own = counts[y]
    a = per_class.gather(1, y.unsqueeze(1)).squeeze(1) / (own - 1).clamp_min(1)
    mean_other = per_class / counts
    mean_other.scatter_(1, y.unsqueeze(1), math.inf)
    b = mean_other.min(1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-300)
    s = torch.where(own > 1, s, torch.zeros_like(s))
    return float(s.mean())


def compute_purity(clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Cluster purity: the fraction of samples that belong to the majority class of their cluster."""
    c = np.asarray(clusters).astype(np.int64)
    y = np.asarray(labels).astype(np.int64)
    if c.size == 0:
        return 0.0
    table = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (c, y), 1)
    return float(table.max(1).sum() / c.size)


def scale_to_unit_box(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Min-max scale each dimension to ``[-1, 1]`` (constant dimensions become 0); float32 ``(N, D)``."""
    x = np.asarray(features.cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float32)
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    ok = span > 0
    return np.where(ok, 2.0 * (x - lo) / np.where(ok, span, 1.0) - 1.0, 0.0).astype(np.float32)


def compute_kmeans(
    features: torch.Tensor | np.ndarray,
    num_clusters: int,
    *,
    random_state: int = 0,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[np.ndarray, float]:
    """Lloyd's k-means with k-means++ seeding (one run, own numpy generator): assignments ``(N,)`` and inertia.

    Deterministic for a given ``random_state``; stops when no assignment changes or the centres move less than
    ``tol`` (squared, summed). Empty clusters keep their previous centre. Float32 numpy; callers on a training
    machine should hold :func:`single_blas_thread` (the separability probe does).
    """
    x = np.asarray(features.cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float32)
    n = len(x)
    k = max(1, min(num_clusters, n))
    rng = np.random.default_rng(random_state)
    sq = np.einsum("ij,ij->i", x, x)
    centres = np.repeat(x[rng.integers(n)][None], k, axis=0)
    closest = np.maximum(sq - 2 * x @ centres[0] + centres[0] @ centres[0], 0).astype(np.float64)
    for j in range(1, k):  # k-means++: the next centre is drawn with probability proportional to D(x)^2
        total = closest.sum()
        centres[j] = x[rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)]
        closest = np.minimum(closest, np.maximum(sq - 2 * x @ centres[j] + centres[j] @ centres[j], 0))
    assign, inertia, rows = np.full(n, -1), 0.0, np.arange(n)
    for _ in range(max_iter):
        d = sq[:, None] - 2 * x @ centres.T + np.einsum("ij,ij->i", centres, centres)[None, :]
        new_assign = d.argmin(1)
        inertia = float(np.maximum(d[rows, new_assign], 0).sum(dtype=np.float64))
        onehot = np.zeros((n, k), dtype=np.float32)
        onehot[rows, new_assign] = 1.0
        counts = onehot.sum(0)
        nonempty = counts > 0
        moved = centres.copy()
        moved[nonempty] = (onehot.T @ x)[nonempty] / counts[nonempty, None]
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        done = np.array_equal(new_assign, assign) or shift <= tol
        assign = new_assign
        if done:
            break
    return assign, inertia


def compute_kmeans_purity(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    num_clusters: int,
    *,
    random_state: int = 0,
    n_init: int = 1,
    max_iter: int = 100,
) -> float:
    """K-means purity of Diagnosing & Re-learning (Wei et al., ECCV 2024).

    Features are min-max scaled to ``[-1, 1]`` per dimension, clustered with k-means (``K = num_clusters``,
    k-means++ seeding, ``n_init`` runs with seeds ``random_state + i``, the lowest inertia kept), and scored with
    :func:`compute_purity` against the true labels.
    """
    x = scale_to_unit_box(features)
    best, best_inertia = None, np.inf
    for i in range(n_init):
        assign, inertia = compute_kmeans(x, num_clusters, random_state=random_state + i, max_iter=max_iter)
        if best is None or inertia < best_inertia:
            best, best_inertia = assign, inertia
    return compute_purity(best, np.asarray(labels))


# ------------------------------------------------------------------------------------- linear probe


def compute_linear_probe_accuracy(
    train_x: torch.Tensor | np.ndarray,
    train_y: torch.Tensor | np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: torch.Tensor | np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 100,
    random_state: int = 0,
) -> float:
    """Accuracy on ``test`` of a logistic-regression probe fitted on frozen ``train`` features.

    Features are standardised with the train mean and standard deviation; the probe is scikit-learn's
    ``LogisticRegression`` (lbfgs, inverse regularisation ``c``, at most ``max_iter`` iterations, fixed
    ``random_state``), fitted in float32 with one BLAS thread (many threads only contend on small problems).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    xtr, xte = np.asarray(train_x, dtype=np.float32), np.asarray(test_x, dtype=np.float32)
    ytr, yte = np.asarray(train_y), np.asarray(test_y)
    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0])) if len(ytr) else 0.0
    mu, sd = xtr.mean(0), xtr.std(0)
    sd[sd == 0] = 1.0
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=random_state)
    with warnings.catch_warnings(), single_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((xtr - mu) / sd, ytr)
        return float(np.mean(clf.predict((xte - mu) / sd) == yte))
