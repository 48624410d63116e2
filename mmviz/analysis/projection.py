"""2-D projections of per-epoch features, kept in a stable frame across epochs.

Estimators in the scikit-learn style (``__init__`` stores, ``fit`` learns, learned attributes end in ``_``):

- :class:`PCAProjection` is fitted once on a *reference* epoch and then projects every epoch onto the same axes,
  so the PCA view does not jump from epoch to epoch.
- :class:`ProcrustesAlignment` maps one embedding onto another over the same samples with a rotation (or
  reflection), a uniform scale and a translation; :func:`align_sequence` chains the rotation over successive
  epochs and gives each epoch the spread of its own PCA view, which is how independently fitted UMAP embeddings are
  shown in one frame.
- :class:`UMAPProjection` runs umap-learn on one epoch; :class:`AlignedUMAPProjection` runs ``umap.AlignedUMAP``
  over a whole run, related epoch to epoch by the fixed probe set (:func:`compute_relations`).

umap is imported inside ``fit`` only: importing it costs seconds and its first fit compiles numba code, which is
why UMAP runs in the projection worker (:mod:`mmviz.analysis.worker`) and never in the page script.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Self

import numpy as np

from mmviz.errors import ConfigError


def _as_matrix(x: np.ndarray, name: str = "X") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features); got shape {x.shape}.")
    return x


def _check_fitted(estimator: object, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise RuntimeError(f"This {type(estimator).__name__} is not fitted yet; call fit() first.")


class PCAProjection:
    """PCA with a deterministic sign per axis, fitted on one (reference) epoch and applied to any epoch.

    The axes are the top eigenvectors of the ``(D, D)`` covariance, computed with a single BLAS thread: for a probe
    set (N of a few thousand, D of a few hundred) that takes milliseconds, while a threaded SVD on a busy machine can
    take a second, which the page cannot afford.

    Args:
        n_components: output dimensions.

    Attributes:
        mean_: feature means of the reference data ``(D,)``.
        components_: principal axes ``(n_components, D)``; each axis' largest loading is positive.
        explained_variance_ratio_: share of the reference variance per axis.
    """

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def fit(self, x: np.ndarray) -> Self:
        """Learn the axes from ``x`` ``(N, D)``."""
        from scipy.linalg import eigh
        from threadpoolctl import threadpool_limits

        x = _as_matrix(x)
        d = x.shape[1]
        k = min(self.n_components, d)
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        with threadpool_limits(limits=1, user_api="blas"):
            cov = centred.T @ centred
            values, vectors = eigh(cov, subset_by_index=[d - k, d - 1])
        order = np.argsort(values)[::-1]
        values, components = np.clip(values[order], 0.0, None), vectors[:, order].T
        signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
        components = components * np.where(signs == 0, 1.0, signs)[:, None]
        if k < self.n_components:  # fewer features than axes: pad with zero axes
            components = np.vstack([components, np.zeros((self.n_components - k, d))])
        self.components_ = components
        total = float(np.trace(cov))
        ratio = values / total if total > 0 else np.zeros(k)
        self.explained_variance_ratio_ = np.concatenate([ratio, np.zeros(self.n_components - k)])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project ``x`` ``(N, D)`` onto the fitted axes: ``(N, n_components)``."""
        _check_fitted(self, "components_")
        x = _as_matrix(x)
        if x.shape[1] != self.components_.shape[1]:
            raise ValueError(f"X has {x.shape[1]} features; this PCA was fitted on {self.components_.shape[1]}.")
        return (x - self.mean_) @ self.components_.T

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """Fit on ``x`` and project it."""
        return self.fit(x).transform(x)


def project_epochs_pca(features: dict[int, np.ndarray], reference_epoch: int, n_components: int = 2):
    """Project every epoch's features with one PCA fitted on ``reference_epoch``.

    Returns:
        ``(coords, pca)``: ``{epoch: (N, n_components)}`` and the fitted :class:`PCAProjection`.
    """
    if reference_epoch not in features:
        raise KeyError(f"Reference epoch {reference_epoch} is not among the epochs {sorted(features)}.")
    pca = PCAProjection(n_components).fit(features[reference_epoch])
    return {epoch: pca.transform(x) for epoch, x in features.items()}, pca


