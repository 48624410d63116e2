"""Class separability of each modality's val features: k-means purity, silhouette and a Fisher ratio."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmviz.contracts import StepInfo
from mmviz.measures import (
    compute_fisher_ratio,
    compute_kmeans_purity,
    compute_silhouette,
    concat_features,
    single_blas_thread,
)
from mmviz.probes.base import AnalysisProbe
from mmviz.probes.common import record_features, val_arrays
from mmviz.probes.configs import SeparabilityConfig


class SeparabilityProbe(AnalysisProbe):
    """How separable the classes are in each modality's val features, and in the fused (concatenated) features.

    ``sep/purity/<m>`` is the learning-state measure of Diagnosing & Re-learning (Wei et al., ECCV 2024): the
    features are min-max scaled to [-1, 1] per dimension, clustered by k-means with K = number of classes (fixed
    seed, scikit-learn's k-means++ / Lloyd algorithm in numpy with ``kmeans_n_init`` restarts, default 3), and purity is the fraction of samples in their cluster's majority class — it tells an under-trained
    encoder from an intrinsically weak modality better than an accuracy gap does. ``sep/silhouette/<m>`` is the
    mean silhouette of the true-class partition (Euclidean, in [-1, 1]); ``sep/fisher/<m>`` the trace of the
    between-class scatter over the trace of the within-class scatter. k-means and silhouette make this the
    costliest epoch measure (~10 ms on the demo); default: every epoch (set ``every_n_epochs`` or ``max_overhead``
    to thin it out on long runs).
    """

    config_cls = SeparabilityConfig
    cost_hint = 0.01

    def measure(self, epoch: int, info: StepInfo, evaluation: Any, record: dict) -> dict[str, Any]:
        return val_arrays(self.ctx, evaluation)

    def analyse(self, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[str, float]]:
        cfg = self.config
        feats, labels = record_features(meta, arrays)
        feats["fused"] = concat_features(feats, meta["modalities"])
        keep = np.arange(len(labels))
        if len(keep) > cfg.max_samples:
            keep = np.sort(np.random.default_rng(cfg.seed).choice(len(keep), cfg.max_samples, replace=False))
        y = labels[keep]
        rows = []
        with single_blas_thread():
            for key, z in feats.items():
                zs = z[keep]
                purity = compute_kmeans_purity(
                    zs.numpy(), y.numpy(), meta["num_classes"], random_state=cfg.seed, n_init=cfg.kmeans_n_init
                )
                rows.append((f"sep/purity/{key}", purity))
                rows.append((f"sep/silhouette/{key}", compute_silhouette(zs, y)))
                rows.append((f"sep/fisher/{key}", compute_fisher_ratio(z, labels)))
        return rows
