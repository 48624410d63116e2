"""Per-series maths behind every chart: x-axis values, debiased EMA smoothing and deterministic down-sampling.

Smoothing is TensorBoard's: an exponential moving average over the points in order (not over x distance),
started at zero and divided by ``1 - weight**n`` so the first points are not pulled towards zero; non-finite
points are passed through and skipped by the average.

Down-sampling keeps the extremes: a series longer than ``max_points`` is cut into buckets of equal point count,
and each bucket keeps its minimum and its maximum (in x order); the first and the last point are always kept. The
bucket size is the smallest power of two that makes at most ``(max_points - 2) // 2`` buckets, and buckets start at
multiples of it, so a series keeps between about half and all of ``max_points`` points. The alignment is what lets
a live view keep the down-sampled series up to date as points arrive (:mod:`mmviz.viz.live_series`): a new point
changes only the last bucket, and when the size doubles two neighbouring buckets merge into one. It is
deterministic (same input, same output), keeps every spike visible, and never samples at random. The raw data
stays exportable as is.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

X_AXES = ("step", "epoch", "wall time")
SMOOTH_ABOVE = 10  # series this short (a few evaluations) are drawn raw: an average of three points misleads
X_TITLES = {"step": "step", "epoch": "epoch", "wall time": "wall time (s since start)"}


@dataclasses.dataclass(frozen=True)
class ChartOptions:
    """What the chart controls choose: x axis, smoothing weight in [0, 1), log-y, points kept per series.

    Smoothing applies to series longer than ``SMOOTH_ABOVE`` points; shorter ones are drawn raw.
    """

    x_axis: str = "step"
    smoothing: float = 0.6
    log_y: bool = False
    max_points: int = 1000

    def __post_init__(self) -> None:
        if self.x_axis not in X_AXES:
            raise ValueError(f"x_axis must be one of {', '.join(X_AXES)}, got {self.x_axis!r}.")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing!r}.")
        if self.max_points < 4:
            raise ValueError(f"max_points must be at least 4, got {self.max_points!r}.")


EMA_RANGE = 1e100  # the largest factor weight**-j a block of the EMA filter reaches: values up to ~1e200 stay finite
EMA_BLOCK_MAX = 4096


class EmaFilter:
    """The exponential moving average ``ema_t = w * ema_{t-1} + (1 - w) * v_t`` (``ema_0 = 0``) of a sequence given
    in pieces, in numpy: the same numbers whether the sequence comes at once or in pieces of any length.

    The points are taken in blocks of ``L`` (aligned to the sequence's start), each closed-form from its start
    state ``s``: at the block's ``j``-th point ``ema = w**j * (s + (1 - w) * c_j)`` with the running sum
    ``c_j = sum_{i <= j} w**-i * v_i``, accumulated in order (``numpy.add.accumulate`` is sequential), so a piece that
    continues a block continues its sum exactly. ``L`` keeps ``w**-L`` under :data:`EMA_RANGE` (float64 holds ~1e308,
    a float32 metric at most 3.4e38); the rounding error stays ~1e-15 of the values' scale over ``1 - w``. (Until
    issue 15 this was ``scipy.signal.lfilter``, whose import took 0.7-0.9 s of the dashboard's first live view.)
    """

    def __init__(self, weight: float) -> None:
        if not 0.0 < weight < 1.0:
            raise ValueError(f"the EMA weight must be in (0, 1), got {weight!r}.")
        self.weight = float(weight)
        self.block = int(min(EMA_BLOCK_MAX, max(1, math.floor(math.log(EMA_RANGE) / -math.log(self.weight)))))
        j = np.arange(1, self.block + 1, dtype=np.float64)
        with np.errstate(under="ignore"):
            self._grow, self._decay = self.weight**-j, self.weight**j  # w**-j and w**j at a block's j-th point
        self.seen = 0  # points taken so far
        self.start = 0.0  # the EMA at the current block's start
        self.sum = 0.0  # the current block's running sum c_j

    def run(self, values: np.ndarray) -> np.ndarray:
        """The EMA at each of ``values`` (finite floats), continuing from the points taken before."""
        v = np.asarray(values, dtype=np.float64)
        out = np.empty(v.size)
        pos = 0
        if self.seen % self.block:  # the rest of the block begun by the points taken before
            pos = self._part(v, out, 0, min(self.block - self.seen % self.block, v.size))
        whole = (v.size - pos) // self.block
        if whole:  # whole blocks at once: their sums in one pass, their start values in a loop over blocks
            end = pos + whole * self.block
            sums = np.add.accumulate(v[pos:end].reshape(whole, self.block) * self._grow, axis=1)
            starts = np.empty(whole)
            keep, last = 1.0 - self.weight, self._decay[-1]
            start = self.start
            for b, total in enumerate(sums[:, -1].tolist()):
                starts[b] = start
                start = last * (start + keep * total)  # the block's last value, as computed below
            out[pos:end] = (self._decay * (starts[:, None] + keep * sums)).reshape(-1)
            self.start, self.sum, self.seen, pos = start, 0.0, self.seen + whole * self.block, end
        if pos < v.size:
            self._part(v, out, pos, v.size - pos)
        return out

    def _part(self, v: np.ndarray, out: np.ndarray, pos: int, take: int) -> int:
        """Take ``v[pos:pos + take]``, all within the current block, into ``out``; return the next position."""
        j0 = self.seen % self.block
        terms = np.empty(take + 1)
        terms[0] = self.sum
        np.multiply(v[pos : pos + take], self._grow[j0 : j0 + take], out=terms[1:])
        sums = np.add.accumulate(terms)[1:]
        out[pos : pos + take] = self._decay[j0 : j0 + take] * (self.start + (1.0 - self.weight) * sums)
        self.seen += take
        if j0 + take == self.block:  # the block is complete: the next one starts from its last value
            self.start, self.sum = float(out[pos + take - 1]), 0.0
        else:
            self.sum = float(sums[-1])
        return pos + take


def compute_debiased_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average of ``values`` (N,); non-finite points pass through.

    >>> compute_debiased_ema(np.array([1.0, 1.0, 1.0]), 0.9).round(6).tolist()
    [1.0, 1.0, 1.0]
    >>> compute_debiased_ema(np.array([0.0, 1.0]), 0.5).round(6).tolist()
    [0.0, 0.666667]
    """
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if weight <= 0.0 or values.size == 0:
        return out
    finite = np.isfinite(values)
    v = values[finite]
    if v.size == 0:
        return out
    out[finite] = debias_ema(EmaFilter(weight).run(v), weight, 0)
    return out


def debias_ema(ema: np.ndarray, weight: float, before: int) -> np.ndarray:
    """``ema / (1 - weight**t)`` for the points ``t = before + 1, ...`` of the average (TensorBoard's debiasing)."""
    with np.errstate(under="ignore"):
        debias = 1.0 - weight ** np.arange(before + 1, before + ema.size + 1, dtype=np.float64)
    return ema / debias


def minmax_buckets(max_points: int) -> int:
    """The most buckets a series down-sampled to ``max_points`` points has (each keeps two points)."""
    return max(1, (max_points - 2) // 2)


def minmax_bucket_size(n: int, buckets: int) -> int:
    """Points per bucket for ``n`` points: the smallest power of two that cuts them into at most ``buckets``."""
    size = 1
    while -(-n // size) > buckets:
        size *= 2
    return size


def compute_minmax_indices(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (sorted) of the points kept when down-sampling ``y`` (N,) to at most ``max_points`` points.

    Aligned buckets of a power-of-two point count keep their minimum and maximum (the first one on ties; NaN is
    never a minimum or maximum unless the bucket holds nothing else); the first and last points are always kept.

    >>> compute_minmax_indices(np.array([0.0, 5.0, 1.0, 1.0, -3.0, 2.0, 0.0, 0.0]), 4).tolist()
    [0, 1, 4, 7]
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if n <= max_points:
        return np.arange(n)
    size = minmax_bucket_size(n, minmax_buckets(max_points))
    buckets = -(-n // size)
    pad = buckets * size - n
    low = np.where(np.isnan(y), np.inf, y)
    high = np.where(np.isnan(y), -np.inf, y)
    if pad:
        low = np.concatenate([low, np.full(pad, np.inf)])
        high = np.concatenate([high, np.full(pad, -np.inf)])
    offsets = np.arange(buckets) * size
    keep = np.concatenate(
        [
            offsets + low.reshape(buckets, size).argmin(axis=1),
            offsets + high.reshape(buckets, size).argmax(axis=1),
            [0, n - 1],
        ]
    )
    return np.unique(np.minimum(keep, n - 1))


def x_values(frame: pd.DataFrame, x_axis: str, t0: float | None = None) -> np.ndarray:
    """The x coordinates of tidy rows: ``step``, ``epoch`` or wall time in seconds since ``t0``.

    ``t0`` defaults to the earliest wall time in ``frame``.
    """
    if x_axis == "step":
        return frame["step"].to_numpy(dtype=np.float64)
    if x_axis == "epoch":
        return frame["epoch"].to_numpy(dtype=np.float64)
    if x_axis == "wall time":
        wall = frame["wall_time"].to_numpy(dtype=np.float64)
        start = t0 if t0 is not None else (float(np.nanmin(wall)) if wall.size else 0.0)
        return wall - start
    raise ValueError(f"x_axis must be one of {', '.join(X_AXES)}, got {x_axis!r}.")


@dataclasses.dataclass
class Series:
    """One plotted line: its identity, the kept raw points, and the smoothed values at those points."""

    run_id: str
    key: str
    split: str | None
    quantity: str
    modality: str | None
    x: np.ndarray
    y: np.ndarray
    y_smooth: np.ndarray | None
    n_raw: int


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def prepare_series(
    frame: pd.DataFrame,
    options: ChartOptions,
    t0: dict[str, float] | None = None,
    groups: list[tuple[str | None, str]] | None = None,
) -> list[Series]:
    """Split tidy rows into per-(run, key) series: ordered by step, smoothed, then down-sampled.

    Works on integer codes and NumPy columns rather than sub-DataFrames: slicing 100k rows of string columns per
    chart is what would make a live refresh slow.

    Args:
        frame: tidy metric rows (any order).
        options: x axis, smoothing weight and the number of points kept per series.
        t0: per-run start time for the wall-time axis (default: each run's first row).
        groups: only the keys with these ``(split, quantity)`` (all keys when None).
    """
    out: list[Series] = []
    if frame.empty:
        return out
    key_codes, keys = pd.factorize(frame["key"])
    run_codes, runs = pd.factorize(frame["run_id"])
    _, first = np.unique(key_codes, return_index=True)
    meta = frame[["split", "quantity", "modality"]].take(first).to_numpy()
    meta = {int(key_codes[i]): (_text(m[0]), str(m[1]), _text(m[2])) for i, m in zip(first, meta, strict=True)}
    if groups is None:
        selected = np.arange(len(frame))
    else:
        wanted = {(s or "", q) for s, q in groups}
        codes = [c for c, (s, q, _) in meta.items() if (s or "", q) in wanted]
        selected = np.flatnonzero(np.isin(key_codes, codes))
    if selected.size == 0:
        return out
    combo = run_codes.astype(np.int64)[selected] * len(keys) + key_codes[selected]
    perm = np.argsort(combo, kind="stable")
    order, combo = selected[perm], combo[perm]  # rows of each series together, in the order they came
    starts = np.flatnonzero(np.r_[True, combo[1:] != combo[:-1]])
    ends = np.r_[starts[1:], combo.size]
    cols = {c: frame[c].to_numpy() for c in ("id", "step", "epoch", "wall_time", "value")}

    def name(bounds: tuple[int, int]) -> tuple[str, str]:  # series come out sorted by (run id, key)
        row = order[bounds[0]]
        return str(runs[run_codes[row]]), str(keys[key_codes[row]])

    for a, b in sorted(zip(starts, ends, strict=True), key=name):
        idx = order[a:b]
        steps = cols["step"][idx]
        if steps.size > 1 and (np.diff(steps) < 0).any():
            idx = idx[np.lexsort((cols["id"][idx], steps))]
        run_id, key = str(runs[run_codes[idx[0]]]), str(keys[key_codes[idx[0]]])
        y = cols["value"][idx].astype(np.float64)
        if options.x_axis == "step":
            x = cols["step"][idx].astype(np.float64)
        elif options.x_axis == "epoch":
            x = cols["epoch"][idx].astype(np.float64)
        else:
            wall = cols["wall_time"][idx].astype(np.float64)
            start = t0.get(run_id) if t0 else None
            x = wall - (start if start is not None else float(np.nanmin(wall)))
        smooth = compute_debiased_ema(y, options.smoothing) if options.smoothing > 0 and y.size > SMOOTH_ABOVE else None
        keep = compute_minmax_indices(y, options.max_points)
        split, quantity, modality = meta[int(key_codes[idx[0]])]
        out.append(
            Series(
                run_id=run_id,
                key=key,
                split=split,
                quantity=quantity,
                modality=modality,
                x=x[keep],
                y=y[keep],
                y_smooth=None if smooth is None else smooth[keep],
                n_raw=int(y.size),
            )
        )
    return out


def rows_of_groups(frame: pd.DataFrame, groups: list[tuple[str | None, str]] | None) -> pd.DataFrame:
    """The rows whose ``(split, quantity)`` is one of ``groups`` (all rows when None).

    Matches on the few distinct keys, then selects rows by key: string work on every row is what costs here.
    """
    if groups is None or frame.empty:
        return frame
    wanted = {(s or "", q) for s, q in groups}
    first = frame.drop_duplicates("key")
    keys = [
        k
        for k, s, q in zip(first["key"], first["split"], first["quantity"], strict=True)
        if (s if isinstance(s, str) else "", q) in wanted
    ]
    return frame[frame["key"].isin(keys)]


def export_frame(
    frame: pd.DataFrame,
    groups: list[tuple[str | None, str]] | None,
    options: ChartOptions,
    t0: dict[str, float | None] | None = None,
) -> pd.DataFrame:
    """The raw rows behind charts (every point, not down-sampled), with ``x`` and the ``smoothed`` value added.

    Args:
        frame: tidy metric rows.
        groups: the ``(split, quantity)`` groups that were charted (all rows when None).
        options: the x axis and smoothing the charts use.
        t0: per-run start time for the wall-time axis.
    """
    frame = rows_of_groups(frame, groups)
    parts = []
    for (run_id, _), rows in frame.groupby(["run_id", "key"], sort=True):
        rows = rows.sort_values(["step", "id"], kind="stable").copy()
        start = None if not t0 else t0.get(run_id)
        rows.insert(0, "x", x_values(rows, options.x_axis, start))
        smooth = rows["value"].to_numpy(dtype=np.float64)
        rows["smoothed"] = compute_debiased_ema(smooth, options.smoothing) if smooth.size > SMOOTH_ABOVE else smooth
        parts.append(rows)
    if not parts:
        return frame.assign(x=pd.Series(dtype="float64"), smoothed=pd.Series(dtype="float64"))
    return pd.concat(parts, ignore_index=True)
