"""Class geometry of a feature set: class means (prototypes), nearest-class-mean predictions, spread, drift,
the Fisher ratio and the silhouette. Features are ``(N, D)``, labels ``(N,)`` integers in ``0 .. C - 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def compute_class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means (prototypes) ``(C, D)`` and per-class counts ``(C,)``, on the features' device.

    Computed in the features' dtype, at least float32 (pass float64 features for float64 means). A class with no
    sample gets a zero row and count 0 (``counts > 0`` is the mask of the classes present). PMR's prototypes, the
    ``prototypes`` probe and the nearest-class-mean accuracies all use this function.
    """
    x = features if features.dtype in (torch.float32, torch.float64) else features.float()
    labels = labels.to(x.device)
    sums = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=num_classes).to(x.dtype)
    return sums / counts.clamp_min(1).unsqueeze(1), counts


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
    means, counts = compute_class_means(x, labels, num_classes)
    d = torch.cdist(x, means).square_()
    d[:, counts == 0] = math.inf
    n_own = counts[labels]
    idx = labels.unsqueeze(1)
    own = d.gather(1, idx).squeeze(1) * (n_own / (n_own - 1).clamp_min(1)).square()
    own = torch.where(n_own > 1, own, torch.full_like(own, math.inf))
    d.scatter_(1, idx, own.unsqueeze(1))
    return d.argmin(1)


def compute_ncm_accuracy(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Leave-one-out nearest-class-mean accuracy (PMR's prototype accuracy) of one labelled set."""
    pred = compute_ncm_loo_predictions(features, labels, num_classes)
    return float((pred == labels).double().mean()) if labels.numel() else 0.0


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
    inter = float(torch.pdist(p).mean()) if p.shape[0] > 1 else 0.0
    margin = inter / intra if intra > 0 else (0.0 if inter == 0 else math.inf)
    return {"intra": intra, "inter": inter, "margin": margin}


def compute_prototype_drift(previous: torch.Tensor, current: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean L2 distance by which the (present) class prototypes moved, as a 0-d tensor on their device (0 when
    no class is present); no host sync, so PMR can log it on a GPU step."""
    if present.dtype != torch.bool:
        present = present > 0
    moved = (current[present].double() - previous[present].double()).norm(dim=1)
    return moved.mean() if moved.numel() else torch.zeros((), dtype=torch.float64, device=current.device)


def compute_fisher_ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Trace of the between-class scatter over the trace of the within-class scatter.

    ``tr(S_B) = sum_c n_c ||mu_c - mu||^2`` and ``tr(S_W) = sum_i ||x_i - mu_{y_i}||^2``: 0 when the class means
    coincide, large when classes are tight and far apart.
    """
    x = features.double()
    num_classes = int(labels.max()) + 1 if labels.numel() else 1
    means, counts = compute_class_means(x, labels, num_classes)
    present = counts > 0
    between = float((counts[present] * (means[present] - x.mean(0)).pow(2).sum(1)).sum())
    within = float((x - means[labels]).pow(2).sum())
    return between / within if within > 0 else math.inf


def compute_silhouette(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette coefficient of the partition given by ``labels`` (Euclidean; equals
    ``sklearn.metrics.silhouette_score``, tested, at a fraction of its cost on these sizes).

    ``s_i = (b_i - a_i) / max(a_i, b_i)`` with ``a_i`` the mean distance to the other members of its class and
    ``b_i`` the smallest mean distance to another class; ``s_i = 0`` for a sample alone in its class.
    """
    _, y = torch.unique(labels, return_inverse=True)
    k = int(y.max()) + 1 if y.numel() else 0
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
