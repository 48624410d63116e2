"""Cached readers of the run store, and the live buffer that grows by reading only newer rows.

Readers are keyed by the workspace path plus a *token* that changes when a run changes (its status, step and
heartbeat), so a finished run is read once and a running run is re-read only when it has moved on. The live
page does not use these caches: it keeps one :class:`LiveBuffer` per run for the whole server, asks the store
only for rows with an id above the largest it holds, and keeps each key's chart series up to date from them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import streamlit as st

from mmviz.errors import StoreError
from mmviz.store.keys import parse_key
from mmviz.store.schema import METRIC_COLUMNS, METRIC_DTYPES
from mmviz.ui.frame import get_store
from mmviz.viz.live_series import COLUMNS, LAZY_COLUMNS, ForkSeries, LiveSeries, metric_frame

FIRST_READ = ("step", "value")  # what a live buffer's first read of a run takes (see LiveBuffer.update)


def run_token(run: dict) -> tuple:
    """What makes a cached read of ``run`` stale: its status, step, epochs done and heartbeat."""
    return (run.get("effective_status"), run.get("step"), run.get("epochs_done"), run.get("heartbeat"))


# The latest value of these metric keys comes with every run of :func:`load_run_summaries` (the Runs table's columns).
SUMMARY_KEYS = ("imbalance/index",)


def _with_queue(store, runs: pd.DataFrame) -> pd.DataFrame:
    positions = {q["run_id"]: q["position"] for q in store.list_queue()}
    runs["queue_position"] = runs["run_id"].map(positions)
    return runs.astype(object).where(runs.notna(), None)


@st.cache_data(ttl=1.0, show_spinner=False, max_entries=16)
def load_runs(workspace: str) -> pd.DataFrame:
    """All runs of the workspace, newest first (re-read at most once a second per server); missing values are
    ``None`` (not NaN), so ``run.get(...)`` tests read naturally. ``queue_position``: 1-based place in the
    queue of a run waiting there, else None."""
    store = get_store(workspace)
    return _with_queue(store, store.list_runs())


@st.cache_data(ttl=1.0, show_spinner=False, max_entries=16)
def load_run_summaries(workspace: str) -> pd.DataFrame:
    """All runs as :func:`load_runs` lists them but without config and summary (views over many runs: the Runs
    table, run selectors, watchers), plus one column per :data:`SUMMARY_KEYS` key with the run's latest value;
    one store read, whatever the number of metric rows."""
    store = get_store(workspace)
    return _with_queue(store, store.list_run_summaries(SUMMARY_KEYS))


def clear_runs() -> None:
    """Forget the cached run listings (after an action changed a run), so the next read sees the change."""
    load_runs.clear()
    load_run_summaries.clear()


@st.cache_data(show_spinner=False, max_entries=1024)
def load_config(workspace: str, run_id: str, created: float | None) -> dict | None:
    """A run's config: it never changes once the run is created, so it is read once (``created`` tells the run from
    a deleted one that had the same id); raises ``RunNotFoundError`` for an unknown id."""
    return get_store(workspace).get_run(run_id)["config"]


def with_config(workspace: str, run: Mapping) -> dict:
    """``run`` (a row of :func:`load_run_summaries`, as up to date as the listing) with its config: for what needs
    the settings (the forms of the Runs page, Compare's differing settings)."""
    return {**run, "config": load_config(workspace, run["run_id"], run.get("created"))}


class RunsById(Mapping):
    """``{run_id: run dict}`` over a runs frame, newest first; a run's dict is made when it is looked up (a page over
    a thousand runs builds the few it shows, and a select box's labels cost microseconds a run)."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self._runs = runs
        self._rows = {run_id: i for i, run_id in enumerate(runs["run_id"])} if len(runs) else {}
        self._columns: dict[str, list] | None = None

    def __getitem__(self, run_id: str) -> dict:
        i = self._rows[run_id]
        if self._columns is None:
            self._columns = {c: self._runs[c].tolist() for c in self._runs.columns}
        return {c: values[i] for c, values in self._columns.items()}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def runs_by_id(runs: pd.DataFrame) -> RunsById:
    """``{run_id: run dict}`` from :func:`load_runs`' (or :func:`load_run_summaries`') frame."""
    return RunsById(runs)


@st.cache_data(show_spinner=False, max_entries=256)
def load_run_keys(workspace: str, run_id: str, token: tuple) -> list[str]:
    """The metric keys logged for a run (``token``: see :func:`run_token`)."""
    return get_store(workspace).metric_keys(run_id)


@st.cache_data(show_spinner=False, max_entries=128)
def load_run_metrics(workspace: str, run_id: str, keys: tuple[str, ...], token: tuple) -> pd.DataFrame:
    """Tidy metric rows of one run for ``keys`` (``token``: see :func:`run_token`)."""
    if not keys:
        return pd.DataFrame({c: pd.Series(dtype=METRIC_DTYPES.get(c, "str")) for c in METRIC_COLUMNS})
    return get_store(workspace).load_metrics(run_id, keys=list(keys))


@st.cache_data(show_spinner=False, max_entries=128)
def load_run_events(workspace: str, run_ids: tuple[str, ...], token: tuple) -> pd.DataFrame:
    """Events of the runs, ordered by id (``token``: the runs' tokens)."""
    return get_store(workspace).load_events(list(run_ids))


def keys_matching(keys: Iterable[str], modalities: list[str], split: str | None, quantity: str) -> list[str]:
    """The keys whose ``(split, quantity)`` is the given one, e.g. all ``val/acc/<m>`` for ``('val', 'acc')``."""
    out = []
    for key in keys:
        s, q, _ = parse_key(key, modalities)
        if s == split and q == quantity:
            out.append(key)
    return out


def metric_group_options(keys: Iterable[str], modalities: list[str]) -> list[tuple[str | None, str]]:
    """The distinct ``(split, quantity)`` groups of ``keys``, sorted (test split excluded)."""
    groups = set()
    for key in keys:
        s, q, _ = parse_key(key, modalities)
        if s != "test":
            groups.add((s, q))
    return sorted(groups, key=lambda g: (g[0] or "", g[1]))


@dataclasses.dataclass
class LiveBuffer:
    """The rows of one run held for live views; :meth:`update` reads only rows newer than those held.

    One buffer per run is shared by every browser session of the server (:func:`live_buffer`): a second tab on
    the same run reads only what is new. The rows go into a :class:`~mmviz.viz.live_series.LiveSeries`, which keeps
    each key's down-sampled and smoothed series up to date, so a refresh costs in proportion to the new rows, not
    to the run's length. Updates and series reads take a lock.
    """

    workspace: str
    run_id: str
    series: LiveSeries | None = None
    events: pd.DataFrame | None = None
    after_id: int = 0
    after_event: int = 0
    updates: int = 0
    rows_read: int = 0  # metric rows the store returned to this buffer, all updates together
    last_step: int = 0  # the largest step held
    groups: dict[tuple[str | None, str], list[str]] = dataclasses.field(default_factory=dict)  # -> keys
    seen: set[str] = dataclasses.field(default_factory=set)  # keys held
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock, repr=False)
    _frame: tuple[int, pd.DataFrame] | None = dataclasses.field(default=None, repr=False)
    _store: object | None = dataclasses.field(default=None, repr=False)  # the store of the last update

    @property
    def points(self) -> int:
        """Metric rows held."""
        return 0 if self.series is None else self.series.rows

    def version(self, groups) -> int:
        """Rows held of the keys of ``groups`` (it only grows): a chart of them is unchanged until it moves."""
        held = {} if self.series is None else self.series.keys
        return sum(held[k].n for g in groups for k in self.groups.get(g, []) if k in held)

    def update(self, store) -> int:
        """Read the rows and events logged since the last update; return how many metric rows arrived.

        The first read takes only step and value, up to the newest row at that moment (what the step axis needs:
        the other three columns are most of a long run's first view); they are read per key when an axis, a fork
        or a frame needs them (:meth:`complete`). Polls read every column of the rows after it."""
        with self.lock:
            self._store = store
            if self.series is None:
                mods = list(store.get_run(self.run_id).get("modalities") or [])
                self.series = LiveSeries(self.run_id, lambda key: parse_key(key, mods))
            if self.after_id == 0:  # the first read: up to the newest row now, without the columns read lazily
                upto, columns = store.last_metric_id(self.run_id), FIRST_READ
                new = store.load_metric_arrays(self.run_id, upto_id=upto, columns=columns) if upto else {}
            else:
                upto, columns = 0, COLUMNS
                new = store.load_metric_arrays(self.run_id, after_id=self.after_id, columns=columns)
            count = self.series.append(new, columns=columns)
            self.rows_read += count
            for key, rows in new.items():
                if not len(rows):
                    continue
                if key not in self.seen:
                    self.seen.add(key)
                    split, quantity, _ = self.series.keys[key].meta
                    self.groups.setdefault((split, quantity), []).append(key)
                if "id" in columns:
                    upto = max(upto, int(rows[:, 0].max()))
                self.last_step = max(self.last_step, int(rows[:, columns.index("step")].max()))
            self.after_id = max(self.after_id, upto)
            events = store.load_events(self.run_id, after_id=self.after_event)
            if self.events is None or not events.empty:
                self.events = events if self.events is None or self.events.empty else pd.concat([self.events, events])
                if not events.empty:
                    self.after_event = int(events["id"].max())
            self.updates += 1
            return count

    def complete(self, keys: Iterable[str] | None, columns: Iterable[str] = LAZY_COLUMNS) -> None:
        """Read the ``columns`` (id, epoch, wall_time) the first read left out, for the held ``keys`` (all when None).

        The held rows of a key are exactly its rows with ``id <= after_id``, in (step, id) order, so one read of the
        same range returns the missing values in the held order (checked against the steps)."""
        with self.lock:
            if self.series is None:
                return
            held = self.series.keys
            cols = [c for c in COLUMNS if c in set(columns) and c in LAZY_COLUMNS]
            todo = [k for k in (held if keys is None else keys) if k in held and held[k].missing & _indices(cols)]
            if not todo or self._store is None:
                return
            asked = [c for c in COLUMNS if c == "step" or c in cols]  # the store returns them in COLUMNS order
            read = self._store.load_metric_arrays(self.run_id, upto_id=self.after_id, keys=todo, columns=asked)
            for key in todo:
                rows = read.get(key)
                if rows is None or not np.array_equal(rows[:, asked.index("step")], held[key].points[:, 1]):
                    raise StoreError(
                        f"The rows of {key!r} in run {self.run_id!r} changed under the live view; reload the page."
                    )
                for column in cols:
                    held[key].fill(column, rows[:, asked.index(column)])

    def frame_of(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Tidy rows (``METRIC_COLUMNS``) of the held ``keys`` (all when None), built on request."""
        with self.lock:
            if self.series is None:
                return metric_frame(self.run_id, {}, lambda key: (None, key, None))
            held = self.series.keys
            wanted = [k for k in (held if keys is None else keys) if k in held]
            self.complete(wanted)
            return metric_frame(self.run_id, {k: held[k].points for k in wanted}, lambda k: held[k].meta)

    @property
    def frame(self) -> pd.DataFrame:
        """Every row held as a tidy frame (built on request and kept until new rows arrive: exports, tests)."""
        with self.lock:
            if self._frame is None or self._frame[0] != self.points:
                self._frame = (self.points, self.frame_of())
            return self._frame[1]

    def first_wall_time(self) -> float:
        """The earliest wall time held (0.0 when none): a run's start when it has none recorded."""
        with self.lock:
            if self.series is None:
                return 0.0
            self.complete(None, ["wall_time"])
            walls = [k.wall_min for k in self.series.keys.values() if not np.isnan(k.wall_min)]
            return min(walls, default=0.0)

    def chart_series(self, options, groups, t0: float | None, hidden: Iterable[str] = ()) -> list:
        """The down-sampled series of ``groups`` (see :meth:`LiveSeries.series`), under the buffer's lock."""
        with self.lock:
            if self.series is None:
                return []
            need = {"epoch": ["epoch"], "wall time": ["wall_time"]}.get(options.x_axis, [])
            if need:
                wanted = None if groups is None else {(g[0] or "", g[1]) for g in groups}
                keys = [
                    k
                    for k, held in self.series.keys.items()
                    if wanted is None or (held.meta[0] or "", held.meta[1]) in wanted
                ]
                self.complete(keys, need)
            return self.series.series(options, groups, t0, hidden)


def _indices(columns: Iterable[str]) -> set[int]:
    return {COLUMNS.index(c) for c in columns}


@st.cache_resource(show_spinner=False, max_entries=32)
def live_buffer(workspace: str, run_id: str) -> LiveBuffer:
    """The server's live buffer for the run, shared by all sessions (empty until its first update)."""
    return LiveBuffer(workspace, run_id)


@dataclasses.dataclass
class ForkBuffer:
    """A fork's series continued from its parent's history (:class:`~mmviz.viz.live_series.ForkSeries`), shared by
    the sessions that show the fork with its parent."""

    fork: ForkSeries
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def chart_series(self, parent: LiveBuffer, child: LiveBuffer, options, groups, t0, hidden=()) -> list:
        """Take in both runs' new rows, then the series of ``groups`` as one line per key."""
        with self.lock, parent.lock, child.lock:
            if parent.series is None or child.series is None:
                return []
            parent.complete(None)  # the parent's history is cut by epoch; the joined lines need every column
            child.complete(None)
            self.fork.update(parent.series, child.series)
            return self.fork.series.series(options, groups, t0, hidden)


@st.cache_resource(show_spinner=False, max_entries=8)
def fork_buffer(workspace: str, run_id: str, parent_id: str, fork_epoch: float) -> ForkBuffer:
    """The server's fork-with-history series of ``run_id`` (forked from ``parent_id`` at ``fork_epoch``)."""
    child = live_buffer(workspace, run_id)
    return ForkBuffer(ForkSeries(run_id, fork_epoch, child.series.parse if child.series else lambda k: (None, k, None)))
