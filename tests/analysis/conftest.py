"""Fixtures of the analysis tests: snapshot files in the format the snapshots probe writes."""

from __future__ import annotations

import numpy as np
import pytest


def _write_snapshot(path, n=30, modalities=("a", "b"), dropped=False, seed=0):
    """A snapshot written by the snapshots probe's own writer, so these tests follow its format."""
    from mmviz.measures.record import save_npz

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    arrays = {"index": np.arange(1000, 1000 + n), "label": labels}
    for m in modalities:
        arrays[f"features_{m}"] = rng.normal(size=(n, 8)).astype(np.float16)
    arrays["features_fused"] = np.concatenate([arrays[f"features_{m}"] for m in modalities], axis=1)
    for m in (*modalities, "fused"):
        arrays[f"pred_{m}"] = np.where(rng.random(n) < 0.7, labels, (labels + 1) % 3).astype(np.int16)
    arrays["conf_fused"] = rng.random(n).astype(np.float16)
    if dropped:
        arrays[f"dropped_{modalities[0]}"] = rng.random(n) < 0.3
    save_npz(path, arrays, compress=True)
    return arrays


@pytest.fixture
def write_snapshot():
    """``write_snapshot(path, n=30, modalities=('a', 'b'), dropped=False, seed=0)`` -> the arrays it wrote."""
    return _write_snapshot
