"""A run's chart series kept up to date as rows arrive, so a live refresh costs in proportion to the new rows.

:func:`mmviz.viz.series.prepare_series` turns tidy rows into down-sampled, smoothed series from scratch: right for
a finished run read once, but a live page that redid it every refresh would pay for the whole run each time.
:class:`LiveSeries` holds each key's points in (step, id) order and keeps, per key,

- the min/max down-sampling of :func:`~mmviz.viz.series.compute_minmax_indices`, per points-per-line setting: its
  buckets are aligned powers of two, so new points touch only the last bucket, and when the bucket size doubles
  neighbouring buckets merge (the minimum of two minima, the first on ties, is the minimum of their union);
- the debiased EMA of :func:`~mmviz.viz.series.compute_debiased_ema`, per smoothing weight, continued from the
  filter's state.

Both give exactly what the from-scratch functions give on the same points (tests hold them to it). Points that
arrive out of step order for a key (a late row for an earlier step) are inserted in place and that key's
summaries are rebuilt from its points: correct, and proportional to that key only. Rows may come without id, epoch
and wall time (a long run's first read leaves them out: the step axis needs none); :meth:`KeySeries.fill` adds
them when asked for.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from mmviz.viz.series import (
    SMOOTH_ABOVE,
    ChartOptions,
    EmaFilter,
    Series,
    debias_ema,
    minmax_bucket_size,
    minmax_buckets,
)

COLUMNS = ("id", "step", "epoch", "wall_time", "value")  # a key's points (the store's ARRAY_COLUMNS)
ID, STEP, EPOCH, WALL, VALUE = range(5)
LAZY_COLUMNS = ("id", "epoch", "wall_time")  # what a first read may leave out (the step axis needs none of them)
SMOOTHINGS_KEPT = 4  # smoothing weights whose EMA a key keeps (the slider's recent values)


def _low(y: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(y), np.inf, y)


def _high(y: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(y), -np.inf, y)


class MinMaxSampler:
    """The min/max down-sampling of one growing series to at most ``max_points`` points, updated per new point.

    Holds the argmin and argmax of each complete bucket; the partial last bucket is looked at on demand.
    """

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.buckets = minmax_buckets(max_points)
        self.size = 1
        self.lo = np.empty(0, dtype=np.int64)
        self.hi = np.empty(0, dtype=np.int64)

    def update(self, y: np.ndarray) -> None:
        """Take in the points of ``y`` (N,) past those already seen (``y`` extends what earlier calls saw)."""
        n = y.size
        size = minmax_bucket_size(n, self.buckets)
        while self.size < size:  # the bucket size doubles: merge complete buckets pairwise
            pairs = self.lo.size // 2 * 2
            left, right = self.lo[0:pairs:2], self.lo[1:pairs:2]
            self.lo = np.where(_low(y[right]) < _low(y[left]), right, left)
            left, right = self.hi[0:pairs:2], self.hi[1:pairs:2]
            self.hi = np.where(_high(y[right]) > _high(y[left]), right, left)
            self.size *= 2
        done = self.lo.size * self.size
        full = (n - done) // self.size
        if full:
            block = y[done : done + full * self.size].reshape(full, self.size)
            offsets = done + np.arange(full, dtype=np.int64) * self.size
            self.lo = np.concatenate([self.lo, offsets + _low(block).argmin(axis=1)])
            self.hi = np.concatenate([self.hi, offsets + _high(block).argmax(axis=1)])

    def indices(self, y: np.ndarray) -> np.ndarray:
        """The kept indices of ``y``, as :func:`~mmviz.viz.series.compute_minmax_indices` gives (after :meth:`update`)."""
        n = y.size
        if n <= self.max_points:
            return np.arange(n)
        done = self.lo.size * self.size
        tail = []
        if done < n:
            rest = y[done:]
            tail = [done + int(_low(rest).argmin()), done + int(_high(rest).argmax())]
        return np.unique(np.concatenate([self.lo, self.hi, np.asarray(tail, dtype=np.int64), [0, n - 1]]))


class RunningEma:
    """The debiased EMA of one growing series for one weight, continued from the filter's state."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self._values = np.empty(0)
        self.n = 0
        self._filter = EmaFilter(weight)  # over the finite points seen

    @property
    def values(self) -> np.ndarray:
        """The smoothed values of the points seen (N,)."""
        return self._values[: self.n]

    def update(self, y: np.ndarray) -> None:
        """Take in the points of ``y`` past those already seen."""
        new = np.asarray(y[self.n :], dtype=np.float64)
        if new.size == 0:
            return
        out = new.copy()
        finite = np.isfinite(new)
        v = new[finite]
        if v.size:
            before = self._filter.seen
            out[finite] = debias_ema(self._filter.run(v), self.weight, before)
        if self.n + new.size > self._values.size:  # grow by doubling: O(new points) amortised
            grown = np.empty(max(2 * self._values.size, (self.n + new.size) * 5 // 4 + 64))
            grown[: self.n] = self._values[: self.n]
            self._values = grown
        self._values[self.n : self.n + new.size] = out
        self.n += new.size


class KeySeries:
    """One key's points in (step, id) order, with its down-sampling and smoothing kept up to date."""

    def __init__(self, meta: tuple[str | None, str, str | None]) -> None:
        self.meta = meta  # (split, quantity, modality)
        self._data = np.empty((0, 5))
        self.n = 0
        self.wall_min = np.nan
        self._samplers: dict[int, MinMaxSampler] = {}
        self._emas: OrderedDict[float, RunningEma] = OrderedDict()
        self.missing: set[int] = set()  # columns (ID, EPOCH, WALL) some held rows came without

    @property
    def points(self) -> np.ndarray:
        """(N, 5) array of the points held (columns id, step, epoch, wall_time, value), in (step, id) order."""
        return self._data[: self.n]

    def append(self, rows: np.ndarray, columns: tuple[str, ...] = COLUMNS) -> bool:
        """Add rows ((M, C) of ``columns``, ordered by step then id, ids above those held); True when they came out
        of step order and the key's summaries were rebuilt.

        ``columns`` must hold step and value; id, epoch and wall time may come later (:meth:`fill`)."""
        if len(rows) == 0:
            return False
        if not {"step", "value"} <= set(columns):
            raise ValueError(f"Rows for a live series need the step and value columns; got {', '.join(columns)}.")
        rows = np.asarray(rows, dtype=np.float64)
        full = np.full((len(rows), 5), np.nan)
        full[:, [COLUMNS.index(c) for c in columns]] = rows
        rows = full
        self.missing |= {COLUMNS.index(c) for c in LAZY_COLUMNS if c not in columns}
        late = self.n > 0 and rows[0, STEP] < self._data[self.n - 1, STEP]
        if self.n + len(rows) > len(self._data):  # grow by doubling: appends cost O(new rows) amortised
            grown = np.empty((max(2 * len(self._data), (self.n + len(rows)) * 5 // 4 + 64), 5))  # room to grow
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : self.n + len(rows)] = rows
        self.n += len(rows)
        if not np.isnan(rows[:, WALL]).all():
            self.wall_min = float(np.fmin(self.wall_min, np.nanmin(rows[:, WALL])))
        if late:  # a row for an earlier step: put it in place and start this key's summaries again
            # The new rows' ids are above every held one, so a stable sort by step is the (step, id) order.
            held = self._data[: self.n]
            held[:] = held[np.argsort(held[:, STEP], kind="stable")]
            self._samplers.clear()
            self._emas.clear()
        return bool(late)

    def fill(self, column: str, values: np.ndarray) -> None:
        """Set a column that earlier rows came without (``values`` (N,) for the points held, in their order)."""
        col = COLUMNS.index(column)
        self._data[: self.n, col] = values
        self.missing.discard(col)
        if col == WALL:
            wall = self._data[: self.n, WALL]
            self.wall_min = float(np.nanmin(wall)) if not np.isnan(wall).all() else np.nan

    def series(self, run_id: str, key: str, options: ChartOptions, t0: float | None = None) -> Series:
        """The key's chart series, as :func:`~mmviz.viz.series.prepare_series` draws it from the same points."""
        y = self._data[: self.n, VALUE]
        sampler = self._samplers.get(options.max_points)
        if sampler is None:
            sampler = self._samplers[options.max_points] = MinMaxSampler(options.max_points)
        sampler.update(y)
        keep = sampler.indices(y)
        smooth = None
        if options.smoothing > 0 and self.n > SMOOTH_ABOVE:
            ema = self._emas.pop(options.smoothing, None) or RunningEma(options.smoothing)
            self._emas[options.smoothing] = ema  # most recently used last
            while len(self._emas) > SMOOTHINGS_KEPT:
                self._emas.popitem(last=False)
            ema.update(y)
            smooth = ema.values[keep]
        need = {"epoch": EPOCH, "wall time": WALL}.get(options.x_axis)
        if need in self.missing:
            raise ValueError(f"The {options.x_axis!r} column of {key!r} has not been read yet (fill it first).")
        if options.x_axis == "step":
            x = self._data[keep, STEP]
        elif options.x_axis == "epoch":
            x = self._data[keep, EPOCH]
        else:
            x = self._data[keep, WALL] - (t0 if t0 is not None else self.wall_min)
        split, quantity, modality = self.meta
        return Series(run_id, key, split, quantity, modality, x, y[keep], smooth, int(self.n))


@dataclasses.dataclass
class LiveSeries:
    """The chart series of one run, grown by :meth:`append` with the rows read since the last time.

    ``parse``: key -> (split, quantity, modality) (the store's key parsing for the run's modalities).
    """

    run_id: str
    parse: Callable[[str], tuple[str | None, str, str | None]]
    keys: dict[str, KeySeries] = dataclasses.field(default_factory=dict)
    rows: int = 0  # rows taken in so far
    rebuilt: int = 0  # times a key's summaries were rebuilt for rows out of step order

    def append(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, tuple] | None = None,
        columns: tuple[str, ...] = COLUMNS,
    ) -> int:
        """Add new rows, ``{key: (M, C) array}`` of ``columns`` as the store's ``load_metric_arrays`` gives; return
        how many.

        ``meta``: a new key's (split, quantity, modality) when known (else ``parse`` gives it)."""
        count = 0
        for key, rows in arrays.items():
            if len(rows) == 0:
                continue
            held = self.keys.get(key)
            if held is None:
                held = self.keys[key] = KeySeries(meta[key] if meta and key in meta else self.parse(key))
            self.rebuilt += held.append(rows, columns)
            count += len(rows)
        self.rows += count
        return count

    def series(
        self,
        options: ChartOptions,
        groups: Iterable[tuple[str | None, str]] | None = None,
        t0: float | None = None,
        hidden: Iterable[str] = (),
    ) -> list[Series]:
        """The series of the keys in ``groups`` (all when None) but not in ``hidden``, sorted by key: what
        :func:`~mmviz.viz.series.prepare_series` returns for the same rows."""
        wanted = None if groups is None else {(s or "", q) for s, q in groups}
        skip = set(hidden)
        out = []
        for key in sorted(self.keys):
            held = self.keys[key]
            if key in skip or (wanted is not None and (held.meta[0] or "", held.meta[1]) not in wanted):
                continue
            out.append(held.series(self.run_id, key, options, t0))
        return out


def fork_history_rows(
    parent: Mapping[str, np.ndarray], fork_epoch: float, before_step: float | None
) -> dict[str, np.ndarray]:
    """The parent's rows a fork's charts start with: epoch <= ``fork_epoch`` and, once the fork has rows, step
    below the fork's first step (a fork continues its parent's step count)."""
    out = {}
    for key, rows in parent.items():
        mask = rows[:, EPOCH] <= fork_epoch
        if before_step is not None:
            mask &= rows[:, STEP] < before_step
        if mask.any():
            out[key] = rows[mask]
    return out


@dataclasses.dataclass
class ForkSeries:
    """A fork's chart series preceded by its parent's history up to the fork point, as one line per key.

    :meth:`update` feeds it the rows of both runs' :class:`LiveSeries` it has not seen (selected by id: a vector
    comparison per key, no re-down-sampling); when the fork's first step changes (its first rows arrive), the
    parent part is cut anew and the series are rebuilt once.
    """

    run_id: str
    fork_epoch: float
    parse: Callable[[str], tuple[str | None, str, str | None]]
    series: LiveSeries | None = None
    cut: float | None = None
    seen: dict[str, int] = dataclasses.field(default_factory=dict)  # per source run: largest id fed

    def update(self, parent: LiveSeries, child: LiveSeries) -> None:
        """Take in the rows of ``parent`` and ``child`` added since the last update."""
        firsts = [k.points[0, STEP] for k in child.keys.values() if k.n]
        cut = min(firsts) if firsts else None
        if self.series is None or cut != self.cut:
            self.series, self.cut, self.seen = LiveSeries(self.run_id, self.parse), cut, {}
        for source in (parent, child):
            after = self.seen.get(source.run_id, 0)
            new = {k: held.points[held.points[:, ID] > after] for k, held in source.keys.items()}
            if source is parent:
                new = fork_history_rows(new, self.fork_epoch, cut)
            self.series.append(new, {k: held.meta for k, held in source.keys.items()})
            ids = [held.points[:, ID].max() for held in source.keys.values() if held.n]
            self.seen[source.run_id] = int(max(ids, default=0))


def metric_frame(
    run_id: str, arrays: Mapping[str, np.ndarray], parse: Callable[[str], tuple[str | None, str, str | None]]
) -> pd.DataFrame:
    """Tidy metric rows (the store's ``METRIC_COLUMNS``) from per-key number arrays, keys in the given order."""
    from mmviz.store.contract import METRIC_COLUMNS, METRIC_DTYPES

    keys = [k for k, a in arrays.items() if len(a)]
    lengths = [len(arrays[k]) for k in keys]
    numbers = np.concatenate([arrays[k] for k in keys]) if keys else np.empty((0, 5))
    meta = [(k, *parse(k)) for k in keys]
    text = np.array(meta, dtype=object).reshape(-1, 4)
    columns = {"run_id": np.full(len(numbers), run_id, dtype=object)}
    columns.update(
        {name: np.repeat(text[:, i], lengths) for i, name in enumerate(("key", "split", "quantity", "modality"))}
    )
    columns.update({name: numbers[:, i] for i, name in enumerate(("id", "step", "epoch", "wall_time", "value"))})
    return pd.DataFrame(columns, columns=METRIC_COLUMNS).astype(METRIC_DTYPES)
