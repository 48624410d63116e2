"""The SQLite run store: one WAL database per workspace plus one folder per run for large artifacts.

Many trainer processes write at once while the dashboard reads from several threads; see
:mod:`mmviz.store.connection` for how. Every write is one transaction. Opening never modifies a file that is not
an mmviz store (see :func:`mmviz.store.schema.check_db_file`).

Values: SQLite stores ``inf`` as is but turns ``NaN`` into NULL, which reads back as ``NaN``.

Rows are not trusted blindly (a workspace may come from elsewhere or be crafted): a run whose id is not a safe
folder name is skipped by every listing with one warning (logger ``mmviz.store``), and an artifact path that would
leave its run folder is skipped the same way, so pages keep working on the rest.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from mmviz.errors import RunNotFoundError, StoreError, did_you_mean
from mmviz.store.connection import Connection
from mmviz.store.keys import (
    RUN_ID_RE,
    new_run_id,
    parse_key,
    validate_key,
    validate_modalities,
    validate_run_id,
)
from mmviz.store.schema import (
    ARRAY_COLUMNS,
    ARTIFACT_COLUMNS,
    DB_NAME,
    EVENT_COLUMNS,
    JSON_COLUMNS,
    METRIC_COLUMNS,
    METRIC_DTYPES,
    ORIGINS,
    RUN_COLUMNS,
    STATUSES,
    TERMINAL,
    UPDATABLE,
    check_db_file,
    check_workspace,
    config_summary,
    create_schema,
    effective_status,
    run_duration,
)
from mmviz.store.sql_queue import SQLQueue
from mmviz.store.sql_summary import SQLSummaries

_TEXT_COLUMNS = ("run_id", "key", "split", "quantity", "modality")
_NUMBER_COLUMNS = ("id", "step", "epoch", "wall_time", "value")
# The covering (run_id, key, step, id, ...) index answers every per-key read; without statistics the planner would
# pick (run_id, id) for ``id > ?`` and scan the whole run once per key.
_BY_KEY = "INDEXED BY metrics_run_key_step"
# A poll for at most this many new rows reads them by id (one index range) rather than key by key.
_SMALL_READ = 50_000


def _arrays_by_key(rows: list[tuple], width: int) -> dict[str, np.ndarray]:
    """``(key, number, ...)`` rows ordered by key -> ``{key: (N, width) float64 array}``."""
    out: dict[str, np.ndarray] = {}
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            flat = itertools.chain.from_iterable(r[1:] for r in rows[start:i])
            out[rows[start][0]] = np.fromiter(flat, np.float64, count=width * (i - start)).reshape(-1, width)
            start = i
    return out


def check_array_columns(columns: Iterable[str]) -> list[str]:
    """``columns`` in ``ARRAY_COLUMNS`` order, or one sentence naming the bad one and the valid ones."""
    wanted = list(columns)
    for c in wanted:
        if c not in ARRAY_COLUMNS:
            raise ValueError(f"Unknown metric array column {c!r}; valid: {', '.join(ARRAY_COLUMNS)}.")
    return [c for c in ARRAY_COLUMNS if c in wanted]


def _run_keys(conn: sqlite3.Connection, run_id: str) -> list[str]:
    """The run's distinct keys, sorted, by skipping from key to key through the index (not a scan of every row)."""
    sql = f"""WITH RECURSIVE k(key) AS (
        SELECT min(key) FROM metrics {_BY_KEY} WHERE run_id = ?1
        UNION ALL SELECT (SELECT min(key) FROM metrics {_BY_KEY} WHERE run_id = ?1 AND key > k.key) FROM k
        WHERE k.key IS NOT NULL)
        SELECT key FROM k WHERE key IS NOT NULL"""
    return [k for (k,) in conn.execute(sql, (run_id,))]


