"""The run store contract: what mmviz reads from and writes to a store, and the constants every store shares.

No database appears here. :class:`mmviz.store.sqlite.RunStore` (a workspace folder) and
:class:`mmviz.store.postgres.PostgresStore` (a ``postgresql://`` URL plus a shared artifact folder) implement
:class:`RunStoreProtocol`; the same tests run against both (``tests/store/test_contract.py``).

* :class:`MetricSink` is all a training loop needs (``fit`` takes one; :class:`mmviz.training.loop.NullStore`
  is the one that keeps nothing).
* :class:`RunReader` is what pages and exports read.
* :class:`RunWriter` is what the launcher, the trainer process and the scheduler write.

Rows: metric rows are ``(step, epoch, wall_time, key, value)``, events ``(step, epoch, wall_time, kind,
payload)``, artifacts ``(epoch, kind, path relative to run_dir, meta)``. A run dict has :data:`RUN_COLUMNS`
(JSON columns decoded) plus ``effective_status`` (see :func:`effective_status`) and ``duration``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from mmviz.store.keys import pid_alive

LOST_AFTER_S = 15.0
STATUSES = ("queued", "running", "finished", "failed", "stopped", "diverged")
TERMINAL = frozenset({"finished", "failed", "stopped", "diverged"})
RUN_COLUMNS = [
    "run_id", "name", "created", "started", "finished", "status", "config", "dataset", "method", "fusion",
    "modalities", "pid", "host", "heartbeat", "parent_run_id", "fork_epoch", "error", "stop_requested", "tags",
    "epochs_done", "step", "best_val_acc", "best_epoch", "imbalance_index", "device", "version", "summary",
    "notes", "restart_of", "origin", "backend", "epochs_total", "encoder",
]  # fmt: skip
# Who trained a run: mmviz's own trainer (restart and fork work), or the user's code through the public API
# ("api": a plain loop with mmviz.api; "lightning": the Lightning callback), which mmviz cannot re-run.
ORIGINS = ("trainer", "api", "lightning")
JSON_COLUMNS = frozenset({"config", "modalities", "tags", "summary"})
UPDATABLE = frozenset({
    "name", "tags", "epochs_done", "step", "best_val_acc", "best_epoch", "imbalance_index", "summary", "device",
    "pid", "host", "heartbeat", "error", "notes", "restart_of", "backend",
})  # fmt: skip
METRIC_COLUMNS = ["run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"]
METRIC_DTYPES = {"id": "int64", "step": "int64", "epoch": "float64", "wall_time": "float64", "value": "float64"}
# The columns of each key's array from ``load_metric_arrays`` (all float64; ids and steps are exact below 2**53).
ARRAY_COLUMNS = ("id", "step", "epoch", "wall_time", "value")
EVENT_COLUMNS = ["id", "run_id", "step", "epoch", "wall_time", "kind", "payload"]
ARTIFACT_COLUMNS = ["id", "run_id", "epoch", "kind", "path", "meta"]
CHECKPOINT = "checkpoint"  # artifact kind of a training checkpoint (a fork point)
# Config values that views over many runs show (the Runs table, the launch form's time estimate), kept in columns of
# their own when a run is created (a config never changes), so listing runs needs no config decoded:
# column -> path in the config.
CONFIG_SUMMARY = {"epochs_total": ("train", "epochs"), "encoder": ("model", "encoder")}
# What :meth:`RunReader.list_run_summaries` lists of a run: every column but the bulky JSON config and summary.
SUMMARY_COLUMNS = [c for c in RUN_COLUMNS if c not in ("config", "summary")]


def config_summary(config: Any) -> dict[str, Any]:
    """The :data:`CONFIG_SUMMARY` columns of a run with ``config``: an int, a string, None where the config has none."""

    def at(path: tuple[str, ...]) -> Any:
        value = config
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    epochs, encoder = at(CONFIG_SUMMARY["epochs_total"]), at(CONFIG_SUMMARY["encoder"])
    return {
        "epochs_total": epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None,
        "encoder": encoder if isinstance(encoder, str) else None,
    }


def effective_status(run: dict[str, Any], now: float, hostname: str) -> str:
    """Return the run's status, or 'lost' when it claims to be active but its heartbeat or process is gone.

    Active means 'running', or 'queued' with a pid. Lost means the last sign of life (heartbeat, else
    start, else creation) is older than ``LOST_AFTER_S``, or the pid is dead on this very host.
    """
    status = run["status"]
    if not (status == "running" or (status == "queued" and run["pid"] is not None)):
        return status
    last_sign = next((t for t in (run["heartbeat"], run["started"], run["created"]) if t is not None), None)
    if last_sign is not None and now - last_sign > LOST_AFTER_S:
        return "lost"
    if run["pid"] is not None and run["host"] == hostname and not pid_alive(run["pid"]):
        return "lost"
    return status


def run_duration(run: dict[str, Any]) -> float:
    """Return seconds from start to finish (or to the last heartbeat while active); NaN before the start."""
    end = run["finished"] if run["finished"] is not None else run["heartbeat"]
    return float("nan") if run["started"] is None or end is None else end - run["started"]


@runtime_checkable
class MetricSink(Protocol):
    """What a training loop writes: batched rows with events, artifacts and a heartbeat; and the stop flag."""

    def log_batch(
        self,
        run_id: str,
        rows: Iterable[tuple[int, float, float, str, float]],
        *,
        events: Iterable[tuple[int, float, float, str, dict | None]] = (),
        artifacts: Iterable[tuple[int | None, str, str | Path, dict | None]] = (),
        heartbeat: dict[str, Any] | None = None,
    ) -> int:
        """Append metric rows, events and artifact records and stamp the heartbeat, in one transaction."""
        ...

    def add_artifact(
        self, run_id: str, epoch: int | None, kind: str, path: str | Path, meta: dict | None = None
    ) -> int | None:
        """Record one artifact file of the run (path relative to :meth:`RunReader.run_dir`)."""
        ...

    def stop_requested(self, run_id: str) -> bool:
        """Whether a stop was requested for the run."""
        ...


@runtime_checkable
class RunReader(Protocol):
    """What the dashboard and exports read."""

    workspace: Any  # a folder (SQLite) or a postgresql:// URL: what the CLI's --workspace takes

    @property
    def artifact_root(self) -> Path:
        """The folder holding ``runs/<run_id>/`` and workspace-wide files (the scheduler's lock and log)."""
        ...

    def run_dir(self, run_id: str) -> Path:
        """The folder of the run's large artifacts (checkpoints, snapshots, logs)."""
        ...

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run as a dict; raises ``RunNotFoundError`` naming close ids."""
        ...

    def list_runs(self) -> pd.DataFrame:
        """All runs, newest first."""
        ...

    def list_run_summaries(self, keys: Iterable[str] = ()) -> pd.DataFrame:
        """All runs newest first, as views over many runs need them, in one read: :data:`SUMMARY_COLUMNS` (tags and
        modalities decoded; no config), ``effective_status``, ``duration``, and one column per metric key in
        ``keys`` holding the run's latest value of it (largest step, then id, as :meth:`last_values`; NaN where
        the run has not logged it)."""
        ...

    def load_metrics(
        self,
        run_ids: str | Iterable[str],
        keys: Iterable[str] | None = None,
        *,
        after_id: int | None = None,
        after_step: int | None = None,
        key_prefix: str | None = None,
    ) -> pd.DataFrame:
        """Tidy metric rows (:data:`METRIC_COLUMNS`) ordered by run_id, key, step, id."""
        ...

    def load_metric_arrays(
        self,
        run_id: str,
        *,
        after_id: int = 0,
        upto_id: int | None = None,
        keys: Iterable[str] | None = None,
        columns: Iterable[str] = ARRAY_COLUMNS,
    ) -> dict[str, Any]:
        """The run's metric rows with ``after_id < id <= upto_id`` (no upper bound when None) as numbers:
        ``{key: (N, C) float64 array}`` of ``columns`` (a subset of :data:`ARRAY_COLUMNS`, in that order), each
        ordered by step then id; keys without such rows (or not in ``keys``) are absent. What a live view polls
        with: it reads only the new rows, only the columns it needs, and makes no Python object per row."""
        ...

    def last_metric_id(self, run_id: str) -> int:
        """The id of the run's newest metric row (0 when it has none): every row up to it is readable now."""
        ...

    def metric_keys(self, run_id: str) -> list[str]:
        """The distinct metric keys of the run, sorted."""
        ...

    def load_events(self, run_ids: str | Iterable[str], after_id: int | None = None) -> pd.DataFrame:
        """Events (:data:`EVENT_COLUMNS`) ordered by id, payload decoded."""
        ...

    def load_artifacts(self, run_id: str, kind: str | None = None) -> pd.DataFrame:
        """Artifacts (:data:`ARTIFACT_COLUMNS`) ordered by epoch and id, meta decoded."""
        ...

    def artifact_paths(self, run_id: str, kind: str) -> dict[int, str]:
        """``{epoch: path}`` of the artifacts of ``kind`` with an epoch (the newest per epoch), without a frame."""
        ...

    def last_values(self, key: str, run_ids: Iterable[str] | None = None) -> dict[str, float]:
        """``{run_id: value}`` of the key's latest row per run (all runs when ``run_ids`` is None)."""
        ...

    def list_queue(self) -> list[dict[str, Any]]:
        """Queued runs in start order: ``{run_id, position, backend, enqueued}``."""
        ...

    def get_setting(self, key: str) -> Any:
        """A workspace setting (see :mod:`mmviz.store.queue`)."""
        ...


