"""K-means purity (Diagnosing & Re-learning, Wei et al., ECCV 2024): one implementation, scikit-learn's KMeans.

Re-learning's diagnosis and the ``separability`` probe both call :func:`compute_kmeans_purity`, so the number a
method acts on is the number the dashboard shows. k-means is run with several restarts (``n_init``; the lowest
inertia kept): with one restart purity jumps between epochs and exact copies of a modality differ by several
points (tests/measures: the duplicate-modality case).
"""

from __future__ import annotations

import numpy as np
import torch

from mmviz.measures.linear import single_thread

# Restarts by default: enough for two copies of a modality to agree within 0.03 and for purity to move by <= 0.03
# across seeds (tests/measures; on those tests 2 restarts already give the spread of 10, 1 does not). Each restart
# is ~2 ms of scikit-learn's per-call overhead on a 300-sample val set: 10 restarts on 3 views cost more than a
# 33 ms mfeat epoch, so the analysis process fell behind training (issue 15).
KMEANS_N_INIT = 3


def as_numpy(x: torch.Tensor | np.ndarray, dtype=np.float32) -> np.ndarray:
    """A CPU numpy array of ``x`` (tensors are detached and moved to the host)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def scale_to_unit_box(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Min-max scale each dimension to ``[-1, 1]`` with its own min and max (constant dimensions become 0);
    float32 ``(N, D)``."""
    x = as_numpy(features)
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    ok = span > 0
    return np.where(ok, 2.0 * (x - lo) / np.where(ok, span, 1.0) - 1.0, 0.0).astype(np.float32)


def compute_purity(*, labels: np.ndarray | torch.Tensor, clusters: np.ndarray | torch.Tensor) -> float:
    """Cluster purity ``(1/N) sum_c max_k |{i in c : y_i = k}|``; keyword-only, so the two cannot be swapped.

    >>> compute_purity(labels=np.array([0, 0, 1, 1]), clusters=np.array([0, 0, 0, 1]))
    0.75
    """
    c = as_numpy(clusters, np.int64)
    y = as_numpy(labels, np.int64)
    if c.size == 0:
        return 0.0
    table = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (c, y), 1)
    return float(table.max(1).sum() / c.size)


def compute_kmeans_clusters(
    features: torch.Tensor | np.ndarray, num_clusters: int, *, random_state: int = 0, n_init: int = KMEANS_N_INIT
) -> np.ndarray:
    """K-means assignments ``(N,)`` of ``features`` (as given, no scaling): sklearn's ``KMeans`` (k-means++
    seeding, ``n_init`` restarts, fixed ``random_state``), run with one BLAS / OpenMP thread (deterministic)."""
    from sklearn.cluster import KMeans

    x = as_numpy(features)
    k = max(1, min(num_clusters, len(x)))
    with single_thread():
        return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit_predict(x)


def compute_kmeans_purity(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    num_clusters: int,
    *,
    random_state: int = 0,
    n_init: int = KMEANS_N_INIT,
) -> float:
    """K-means purity: features min-max scaled to ``[-1, 1]`` per dimension (:func:`scale_to_unit_box`),
    clustered with ``K = num_clusters`` (:func:`compute_kmeans_clusters`) and scored against the true labels."""
    y = as_numpy(labels, np.int64)
    if len(y) == 0:
        return 0.0
    clusters = compute_kmeans_clusters(
        scale_to_unit_box(features), num_clusters, random_state=random_state, n_init=n_init
    )
    return compute_purity(labels=y, clusters=clusters)