class ProcrustesAlignment:
    """Orthogonal Procrustes with scaling and translation: learns ``target ~ scale * source @ R + t``.

    Both embeddings hold the same samples in the same row order (the fixed probe set). ``R`` is orthogonal
    (``scipy.linalg.orthogonal_procrustes``), so a reflection is allowed: the sign of a UMAP or PCA axis carries no
    meaning.

    Args:
        scaling: ``'least_squares'`` (default) takes the scale that minimises the residual; it is the spreads' ratio
            times how well the two layouts agree, so a source that only partly matches its target comes out
            *smaller*. ``'spread'`` takes the spreads' ratio (the aligned source has the target's root-mean-square
            spread), which is what a display needs: chaining least-squares fits over epochs shrinks every further
            epoch by the agreement factor again, and a run's UMAP view collapsed to a dot that way.

    Attributes:
        rotation_: ``R`` ``(d, d)``; scale_: the uniform scale; translation_: ``t`` ``(d,)``.
        disparity_: residual sum of squares after alignment over the target's total sum of squares (0 = exact).
    """

    def __init__(self, scaling: str = "least_squares") -> None:
        if scaling not in ("least_squares", "spread"):
            raise ValueError(f"scaling must be 'least_squares' or 'spread'; got {scaling!r}.")
        self.scaling = scaling

    def fit(self, source: np.ndarray, target: np.ndarray) -> Self:
        """Learn the map from ``source`` ``(N, d)`` onto ``target`` ``(N, d)``."""
        source, target = _as_matrix(source, "source"), _as_matrix(target, "target")
        if source.shape != target.shape:
            raise ValueError(f"source {source.shape} and target {target.shape} must have the same shape.")
        mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
        a, b = source - mu_s, target - mu_t
        norm_a = float((a**2).sum())
        if norm_a == 0.0:  # all source points coincide: only the translation is defined
            self.rotation_, self.scale_ = np.eye(source.shape[1]), 1.0
        else:
            from scipy.linalg import orthogonal_procrustes  # here: the dashboard's other pages need no scipy (~0.13 s)

            self.rotation_, singular_sum = orthogonal_procrustes(a, b)
            if self.scaling == "spread":
                self.scale_ = float(np.sqrt((b**2).sum() / norm_a))
            else:
                self.scale_ = float(singular_sum) / norm_a
        self.translation_ = mu_t - self.scale_ * mu_s @ self.rotation_
        residual = float(((self.transform(source) - target) ** 2).sum())
        total = float((b**2).sum())
        self.disparity_ = residual / total if total > 0 else 0.0
        return self

    def transform(self, source: np.ndarray) -> np.ndarray:
        """Apply the learned map to ``source`` ``(N, d)``."""
        _check_fitted(self, "rotation_")
        return self.scale_ * _as_matrix(source, "source") @ self.rotation_ + self.translation_

    def fit_transform(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Fit and return ``source`` aligned onto ``target``."""
        return self.fit(source, target).transform(source)


def align_sequence(
    embeddings: Sequence[np.ndarray], anchor: np.ndarray | None = None, references: Sequence[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Align successive embeddings of the same samples into one frame (each rotated onto the previous, aligned one).

    Each embedding is rotated (or reflected) onto the previous aligned one, so the picture does not spin from epoch to
    epoch. Its size and position are never taken from that fit: a least-squares scale shrinks an embedding by how
    little it agrees with the previous one, and chained over a run's epochs that collapsed the later ones to a dot.
    Instead each embedding gets the root-mean-square spread and the centre of its own ``references[i]`` (e.g. that
    epoch's PCA view, so UMAP replaces PCA at the same size), or, without references, those of its target.

    Args:
        embeddings: per epoch ``(N, d)``, in epoch order.
        anchor: what the first embedding is rotated onto (e.g. the PCA view of that epoch, so that UMAP replaces
            PCA without flipping); the first keeps its orientation when ``None``.
        references: per epoch ``(N, d)`` whose spread and centre each aligned embedding takes (same length as
            ``embeddings``).
    """
    if references is not None and len(references) != len(embeddings):
        raise ValueError(f"{len(references)} references for {len(embeddings)} embeddings; give one per embedding.")
    out: list[np.ndarray] = []
    for i, y in enumerate(embeddings):
        y = np.asarray(y, np.float64)
        target = anchor if i == 0 else out[-1]
        if target is None:
            rotated = y - y.mean(axis=0)
        else:
            rotation = ProcrustesAlignment("spread").fit(y, target).rotation_
            rotated = (y - y.mean(axis=0)) @ rotation
        size = references[i] if references is not None else target
        if size is None:
            out.append(y)
            continue
        size = _as_matrix(size, "reference")
        centred = size - size.mean(axis=0)
        spread, own = float(np.sqrt((centred**2).sum(axis=1).mean())), float(np.sqrt((rotated**2).sum(axis=1).mean()))
        out.append(rotated * (spread / own if own > 0 else 1.0) + size.mean(axis=0))
    return out


def compute_relations(indices: Sequence[np.ndarray]) -> list[dict[int, int]]:
    """AlignedUMAP relations between successive epochs: row ``i`` of epoch ``t`` -> the row with the same sample.

    For the fixed probe set (the same samples in the same order every epoch) each map is the identity.

    Args:
        indices: per epoch the absolute sample indices ``(N_t,)`` of the snapshot rows.
    """
    relations = []
    for prev, nxt in zip(indices[:-1], indices[1:], strict=True):
        where = {int(s): j for j, s in enumerate(np.asarray(nxt))}
        relations.append({i: where[int(s)] for i, s in enumerate(np.asarray(prev)) if int(s) in where})
    return relations


def compute_knn(x: np.ndarray, n_neighbors: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row (itself first): ``(indices (N, k), distances (N, k))``.

    sklearn's brute-force search is BLAS-fast for a probe set of a few thousand points; umap's own small-data path
    calls a Python-level metric per pair and takes seconds.
    """
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=n_neighbors, metric=metric, algorithm="brute").fit(x)
    dist, idx = nn.kneighbors(x)
    return idx.astype(np.int64), dist.astype(np.float32)


def compute_knn_graph(x: np.ndarray, n_neighbors: int, metric: str = "euclidean"):
    """A symmetric sparse kNN distance matrix (no self loops) that umap accepts as ``metric='precomputed'``."""
    import scipy.sparse as sp

    idx, dist = compute_knn(x, n_neighbors + 1, metric)
    n = len(x)
    rows = np.repeat(np.arange(n), n_neighbors)
    # distances of exact duplicates are kept as a tiny positive number so the sparse matrix stores them
    values = np.maximum(dist[:, 1:].ravel().astype(np.float64), 1e-9)
    graph = sp.csr_matrix((values, (rows, idx[:, 1:].ravel())), shape=(n, n))
    graph = graph.maximum(graph.T).tocsr()
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    return graph


_METRICS = ("euclidean", "cosine")


def _check_umap_params(owner: str, n_neighbors: int, min_dist: float, n_epochs: int, metric: str) -> None:
    checks = [
        ("n_neighbors", n_neighbors, isinstance(n_neighbors, int) and 2 <= n_neighbors <= 200, "an int in [2, 200]"),
        ("min_dist", min_dist, isinstance(min_dist, (int, float)) and 0.0 <= min_dist <= 1.0, "a float in [0, 1]"),
        ("n_epochs", n_epochs, isinstance(n_epochs, int) and 10 <= n_epochs <= 2000, "an int in [10, 2000]"),
        ("metric", metric, metric in _METRICS, f"one of {', '.join(_METRICS)}"),
    ]
    for name, value, ok, what in checks:
        if not ok:
            raise ConfigError(f"The {name!r} parameter of {owner} must be {what}. Got {value!r} instead.")


class UMAPProjection:
    """UMAP of one epoch's features (umap-learn on an exact kNN graph; seeded, so the result is reproducible).

    Args:
        n_neighbors: size of the local neighbourhood (larger = more global structure).
        min_dist: how tightly points may pack in the embedding.
        n_epochs: optimisation epochs (200 is umap's default for large data and ample for a probe set).
        metric: ``'euclidean'`` or ``'cosine'``.
        random_state: seed (a seeded UMAP runs single-threaded but gives the same picture every time).

    Attributes:
        embedding_: ``(N, 2)``.
    """

    def __init__(
        self, n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int = 200, metric: str = "euclidean",
        random_state: int = 0,
    ) -> None:  # fmt: skip
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.metric = metric
        self.random_state = random_state

    def fit(self, x: np.ndarray) -> Self:
        """Embed ``x`` ``(N, D)``."""
        _check_umap_params(type(self).__name__, self.n_neighbors, self.min_dist, self.n_epochs, self.metric)
        x = _as_matrix(x).astype(np.float32)
        if len(x) < 4:
            raise ValueError(f"UMAP needs at least 4 samples; got {len(x)}.")
        k = min(self.n_neighbors, len(x) - 1)
        import umap

        with warnings.catch_warnings():  # "transform unavailable without a search index", n_jobs notes, ...
            warnings.simplefilter("ignore")
            reducer = umap.UMAP(
                n_neighbors=k, min_dist=self.min_dist, n_epochs=self.n_epochs, random_state=self.random_state,
                precomputed_knn=(*compute_knn(x, k, self.metric), None), metric=self.metric,
            )  # fmt: skip
            self.embedding_ = np.asarray(reducer.fit_transform(x), dtype=np.float32)
        return self

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """Embed ``x`` and return ``(N, 2)``."""
        return self.fit(x).embedding_


class AlignedUMAPProjection:
    """``umap.AlignedUMAP`` over every epoch of a run, related by the fixed probe set (identity maps).

    Each epoch is embedded from an exact kNN graph (passed as a precomputed sparse distance matrix); AlignedUMAP then
    optimises all epochs together, pulling each sample towards its position in the neighbouring epochs.

    Args:
        n_neighbors, min_dist, n_epochs, metric, random_state: as in :class:`UMAPProjection`.
        alignment_regularisation: strength of the pull between epochs.
        alignment_window_size: how many neighbouring epochs pull on each other.

    Attributes:
        embeddings_: per epoch ``(N_t, 2)``; relations_: the maps from :func:`compute_relations`.
    """

    def __init__(
        self, n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int = 200, metric: str = "euclidean",
        random_state: int = 0, alignment_regularisation: float = 0.01, alignment_window_size: int = 2,
    ) -> None:  # fmt: skip
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.metric = metric
        self.random_state = random_state
        self.alignment_regularisation = alignment_regularisation
        self.alignment_window_size = alignment_window_size

    def fit(self, xs: Sequence[np.ndarray], indices: Sequence[np.ndarray] | None = None) -> Self:
        """Embed every epoch's ``(N_t, D)`` features; ``indices`` are their sample indices (same order if None)."""
        _check_umap_params(type(self).__name__, self.n_neighbors, self.min_dist, self.n_epochs, self.metric)
        xs = [_as_matrix(x).astype(np.float32) for x in xs]
        if indices is None:
            indices = [np.arange(len(x)) for x in xs]
        self.relations_ = compute_relations(indices)
        if len(xs) == 1:  # nothing to align: a plain UMAP
            params = {k: getattr(self, k) for k in ("n_neighbors", "min_dist", "n_epochs", "metric", "random_state")}
            self.embeddings_ = [UMAPProjection(**params).fit_transform(xs[0])]
            return self
        k = min(self.n_neighbors, *(len(x) - 2 for x in xs))
        if k < 2:
            raise ValueError("AlignedUMAP needs at least 4 samples per epoch.")
        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reducer = umap.AlignedUMAP(
                n_neighbors=k, min_dist=self.min_dist, n_epochs=self.n_epochs, metric="precomputed",
                random_state=self.random_state, alignment_regularisation=self.alignment_regularisation,
                alignment_window_size=self.alignment_window_size,
            )  # fmt: skip
            reducer.fit([compute_knn_graph(x, k, self.metric) for x in xs], relations=self.relations_)
        self.embeddings_ = [np.asarray(e, dtype=np.float32) for e in reducer.embeddings_]
        return self

    def fit_transform(self, xs: Sequence[np.ndarray], indices: Sequence[np.ndarray] | None = None) -> list:
        """Fit and return the per-epoch embeddings."""
        return self.fit(xs, indices).embeddings_
