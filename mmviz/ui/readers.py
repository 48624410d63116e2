"""Cached readers of the run store, and the live buffer that grows by reading only newer rows.

Readers are keyed by the workspace path plus a *token* that changes when a run changes (its status, step and
heartbeat), so a finished run is read once and a running run is re-read only when it has moved on. The live
page does not use these caches: it keeps one :class:`LiveBuffer` per run for the whole server and asks the store
only for rows with an id above the largest it holds.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping

import pandas as pd
import streamlit as st

from mmviz.store.keys import parse_key
from mmviz.store.schema import METRIC_COLUMNS, METRIC_DTYPES
from mmviz.ui.frame import get_store


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
    """The rows of one run held for live views; :meth:`update` appends only rows newer than those held.

    One buffer per run is shared by every browser session of the server (:func:`live_buffer`): a second tab on
    the same run reads only what is new. Updates take a lock; the frame is replaced, never changed in place, so
    a session drawing the previous frame is not disturbed.
    """

    workspace: str
    run_id: str
    frame: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame({c: pd.Series(dtype=METRIC_DTYPES.get(c, "str")) for c in METRIC_COLUMNS})
    )
    events: pd.DataFrame | None = None
    after_id: int = 0
    after_event: int = 0
    updates: int = 0
    last_ids: dict[str, int] = dataclasses.field(default_factory=dict)  # per key: id of its newest row held
    groups: dict[tuple[str | None, str], list[str]] = dataclasses.field(default_factory=dict)  # -> keys
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def version(self, groups) -> int:
        """Id of the newest row held among the keys of ``groups``: a chart of them is unchanged until it moves."""
        return max((self.last_ids.get(k, 0) for g in groups for k in self.groups.get(g, [])), default=0)

    def update(self, store) -> int:
        """Read the rows and events logged since the last update; return how many metric rows arrived."""
        with self.lock:
            new = store.load_metrics(self.run_id, after_id=self.after_id)
            if not new.empty:
                self.frame = new if self.frame.empty else pd.concat([self.frame, new], ignore_index=True)
                self.after_id = int(new["id"].max())
                newest = new.groupby("key", sort=False).agg(
                    id=("id", "max"), split=("split", "first"), quantity=("quantity", "first")
                )
                for key, last, split, quantity in newest.itertuples():
                    if key not in self.last_ids:
                        group = (split if isinstance(split, str) else None, str(quantity))
                        self.groups.setdefault(group, []).append(str(key))
                    self.last_ids[str(key)] = int(last)
            events = store.load_events(self.run_id, after_id=self.after_event)
            if self.events is None or not events.empty:
                self.events = events if self.events is None or self.events.empty else pd.concat([self.events, events])
                if not events.empty:
                    self.after_event = int(events["id"].max())
            self.updates += 1
            return len(new)


@st.cache_resource(show_spinner=False, max_entries=32)
def live_buffer(workspace: str, run_id: str) -> LiveBuffer:
    """The server's live buffer for the run, shared by all sessions (empty until its first update)."""
    return LiveBuffer(workspace, run_id)
