"""Read the per-epoch snapshots that the ``snapshots`` probe writes (features of a fixed probe set).

A snapshot is one ``.npz`` per epoch in ``<run_dir>/snapshots/`` holding, for the same val samples every epoch,
each modality's features, the fused features, labels, predictions and the fused confidence (see
:class:`mmviz.probes.snapshots.SnapshotProbe`). The file's array names are defined once, in
:mod:`mmviz.measures.record`, for the writer and this reader. This module imports numpy and pandas only: the dashboard reads snapshots
without importing torch.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from mmviz.errors import StoreError
from mmviz.measures.record import SNAPSHOT_KIND, SNAPSHOT_NAMES  # noqa: F401  (SNAPSHOT_KIND: re-export)

FUSED = "fused"

_NAMES = SNAPSHOT_NAMES  # the file format, defined once in mmviz.measures.record (the writer uses it too)
_FEATURES_PREFIX = _NAMES["features"].split("{v}")[0]


@dataclasses.dataclass(frozen=True, eq=False)
class Snapshot:
    """One epoch's snapshot of the fixed probe set.

    Attributes:
        epoch: the epoch it was taken at (``None`` when unknown).
        index: absolute sample indices ``(N,)``.
        labels: class labels ``(N,)``.
        features: per view (modalities in the run's order, then ``'fused'``) the features ``(N, D_v)``.
        predictions: per view the predicted class ``(N,)`` (views without predictions are absent).
        confidence: fused confidence ``(N,)`` (max softmax), or ``None``.
        dropped: per view whether the sample was in a dropped batch ``(N,)`` (``'fused'`` = any modality
            dropped); empty when the method drops nothing.
    """

    epoch: int | None
    index: np.ndarray
    labels: np.ndarray
    features: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    confidence: np.ndarray | None
    dropped: dict[str, np.ndarray]

    @property
    def views(self) -> tuple[str, ...]:
        """View names: the modalities in order, then ``'fused'`` (when present)."""
        return tuple(self.features)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in the run's order."""
        return tuple(v for v in self.features if v != FUSED)

    @property
    def n(self) -> int:
        """Number of probe samples ``N``."""
        return int(len(self.index))


def load_snapshot(path: str | Path, epoch: int | None = None) -> Snapshot:
    """Read one snapshot file; raise ``StoreError`` (one sentence) when it is missing or malformed.

    Args:
        path: the ``.npz`` file.
        epoch: the epoch it belongs to (kept on the result; the file does not store it).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except FileNotFoundError as exc:
        raise StoreError(f"Snapshot file {str(path)!r} does not exist; the run folder may have been moved.") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StoreError(f"Snapshot file {str(path)!r} cannot be read ({exc}).") from exc
    missing = [n for n in (_NAMES["index"], _NAMES["label"]) if n not in arrays]
    views = [k[len(_FEATURES_PREFIX) :] for k in arrays if k.startswith(_FEATURES_PREFIX)]
    if missing or not views:
        what = ", ".join(repr(m) for m in missing) or "features"
        raise StoreError(f"Snapshot file {str(path)!r} has no {what} array; found {', '.join(arrays) or 'none'}.")
    views = [v for v in views if v != FUSED] + [v for v in views if v == FUSED]  # fused last
    n = len(arrays[_NAMES["index"]])

    def view_array(pattern: str, view: str) -> np.ndarray | None:
        return arrays.get(_NAMES[pattern].format(v=view))

    features = {v: view_array("features", v) for v in views}
    bad = [v for v, f in features.items() if f.ndim != 2 or len(f) != n]
    if bad:
        raise StoreError(f"Snapshot file {str(path)!r}: features of {bad[0]!r} do not have {n} rows.")
    predictions = {v: p.astype(np.int64) for v in views if (p := view_array("pred", v)) is not None}
    confidence = arrays.get(_NAMES["confidence"])
    dropped = {v: d.astype(bool) for v in views if (d := view_array("dropped_view", v)) is not None}
    if _NAMES["dropped"] in arrays:
        dropped[FUSED] = arrays[_NAMES["dropped"]].astype(bool)
    elif dropped:
        dropped[FUSED] = np.logical_or.reduce(list(dropped.values()))
    if dropped:  # a modality without its own flag shows the any-modality flag
        dropped = {v: dropped.get(v, dropped[FUSED]) for v in views}
    return Snapshot(
        epoch=epoch,
        index=arrays[_NAMES["index"]].astype(np.int64),
        labels=arrays[_NAMES["label"]].astype(np.int64),
        features=features,
        predictions=predictions,
        confidence=None if confidence is None else confidence.astype(np.float32),
        dropped=dropped,
    )


def load_snapshot_index(store, run_id: str) -> pd.DataFrame:
    """The run's snapshots, one row per epoch: ``epoch``, ``path`` (absolute) and ``meta``, ordered by epoch.

    When an epoch was written twice (a fork replays it), the latest record wins.
    """
    frame = store.load_artifacts(run_id, kind=SNAPSHOT_KIND)
    if frame.empty:
        return pd.DataFrame({"epoch": pd.Series(dtype="int64"), "path": pd.Series(dtype=object), "meta": []})
    frame = frame.dropna(subset=["epoch"]).sort_values(["epoch", "id"]).drop_duplicates("epoch", keep="last")
    folder = store.run_dir(run_id)
    return pd.DataFrame(
        {
            "epoch": frame["epoch"].astype("int64").to_numpy(),
            "path": [str(folder / p) for p in frame["path"]],
            "meta": list(frame["meta"]),
        }
    )


def compute_sample_table(snapshot: Snapshot, positions: np.ndarray | None = None) -> pd.DataFrame:
    """One row per probe sample: ``index``, ``label``, ``pred_<view>`` per view, ``confidence``, ``dropped``.

    Args:
        snapshot: the snapshot.
        positions: row positions to keep (all when ``None``).
    """
    rows = np.arange(snapshot.n) if positions is None else np.asarray(positions, dtype=np.int64)
    table = {"index": snapshot.index[rows], "label": snapshot.labels[rows]}
    for view, pred in snapshot.predictions.items():
        table[f"pred_{view}"] = pred[rows]
    if snapshot.confidence is not None:
        table["confidence"] = np.round(snapshot.confidence[rows].astype(np.float64), 4)
    if snapshot.dropped:
        table["dropped"] = snapshot.dropped[FUSED][rows]
    return pd.DataFrame(table)


def compute_embedding_frame(snapshot: Snapshot, coords: dict[str, np.ndarray]) -> pd.DataFrame:
    """Tidy rows, one per (view, sample): ``view, x, y, index, label, pred, correct, pred_fused, correct_fused,
    confidence, dropped`` (``pred``/``correct``: this view's own prediction; -1 / NaN where there is none).

    Args:
        snapshot: the epoch's snapshot.
        coords: per view the ``(N, 2)`` coordinates of the snapshot rows (views missing here are skipped).
    """
    parts = []
    n = snapshot.n
    fused_pred = snapshot.predictions.get(FUSED)
    for view in snapshot.views:
        if view not in coords:
            continue
        xy = np.asarray(coords[view], dtype=np.float64)
        pred = snapshot.predictions.get(view)
        part = {
            "view": np.full(n, view, dtype=object),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "index": snapshot.index,
            "label": snapshot.labels,
            "pred": pred if pred is not None else np.full(n, -1),
            "correct": (pred == snapshot.labels).astype(float) if pred is not None else np.full(n, np.nan),
            "pred_fused": fused_pred if fused_pred is not None else np.full(n, -1),
            "correct_fused": (fused_pred == snapshot.labels).astype(float) if fused_pred is not None else np.nan,
            "confidence": snapshot.confidence if snapshot.confidence is not None else np.full(n, np.nan),
            "dropped": snapshot.dropped[view] if view in snapshot.dropped else np.zeros(n, dtype=bool),
        }
        parts.append(pd.DataFrame(part))
    columns = ["view", "x", "y", "index", "label", "pred", "correct", "pred_fused", "correct_fused", "confidence",
               "dropped"]  # fmt: skip
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