@runtime_checkable
class RunWriter(MetricSink, Protocol):
    """What the launcher, the trainer process and the scheduler write."""

    def create_run(
        self,
        *,
        config: dict,
        name: str,
        dataset: str,
        method: str,
        fusion: str,
        modalities: list[str],
        parent_run_id: str | None = None,
        fork_epoch: int | None = None,
        tags: Iterable[str] = (),
        device: str = "",
        version: str = "",
        run_id: str | None = None,
        origin: str = "trainer",
    ) -> str:
        """Record a new 'queued' run with its folder and ``config.json``; return its id."""
        ...

    def set_status(self, run_id: str, status: str, *, error: str | None = None, pid: int | None = None) -> None:
        """Set the status ('running' stamps the start, terminal statuses the finish)."""
        ...

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Update columns of :data:`UPDATABLE`."""
        ...

    def heartbeat(self, run_id: str, **fields: Any) -> None:
        """Stamp the heartbeat now, updating ``fields`` in the same transaction."""
        ...

    def set_tags(self, run_id: str, tags: Iterable[str]) -> None:
        """Replace the run's tags."""
        ...

    def set_notes(self, run_id: str, notes: str) -> None:
        """Replace the run's description."""
        ...

    def request_stop(self, run_id: str) -> None:
        """Ask the run's trainer to stop after its current step."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Delete the run's rows and folder (refused while it is alive)."""
        ...

    def log_events(self, run_id: str, events: Iterable[tuple[int, float, float, str, dict | None]]) -> int:
        """Append events in one transaction."""
        ...

    def enqueue(self, run_id: str, backend: str = "local") -> int:
        """Put a created run at the end of the queue; return its position."""
        ...

    def move_queued(self, run_id: str, position: int) -> None:
        """Move a queued run to a 1-based position."""
        ...

    def cancel_queued(self, run_id: str) -> None:
        """Take a run off the queue (it ends 'stopped')."""
        ...

    def claim_queued(self, limit: int, backends: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
        """Atomically take runs off the queue while fewer than ``limit`` hold a slot."""
        ...

    def set_setting(self, key: str, value: Any) -> None:
        """Store a checked workspace setting."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@runtime_checkable
class RunStoreProtocol(RunReader, RunWriter, Protocol):
    """A complete run store: reader and writer."""