_LOG = logging.getLogger("mmviz.store")
_EVENT_SQL = "INSERT INTO events (run_id, step, epoch, wall_time, kind, payload) VALUES (?, ?, ?, ?, ?, ?)"
_ARTIFACT_SQL = "INSERT INTO artifacts (run_id, epoch, kind, path, meta) VALUES (?, ?, ?, ?, ?)"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class RunStore(SQLQueue, SQLSummaries):
    """Runs, metrics, events and artifact paths of one workspace folder (``mmviz.db`` + ``runs/<run_id>/``)."""

    DUPLICATE: type[Exception] = sqlite3.IntegrityError  # what the connection raises for a duplicate run id
    _KEY_INDEX_HINT = _BY_KEY

    def __init__(self, workspace: str | Path, *, read_only: bool = False) -> None:
        """Open (creating if needed) the store in ``workspace``; raise ``StoreError`` if it is unusable. With
        ``read_only`` an existing store is opened for reading only: nothing is created, migrated or written (a
        workspace one may read but not write, e.g. a colleague's; :func:`mmviz.store.open_store_for_reading`)."""
        self.workspace = Path(workspace).expanduser().absolute()
        self.db_path = self.workspace / DB_NAME
        self._modalities: dict[str, list[str]] = {}
        self._skipped: set[tuple[str, str]] = set()  # invalid rows already warned about
        self._hostname = socket.gethostname()
        check_workspace(self.workspace, read_only=read_only)
        check_db_file(self.db_path, read_only=read_only)
        self._db = Connection(self.db_path, read_only=read_only)
        if read_only:
            return
        try:
            self._db.write(create_schema)
        except BaseException:
            self._db.close()
            raise

    # ---------------------------------------------------------------- plumbing
    def _update(self, run_id: str, assignments: dict[str, Any]) -> None:
        sets = ", ".join(f"{column} = ?" for column in assignments)
        sql = f"UPDATE runs SET {sets} WHERE run_id = ?"
        changed = self._db.write(lambda c: c.execute(sql, (*assignments.values(), run_id)).rowcount)
        if not changed:
            raise self._not_found(run_id)

    def _not_found(self, run_id: str) -> RunNotFoundError:
        rows = self._db.query("SELECT run_id FROM runs ORDER BY created DESC, run_id DESC")
        ids = [r[0] for r in rows if isinstance(r[0], str) and RUN_ID_RE.match(r[0])]
        recent = f" Recent runs: {', '.join(ids[:5])}." if ids else " The workspace has no runs yet."
        return RunNotFoundError(
            f"No run {run_id!r} in workspace {str(self.workspace)!r}.{did_you_mean(run_id, ids)}{recent}"
        )

    def _skip(self, what: str, value: str, why: str) -> None:
        """Warn once that a row of the database is ignored."""
        if (what, value) not in self._skipped:
            self._skipped.add((what, value))
            _LOG.warning("mmviz: ignoring %s %r in %s: %s.", what, value, str(self.db_path), why)

    def _run_rows(self, where: str = "", params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs {where} ORDER BY created DESC, run_id DESC"
        now = time.time()
        runs = []
        for row in self._db.query(sql, params):
            if not isinstance(row[0], str) or not RUN_ID_RE.match(row[0]):
                self._skip("run id", row[0], "it is not a safe folder name (crafted or foreign workspace)")
                continue
            run = {c: (_loads(v) if c in JSON_COLUMNS else v) for c, v in zip(RUN_COLUMNS, row, strict=True)}
            run["stop_requested"] = bool(run["stop_requested"])
            run["effective_status"] = effective_status(run, now, self._hostname)
            run["duration"] = run_duration(run)
            runs.append(run)
        return runs

    # ---------------------------------------------------------------- runs
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
        """Record a new 'queued' run, create ``runs/<run_id>/`` with ``config.json``, and return the run id.

        ``origin`` says who trains it: ``trainer`` (mmviz), or ``api`` / ``lightning`` (the user's own code).
        """
        modalities = validate_modalities(modalities)
        if origin not in ORIGINS:
            raise ValueError(
                f"Unknown run origin {origin!r}.{did_you_mean(origin, ORIGINS)} Valid: {', '.join(ORIGINS)}."
            )
        config_text = json.dumps(config, sort_keys=True)
        values = {
            "name": name, "created": time.time(), "status": "queued", "config": config_text, "dataset": dataset,
            "method": method, "fusion": fusion, "modalities": json.dumps(modalities), "parent_run_id": parent_run_id,
            "fork_epoch": None if fork_epoch is None else int(fork_epoch), "tags": json.dumps(list(tags)),
            "device": device, "version": version, "origin": origin, **config_summary(config),
        }  # fmt: skip
        sql = f"INSERT INTO runs (run_id, {', '.join(values)}) VALUES (?{', ?' * len(values)})"
        for _ in range(20):
            new_id = validate_run_id(run_id) if run_id is not None else new_run_id()
            try:
                self._db.write(lambda c, new_id=new_id: c.execute(sql, (new_id, *values.values())))
                break
            except self.DUPLICATE as exc:
                if run_id is not None:
                    raise StoreError(
                        f"A run {run_id!r} already exists in {str(self.workspace)!r}; pick another id."
                    ) from exc
        else:
            raise StoreError(f"Could not find a free run id in {str(self.workspace)!r}; try again.")
        try:
            folder = self.run_dir(new_id)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / "config.json.tmp"
            tmp.write_text(json.dumps(config, sort_keys=True, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, folder / "config.json")
        except OSError as exc:
            self._db.write(lambda c: c.execute("DELETE FROM runs WHERE run_id = ?", (new_id,)))
            raise StoreError(
                f"Cannot write the run folder in {str(self.workspace)!r} ({exc}); check the disk."
            ) from exc
        self._modalities[new_id] = modalities
        return new_id

    @property
    def artifact_root(self) -> Path:
        """The folder under which run folders and workspace-wide files (scheduler lock and log) live."""
        return self.workspace

    def run_dir(self, run_id: str) -> Path:
        """Return the folder holding the run's large artifacts (``<workspace>/runs/<run_id>``)."""
        return self.workspace / "runs" / validate_run_id(run_id)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """Return one run as a dict (JSON columns decoded, plus ``effective_status`` and ``duration``)."""
        runs = self._run_rows("WHERE run_id = ?", (run_id,))
        if not runs:
            raise self._not_found(run_id)
        return runs[0]

    def list_runs(self) -> pd.DataFrame:
        """Return all runs newest first, JSON decoded, plus ``effective_status`` ('lost' if stale) and ``duration``."""
        return pd.DataFrame(self._run_rows(), columns=[*RUN_COLUMNS, "effective_status", "duration"])

    def set_status(self, run_id: str, status: str, *, error: str | None = None, pid: int | None = None) -> None:
        """Set the run's status; 'running' stamps ``started`` once, terminal statuses stamp ``finished``.

        A ``pid`` is recorded with this host's name, so that a dead process shows the run as 'lost'.
        """
        if status not in STATUSES:
            raise ValueError(
                f"Unknown run status {status!r}.{did_you_mean(status, STATUSES)} Valid: {', '.join(STATUSES)}."
            )
        now = time.time()
        fields: dict[str, Any] = {"status": status}
        if error is not None:
            fields["error"] = error
        if pid is not None:  # the process was just started here: that is a sign of life
            fields.update(pid=int(pid), host=self._hostname, heartbeat=now)
        if status == "running":
            fields["heartbeat"] = now
        if status in TERMINAL:
            fields["finished"] = now
        sets = ", ".join(f"{c} = ?" for c in fields)
        if status == "running":
            sets += ", started = COALESCE(started, ?)"
        params = (*fields.values(), *([now] if status == "running" else []), run_id)
        if not self._db.write(lambda c: c.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", params).rowcount):
            raise self._not_found(run_id)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Update whitelisted run columns; lists and dicts are stored as JSON.

        Setting a ``pid`` also records ``host`` (this machine) and ``heartbeat`` (now) unless they are given: a
        process that was just launched is alive, and the host is what makes its pid checkable.
        """
        if not fields:
            self.get_run(run_id)
            return
        self._update(run_id, self._assignments(fields))

    def _assignments(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Checked, JSON-encoded column values for an update of the runs table (see :meth:`update_run`)."""
        unknown = sorted(set(fields) - UPDATABLE)
        if unknown:
            raise ValueError(f"Cannot update run field {unknown[0]!r}. Updatable: {', '.join(sorted(UPDATABLE))}.")
        if fields.get("pid") is not None:
            fields = {"host": self._hostname, "heartbeat": time.time(), **fields}
        return {k: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v for k, v in fields.items()}

    def heartbeat(self, run_id: str, **fields: Any) -> None:
        """Stamp the run's heartbeat with the current time, updating ``fields`` in the same transaction."""
        self.update_run(run_id, heartbeat=time.time(), **fields)

    def set_tags(self, run_id: str, tags: Iterable[str]) -> None:
        """Replace the run's tags."""
        self.update_run(run_id, tags=list(tags))

    def set_notes(self, run_id: str, notes: str) -> None:
        """Replace the run's description (free text; empty clears it)."""
        self.update_run(run_id, notes=str(notes).strip() or None)

    def request_stop(self, run_id: str) -> None:
        """Ask the run's trainer to stop after its current step."""
        self._update(run_id, {"stop_requested": 1})

    def stop_requested(self, run_id: str) -> bool:
        """Return whether a stop was requested for the run."""
        rows = self._db.query("SELECT stop_requested FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise self._not_found(run_id)
        return bool(rows[0][0])

    def delete_run(self, run_id: str) -> None:
        """Delete the run's rows in every table and its folder; refuse while its process is alive."""
        folder = self.run_dir(run_id)  # an unsafe id is refused before any row is deleted
        run = self.get_run(run_id)
        if run["effective_status"] == "running" or (run["effective_status"] == "queued" and run["pid"] is not None):
            raise StoreError(f"Run {run_id!r} is still {run['effective_status']} (pid {run['pid']}); stop it first.")

        def delete(conn: sqlite3.Connection) -> None:
            for table in ("metrics", "events", "artifacts", "queue", "runs"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

        self._db.write(delete)
        self._modalities.pop(run_id, None)
        try:
            if folder.exists():
                shutil.rmtree(folder)
        except OSError as exc:
            raise StoreError(
                f"Deleted run {run_id!r} from the store but could not remove {str(folder)!r}: {exc}."
            ) from exc

    # ---------------------------------------------------------------- metrics and events
    def _run_modalities(self, run_id: str) -> list[str]:
        if run_id not in self._modalities:
            rows = self._db.query("SELECT modalities FROM runs WHERE run_id = ?", (run_id,))
            if not rows:
                raise self._not_found(run_id)
            self._modalities[run_id] = _loads(rows[0][0]) or []
        return self._modalities[run_id]

    def log_batch(
        self,
        run_id: str,
        rows: Iterable[tuple[int, float, float, str, float]],
        *,
        events: Iterable[tuple[int, float, float, str, dict | None]] = (),
        artifacts: Iterable[tuple[int | None, str, str | Path, dict | None]] = (),
        heartbeat: dict[str, Any] | None = None,
    ) -> int:
        """Append metric rows ``(step, epoch, wall_time, key, value)`` in one transaction; return how many.

        Keys are split into split/quantity/modality columns (see :func:`mmviz.store.keys.parse_key`); one malformed
        key rejects the whole batch with a ``ValueError``. ``inf`` is stored as is, ``NaN`` as NULL (reads as NaN).
        The same transaction can append ``events`` (as :meth:`log_events`), record ``artifacts``
        ``(epoch, kind, path, meta)`` (as :meth:`add_artifact`) and, when ``heartbeat`` is a dict, stamp the run's
        heartbeat and update those fields (as :meth:`heartbeat`): a trainer's flush is one commit.
        """
        modalities = self._run_modalities(run_id)
        parsed: dict[str, tuple[str | None, str, str | None]] = {}
        records = []
        for step, epoch, wall_time, key, value in rows:
            if key not in parsed:
                parsed[key] = parse_key(key, modalities)
            value = None if value is None else float(value)
            records.append((run_id, int(step), float(epoch), float(wall_time), key, *parsed[key], value))
        event_records = self._event_records(run_id, events)
        artifact_records = [self._artifact_record(run_id, *a) for a in artifacts]
        update = None if heartbeat is None else self._assignments({"heartbeat": time.time(), **heartbeat})

        def write(c: sqlite3.Connection) -> None:
            if records:
                sql = "INSERT INTO metrics (run_id, step, epoch, wall_time, key, split, quantity, modality, value) "
                c.executemany(sql + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
            if event_records:
                c.executemany(_EVENT_SQL, event_records)
            if artifact_records:
                c.executemany(_ARTIFACT_SQL, artifact_records)
            if update:
                sets = ", ".join(f"{column} = ?" for column in update)
                c.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*update.values(), run_id))

        if records or event_records or artifact_records or update:
            self._db.write(write)
        return len(records)

    def _event_records(self, run_id: str, events: Iterable[tuple[int, float, float, str, dict | None]]) -> list:
        return [
            (run_id, int(step), float(epoch), float(wall_time), str(kind), json.dumps(payload or {}))
            for step, epoch, wall_time, kind, payload in events
        ]

    def log_events(self, run_id: str, events: Iterable[tuple[int, float, float, str, dict | None]]) -> int:
        """Append events ``(step, epoch, wall_time, kind, payload)`` in one transaction; return how many."""
        self._run_modalities(run_id)  # raises for an unknown run
        records = self._event_records(run_id, events)
        if records:
            self._db.write(lambda c: c.executemany(_EVENT_SQL, records))
        return len(records)

    def load_metrics(
        self,
        run_ids: str | Iterable[str],
        keys: Iterable[str] | None = None,
        *,
        after_id: int | None = None,
        after_step: int | None = None,
        key_prefix: str | None = None,
    ) -> pd.DataFrame:
        """Return tidy metric rows ordered by run_id, key, step, id.

        Args:
            run_ids: one run id or several.
            keys: only these keys (all when None).
            after_id: only rows with ``id > after_id`` (live views poll with the largest id they hold).
            after_step: only rows with ``step > after_step``.
            key_prefix: only keys starting with this text, e.g. ``'val/'``.
        """
        filters, params = "", []
        if after_id is not None:
            filters += " AND id > ?"
            params.append(int(after_id))
        if after_step is not None:
            filters += " AND step > ?"
            params.append(int(after_step))
        wanted = None if keys is None else sorted({validate_key(k) for k in keys})
        if key_prefix and wanted is not None:
            wanted = [k for k in wanted if k.startswith(key_prefix)]
        # A range, not LIKE: '_' is a LIKE wildcard, and a range uses the index.
        key_range = " AND key >= ? AND key < ?" if key_prefix else ""
        range_params = [key_prefix, key_prefix + "\U0010ffff"] if key_prefix else []

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, list[tuple]]]:
            # One query per (run, key) returning numbers only: creating a Python str per row is what makes a single
            # query slow. All queries share one read transaction, hence one snapshot, so ``after_id`` never skips rows.
            series = []
            for run_id in sorted({run_ids} if isinstance(run_ids, str) else set(run_ids)):
                run_keys = wanted
                if run_keys is None:
                    sql = f"SELECT DISTINCT key FROM metrics {_BY_KEY} WHERE run_id = ?{key_range}{filters}"
                    run_keys = [k for (k,) in conn.execute(sql + " ORDER BY key", (run_id, *range_params, *params))]
                for key in run_keys:
                    sql = f"SELECT {', '.join(_NUMBER_COLUMNS)} FROM metrics {_BY_KEY} WHERE run_id = ? AND key = ?"
                    rows = conn.execute(f"{sql}{filters} ORDER BY step, id", (run_id, key, *params)).fetchall()
                    if rows:
                        series.append((run_id, key, rows))
            return series

        series = self._db.read(read)
        lengths = [len(rows) for _, _, rows in series]
        numbers = np.array([row for _, _, rows in series for row in rows], dtype=np.float64).reshape(-1, 5)
        parsed = [(run_id, key, *parse_key(key, self._run_modalities(run_id))) for run_id, key, _ in series]
        text = np.array(parsed, dtype=object).reshape(-1, 5)
        columns: dict[str, Any] = {name: np.repeat(text[:, i], lengths) for i, name in enumerate(_TEXT_COLUMNS)}
        columns.update({name: numbers[:, i] for i, name in enumerate(_NUMBER_COLUMNS)})
        return pd.DataFrame(columns, columns=METRIC_COLUMNS).astype(METRIC_DTYPES)

    def load_metric_arrays(
        self,
        run_id: str,
        *,
        after_id: int = 0,
        upto_id: int | None = None,
        keys: Iterable[str] | None = None,
        columns: Iterable[str] = ARRAY_COLUMNS,
    ) -> dict[str, np.ndarray]:
        """The run's metric rows with ``after_id < id <= upto_id``: ``{key: (N, C) float64 array}`` of ``columns``
        (a subset of ``ARRAY_COLUMNS``, in that order), each ordered by step then id; keys without such rows are
        absent (see :meth:`RunReader.load_metric_arrays`).

        A poll after the first read walks the (run_id, id) index from ``after_id`` on, so it reads only the new
        rows however long the run is; a large read goes key by key through the covering index, numbers only.
        """
        cols = check_array_columns(columns)
        after_id, wanted = int(after_id), None if keys is None else set(keys)
        upto = "" if upto_id is None else f" AND id <= {int(upto_id)}"

        def read(conn: sqlite3.Connection) -> dict[str, np.ndarray]:
            if after_id > 0 and wanted is None:
                since = f"FROM metrics INDEXED BY metrics_run_id WHERE run_id = ? AND id > ?{upto}"
                (count,) = conn.execute(f"SELECT count(*) {since}", (run_id, after_id)).fetchone()
                if count <= _SMALL_READ:
                    sql = f"SELECT key, {', '.join(cols)} {since} ORDER BY key, step, id"
                    return _arrays_by_key(conn.execute(sql, (run_id, after_id)).fetchall(), len(cols))
            out = {}
            for key in _run_keys(conn, run_id):
                if wanted is not None and key not in wanted:
                    continue
                sql = f"SELECT {', '.join(cols)} FROM metrics {_BY_KEY} WHERE run_id = ? AND key = ? AND id > ?{upto}"
                rows = conn.execute(f"{sql} ORDER BY step, id", (run_id, key, after_id)).fetchall()
                if rows:  # fromiter over the flattened rows: a third faster than np.array on a list of tuples
                    flat = itertools.chain.from_iterable(rows)
                    out[key] = np.fromiter(flat, np.float64, count=len(cols) * len(rows)).reshape(-1, len(cols))
            return out

        return self._db.read(read)

    def last_metric_id(self, run_id: str) -> int:
        """The id of the run's newest metric row, 0 when none (one step down the (run_id, id) index)."""
        rows = self._db.query("SELECT max(id) FROM metrics INDEXED BY metrics_run_id WHERE run_id = ?", (run_id,))
        return int(rows[0][0] or 0)

    def metric_keys(self, run_id: str) -> list[str]:
        """Return the distinct metric keys logged for the run, sorted."""
        return [
            r[0] for r in self._db.query("SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key", (run_id,))
        ]

    def load_events(self, run_ids: str | Iterable[str], after_id: int | None = None) -> pd.DataFrame:
        """Return events ordered by id, with ``payload`` decoded to a dict; ``after_id`` as in ``load_metrics``."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE run_id IN ({', '.join('?' * len(ids))})"
        if after_id is not None:
            sql += " AND id > ?"
        rows = (
            self._db.query(sql + " ORDER BY id", [*ids, *([int(after_id)] if after_id is not None else [])])
            if ids
            else []
        )
        frame = pd.DataFrame.from_records(rows, columns=EVENT_COLUMNS)
        frame["payload"] = [json.loads(p) for p in frame["payload"]]
        return frame.astype({"id": "int64", "step": "int64", "epoch": "float64", "wall_time": "float64"})

    # ---------------------------------------------------------------- artifacts
    def add_artifact(
        self, run_id: str, epoch: int | None, kind: str, path: str | Path, meta: dict | None = None
    ) -> int:
        """Record an artifact file of the run; ``path`` is relative to the run folder (or absolute inside it)."""
        self._run_modalities(run_id)  # raises for an unknown run
        params = self._artifact_record(run_id, epoch, kind, path, meta)
        return self._db.write(lambda c: c.execute(_ARTIFACT_SQL, params).lastrowid)

    def _artifact_record(
        self, run_id: str, epoch: int | None, kind: str, path: str | Path, meta: dict | None = None
    ) -> tuple:
        folder = self.run_dir(run_id)
        path = Path(path)
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(folder.resolve())
            except ValueError as exc:
                raise ValueError(f"Artifact path {str(path)!r} is outside the run folder {str(folder)!r}.") from exc
        return (run_id, None if epoch is None else int(epoch), str(kind), path.as_posix(), json.dumps(meta or {}))

    _ARTIFACT_ORDER = "epoch, id"  # SQLite sorts NULL epochs first

    def _artifact_rows(self, run_id: str, kind: str | None, columns: list[str]) -> list[tuple]:
        """The run's artifact rows (``columns``, which include ``path``) ordered by epoch and id, leaving out (with a
        warning) a path that leaves the run folder."""
        sql = f"SELECT {', '.join(columns)} FROM artifacts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        at = columns.index("path")
        rows = []
        for row in self._db.query(f"{sql} ORDER BY {self._ARTIFACT_ORDER}", params):
            path = Path(str(row[at]))
            if path.is_absolute() or ".." in path.parts:
                self._skip("artifact path", row[at], f"it leaves the folder of run {run_id!r}")
                continue
            rows.append(tuple(row))
        return rows

    def load_artifacts(self, run_id: str, kind: str | None = None) -> pd.DataFrame:
        """Return the run's artifacts ordered by epoch and id, with ``meta`` decoded (paths relative to ``run_dir``)."""
        frame = pd.DataFrame.from_records(self._artifact_rows(run_id, kind, ARTIFACT_COLUMNS), columns=ARTIFACT_COLUMNS)
        frame["meta"] = [json.loads(m) for m in frame["meta"]]
        return frame

    def artifact_paths(self, run_id: str, kind: str) -> dict[int, str]:
        """``{epoch: path}`` of the run's artifacts of ``kind`` that have an epoch (the newest per epoch), as plain
        values: the analysis process polls this, and a frame of strings made each forked process import pyarrow
        (0.2-0.6 s of CPU, issue 15)."""
        return {int(e): str(p) for e, p in self._artifact_rows(run_id, kind, ["epoch", "path"]) if e is not None}

    # ---------------------------------------------------------------- lifetime
    def check_integrity(self) -> None:
        """Raise ``StoreError`` naming the database file when it has damaged pages (reads only; before a run)."""
        self._db.check_integrity()

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.workspace)!r})"
