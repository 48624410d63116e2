"""Lesson 5's embeddings: each modality's last-epoch snapshot features, projected to 2-D with PCA.

Reads the ``snapshot`` artifacts through :mod:`mmviz.analysis.snapshots` and projects with
:class:`mmviz.analysis.projection.PCAProjection` (fitted on that run's last epoch: each panel has its own axes,
since two runs' encoders share no feature space).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mmviz.analysis.projection import PCAProjection
from mmviz.analysis.snapshots import load_snapshot, load_snapshot_index

MODALITIES = ("a", "b")


def load_last_embedding(store: Any, run_id: str) -> pd.DataFrame | None:
    """Tidy rows ``modality, x, y, label`` (PCA of each modality's last-epoch features), or None without snapshot."""
    index = load_snapshot_index(store, run_id)
    if index.empty:
        return None
    last = index.iloc[-1]
    snap = load_snapshot(last["path"], int(last["epoch"]))
    parts = []
    for m in MODALITIES:
        if m not in snap.features:
            continue
        xy = PCAProjection(2).fit_transform(snap.features[m].astype(np.float64))
        parts.append(pd.DataFrame({"modality": m, "x": xy[:, 0], "y": xy[:, 1], "label": snap.labels}))
    return pd.concat(parts, ignore_index=True) if parts else None


def compute_class_separation(xy: np.ndarray, labels: np.ndarray) -> float:
    """Between-class share of the variance of 2-D points: 0 = class colours on top of each other, 1 = every point
    on its class centre (how separated the colours in a scatter look).

    >>> compute_class_separation(np.array([[0.0, 0], [0, 0], [1, 1], [1, 1]]), np.array([0, 0, 1, 1]))
    1.0
    """
    xy = np.asarray(xy, dtype=np.float64)
    labels = np.asarray(labels)
    total = float(((xy - xy.mean(0)) ** 2).sum())
    if total <= 0:
        return 0.0
    within = sum(float(((xy[labels == c] - xy[labels == c].mean(0)) ** 2).sum()) for c in np.unique(labels))
    return 1.0 - within / total
