"""K-means purity (Diagnosing & Re-learning, Wei et al., ECCV 2024): one implementation, in numpy.

Re-learning's diagnosis and the ``separability`` probe both call :func:`compute_kmeans_purity`, so the number a
method acts on is the number the dashboard shows. k-means is run with several restarts (``n_init``; the lowest
inertia kept): with one restart purity jumps between epochs and exact copies of a modality differ by several
points (tests/measures: the duplicate-modality case).

The algorithm is scikit-learn's ``KMeans`` (the version this project used until issue 15), written in numpy so
that the analysis process needs no scikit-learn: importing it costs ~1.2 s of CPU per process (pandas and
scipy.stats come with it), more than the analysis of a whole demo run. Same steps, same random stream: the data
centred; per restart greedy k-means++ seeding (``2 + int(ln K)`` candidates per centre, drawn with
``numpy.random.RandomState(random_state)`` exactly as scikit-learn draws them, squared distances in float64);
Lloyd iterations in the data's float32 until the labels stop changing or the centres move by less than
``1e-4`` times the mean per-dimension variance (at most 300 iterations; an empty cluster takes the point farthest
from its centre); the restart with the lowest inertia kept unless it is the same partition. Float rounding
(BLAS summation order) can still differ, so a near-tie may go the other way: the same labels as scikit-learn in
every synthetic case of tests/measures; on mfeat's raw views (24 cases) the same purity in 23 (0.62 against 0.61).
"""

from __future__ import annotations

import numpy as np
import torch

from mmviz.measures.linear import single_blas_thread

# Restarts by default: enough for two copies of a modality to agree within 0.03 and for purity to move by <= 0.03
# across seeds (tests/measures; on those tests 2 restarts already give the spread of 10, 1 does not). With
# scikit-learn each restart cost ~2 ms of per-call overhead on a 300-sample val set: 10 restarts on 3 views cost more
# than a 33 ms mfeat epoch, so the analysis process fell behind training (issue 15).
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


KMEANS_MAX_ITER = 300
KMEANS_TOL = 1e-4


def _squared_distances(a: np.ndarray, a_sq: np.ndarray, x_t: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), N)`` in float64 between rows ``a`` (float64) and the columns of ``x_t``
    (the samples transposed, float64), from precomputed squared norms, clipped at 0."""
    d = a_sq[:, None] - 2.0 * (a @ x_t) + x_sq[None, :]
    return np.maximum(d, 0.0, out=d)


def _kmeans_plusplus(x: np.ndarray, x_sq: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """Greedy k-means++ seeding: the first centre uniformly at random, then per centre ``2 + int(ln k)`` candidates
    drawn with probability proportional to the squared distance to the nearest centre so far, keeping the
    candidate that lowers the total squared distance most. Returns ``(k, D)`` centres (rows of ``x``)."""
    n = len(x)
    trials = 2 + int(np.log(k))
    weight = np.ones(n, dtype=x.dtype)
    first = rng.choice(n, p=weight / weight.sum())
    centers = np.empty((k, x.shape[1]), dtype=x.dtype)
    centers[0] = x[first]
    x64 = x.astype(np.float64)  # distances in float64 (converted once: the same values as converting per call)
    x_t = x64.T
    closest = _squared_distances(x64[[first]], x_sq[[first]], x_t, x_sq)[0]
    potential = closest.sum()
    for c in range(1, k):
        draws = rng.uniform(size=trials) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        dist = np.minimum(closest, _squared_distances(x64[candidates], x_sq[candidates], x_t, x_sq))
        pots = dist.sum(1)
        best = int(np.argmin(pots))
        potential, closest = pots[best], dist[best]
        centers[c] = x[candidates[best]]
    return centers


def _assign(x: np.ndarray, x_sq: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's nearest centre ``(N,)`` and its squared distance ``(N,)`` (float32 arithmetic; ``x_sq``: the
    rows' squared norms ``(x * x).sum(1)``, computed once per clustering)."""
    d = (centers * centers).sum(1)[None, :] - 2.0 * (x @ centers.T)
    labels = d.argmin(1)
    dist = np.maximum(d[np.arange(len(x)), labels] + x_sq, 0.0)
    return labels, dist


def _lloyd(x: np.ndarray, centers: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
    """Lloyd iterations from ``centers``; returns the labels of the final centres and the inertia."""
    k = len(centers)
    labels_old = np.full(len(x), -1)
    strict = False
    x_sq = (x * x).sum(1)
    for _ in range(KMEANS_MAX_ITER):
        labels, dist = _assign(x, x_sq, centers)
        counts = np.bincount(labels, minlength=k)
        sums = _class_sums(x, labels, k)
        empty = np.flatnonzero(counts == 0)
        if empty.size:  # an empty cluster takes the farthest points from their centres
            far = np.argsort(-dist, kind="stable")[: empty.size]
            for c, i in zip(empty, far, strict=False):
                sums[labels[i]] -= x[i]
                counts[labels[i]] -= 1
                sums[c], counts[c] = x[i], 1
        new = sums / np.maximum(counts, 1)[:, None].astype(x.dtype)
        new[counts == 0] = centers[counts == 0]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels, dist = _assign(x, x_sq, centers)
    else:
        dist = _assign(x, x_sq, centers)[1]
    return labels, float(dist.sum())


def _class_sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums of the rows of ``x`` ``(k, D)`` (a one-hot matrix product)."""
    onehot = np.zeros((k, len(x)), dtype=x.dtype)
    onehot[labels, np.arange(len(x))] = 1.0
    return onehot @ x


def _same_partition(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether two labelings are the same partition up to a renaming of the clusters."""
    mapping = np.full(k, -1)
    for i, j in zip(a, b, strict=True):
        if mapping[i] == -1:
            mapping[i] = j
        elif mapping[i] != j:
            return False
    return True


def compute_kmeans_clusters(
    features: torch.Tensor | np.ndarray, num_clusters: int, *, random_state: int = 0, n_init: int = KMEANS_N_INIT
) -> np.ndarray:
    """K-means assignments ``(N,)`` of ``features`` (as given, no scaling): k-means++ seeding, ``n_init``
    restarts, fixed ``random_state`` (the module docstring says how; deterministic, one BLAS thread)."""
    x = as_numpy(features)
    k = max(1, min(num_clusters, len(x)))
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.RandomState(random_state)
    with single_blas_thread():
        x = x - x.mean(0)
        x_sq = (x.astype(np.float64) ** 2).sum(1)
        tol = float(np.mean(np.var(x, axis=0))) * KMEANS_TOL
        best: tuple[float, np.ndarray] | None = None
        for _ in range(max(1, n_init)):
            labels, inertia = _lloyd(x, _kmeans_plusplus(x, x_sq, k, rng), tol)
            if best is None or (inertia < best[0] and not _same_partition(labels, best[1], k)):
                best = (inertia, labels)
    return best[1].astype(np.int64)


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
