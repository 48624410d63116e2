"""The PostgreSQL run store: runs on several machines stream to one server, and one dashboard watches them all.

The workspace is a URL, ``postgresql://user@host:5432/mmviz?artifacts=/shared/mmviz``: the database holds the
runs, metrics, events, artifact records and the queue; the ``artifacts`` folder (a shared directory every
trainer and the dashboard can reach, e.g. NFS) holds ``runs/<run_id>/`` with checkpoints and snapshots. The
``artifacts`` parameter is mmviz's and is taken off before connecting; ``MMVIZ_ARTIFACTS`` is used when the URL
has none.

The store shares its logic with :class:`mmviz.store.sqlite.RunStore` (a subclass): queries there use ``?``
placeholders, which :class:`PgConnection` turns into psycopg's ``%s`` (no query contains a literal ``?`` or
``%``). What differs is here: the schema, opening, the metric read (one ordered query; PostgreSQL needs no index
hint) and the artifact insert (``RETURNING id``). Write transactions take one transaction-level advisory lock, so
writers are serialised as in SQLite: the queue's claims stay atomic, and a batch is all-or-nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from mmviz.errors import StoreError
from mmviz.store.connection import Reopening
from mmviz.store.contract import ARRAY_COLUMNS, CONFIG_SUMMARY, METRIC_COLUMNS, METRIC_DTYPES
from mmviz.store.keys import parse_key, validate_key, validate_run_id
from mmviz.store.schema import ADDED_RUN_COLUMNS, SCHEMA_VERSION, fill_config_summary
from mmviz.store.sqlite import _ARTIFACT_SQL, RunStore, _arrays_by_key, check_array_columns

URL_SCHEMES = ("postgresql://", "postgres://")
ARTIFACTS_ENV = "MMVIZ_ARTIFACTS"
WRITE_LOCK = 727_274  # the advisory lock id every write transaction takes ("mmviz")
_T = TypeVar("_T")

DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, name TEXT, created DOUBLE PRECISION, started DOUBLE PRECISION,
        finished DOUBLE PRECISION, status TEXT, config TEXT, dataset TEXT, method TEXT, fusion TEXT, modalities TEXT,
        pid BIGINT, host TEXT, heartbeat DOUBLE PRECISION, parent_run_id TEXT, fork_epoch INTEGER, error TEXT,
        stop_requested INTEGER DEFAULT 0, tags TEXT, epochs_done INTEGER DEFAULT 0, step BIGINT DEFAULT 0,
        best_val_acc DOUBLE PRECISION, best_epoch INTEGER, imbalance_index DOUBLE PRECISION, device TEXT,
        version TEXT, summary TEXT, notes TEXT, restart_of TEXT, origin TEXT DEFAULT 'trainer', backend TEXT)""",
    """CREATE TABLE IF NOT EXISTS metrics (
        id BIGSERIAL PRIMARY KEY, run_id TEXT, step BIGINT, epoch DOUBLE PRECISION, wall_time DOUBLE PRECISION,
        key TEXT, split TEXT, quantity TEXT, modality TEXT, value DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS metrics_run_key_step ON metrics (run_id, key, step, id)",
    "CREATE INDEX IF NOT EXISTS metrics_run_id ON metrics (run_id, id)",
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY, run_id TEXT, step BIGINT, epoch DOUBLE PRECISION, wall_time DOUBLE PRECISION,
        kind TEXT, payload TEXT)""",
    "CREATE INDEX IF NOT EXISTS events_run_id ON events (run_id, id)",
    """CREATE TABLE IF NOT EXISTS artifacts (
        id BIGSERIAL PRIMARY KEY, run_id TEXT, epoch INTEGER, kind TEXT, path TEXT, meta TEXT)""",
    "CREATE INDEX IF NOT EXISTS artifacts_run_kind ON artifacts (run_id, kind, epoch)",
    """CREATE TABLE IF NOT EXISTS queue (
        run_id TEXT PRIMARY KEY, position DOUBLE PRECISION, enqueued DOUBLE PRECISION, backend TEXT)""",
]


def is_url(workspace: object) -> bool:
    """Whether ``workspace`` names a PostgreSQL store rather than a folder."""
    return isinstance(workspace, str) and workspace.startswith(URL_SCHEMES)


def split_url(url: str) -> tuple[str, Path]:
    """``(conninfo URL without 'artifacts', artifact folder)``; raises ``StoreError`` when there is no folder."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    folder = next((v for k, v in query if k == "artifacts"), None) or os.environ.get(ARTIFACTS_ENV)
    if not folder:
        raise StoreError(
            f"The PostgreSQL workspace {redact(url)!r} names no artifact folder; add ?artifacts=/shared/folder to "
            f"the URL (a folder every machine reaches) or set {ARTIFACTS_ENV}."
        )
    rest = urlencode([(k, v) for k, v in query if k != "artifacts"])
    return urlunsplit(parts._replace(query=rest)), Path(folder).expanduser().absolute()


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class _Cursor:
    """What the shared store code calls on a connection: ``execute`` / ``executemany`` with ``?`` placeholders."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Any:
        cur = self._conn.cursor()
        cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
        return cur


class PgConnection(Reopening):
    """One psycopg connection shared by threads, with the ``write`` / ``read`` / ``query`` of the SQLite one.

    Closed over a fork and opened again at its next use (:func:`mmviz.store.connection.closed_for_fork`).
    """

    def __init__(self, conninfo: str, label: str) -> None:
        self._conninfo, self._label = conninfo, label
        super().__init__()

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"Cannot connect to the PostgreSQL store {self._label!r} ({first}); check the URL."
            ) from exc

    def write(self, fn: Callable[[_Cursor], _T]) -> _T:
        """Run ``fn`` in one transaction that holds the store-wide write lock: all of it is committed, or none."""
        with self._lock:
            conn = self._open()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                return fn(_Cursor(conn))

    def read(self, fn: Callable[[_Cursor], _T]) -> _T:
        """Run ``fn`` in one repeatable-read transaction (one snapshot for all its queries)."""
        with self._lock:
            conn = self._open()
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return fn(_Cursor(conn))

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """All rows of one statement."""
        with self._lock:
            return _Cursor(self._open()).execute(sql, params).fetchall()

    def check_integrity(self) -> None:
        """Nothing for a client to scan (SQLite's ``quick_check`` reads the file): the server keeps its own pages
        consistent (WAL, checksums) and reports damage on the statement that meets it."""


class PostgresStore(RunStore):
    """The run store on a PostgreSQL server, with artifacts in a shared folder (see the module docstring)."""

    _ARTIFACT_ORDER = "epoch NULLS FIRST, id"  # as SQLite, where NULLs sort first

    _KEY_INDEX_HINT = ""

    def __init__(self, url: str) -> None:
        """Connect to ``url`` (``postgresql://...?artifacts=/shared/folder``), creating the schema if missing."""
        import psycopg

        self.DUPLICATE = psycopg.errors.UniqueViolation
        conninfo, self._artifacts = split_url(url)
        self.workspace = url
        self.db_path = None
        self._modalities: dict[str, list[str]] = {}
        self._hostname = socket.gethostname()
        try:
            (self._artifacts / "runs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the artifact folder {str(self._artifacts)!r} ({exc.strerror or exc}); choose a "
                "writable shared folder with ?artifacts=... in the workspace URL."
            ) from exc
        self._db = PgConnection(conninfo, redact(url))
        try:
            self._db.write(self._create_schema)
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self, c: _Cursor) -> None:
        tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        if tables and "meta" in tables:
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            if meta and meta.get("app") != "mmviz":
                raise StoreError(f"The database {redact(self.workspace)!r} is not an mmviz run store; use another.")
            if int(meta.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
                raise StoreError(
                    f"The database {redact(self.workspace)!r} was written by a newer mmviz (schema "
                    f"{meta['schema_version']}); upgrade mmviz."
                )
        elif tables and "runs" in tables:
            raise StoreError(f"The database {redact(self.workspace)!r} has other tables; use an empty database.")
        for statement in DDL:
            c.execute(statement)
        have = {
            r[0]
            for r in c.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'runs'"
            )
        }
        for column, sql_type in ADDED_RUN_COLUMNS.items():  # a database made before the column existed
            c.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column} {sql_type}")
        if not set(CONFIG_SUMMARY) <= have:
            fill_config_summary(c)
        for key, value in (("app", "mmviz"), ("schema_version", str(SCHEMA_VERSION))):
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))

    @property
    def artifact_root(self) -> Path:
        """The shared folder holding ``runs/<run_id>/`` (the URL's ``artifacts`` parameter)."""
        return self._artifacts

    def run_dir(self, run_id: str) -> Path:
        """The run's artifact folder in the shared folder."""
        return self._artifacts / "runs" / validate_run_id(run_id)

    def add_artifact(
        self, run_id: str, epoch: int | None, kind: str, path: str | Path, meta: dict | None = None
    ) -> int:
        """Record an artifact file of the run (see :meth:`RunStore.add_artifact`)."""
        self._run_modalities(run_id)
        params = self._artifact_record(run_id, epoch, kind, path, meta)
        return self._db.write(lambda c: c.execute(_ARTIFACT_SQL + " RETURNING id", params).fetchone()[0])

    def load_metrics(
        self,
        run_ids: str | Iterable[str],
        keys: Iterable[str] | None = None,
        *,
        after_id: int | None = None,
        after_step: int | None = None,
        key_prefix: str | None = None,
    ) -> pd.DataFrame:
        """Tidy metric rows ordered by run_id, key, step, id (arguments as for :meth:`RunStore.load_metrics`)."""
        ids = sorted({run_ids} if isinstance(run_ids, str) else set(run_ids))
        sql = "SELECT run_id, key, id, step, epoch, wall_time, value FROM metrics WHERE run_id = ANY(?)"
        params: list[Any] = [ids]
        if keys is not None:
            sql += " AND key = ANY(?)"
            params.append(sorted({validate_key(k) for k in keys}))
        if key_prefix:
            sql += " AND key >= ? AND key < ?"
            params += [key_prefix, key_prefix + "\U0010ffff"]
        if after_id is not None:
            sql += " AND id > ?"
            params.append(int(after_id))
        if after_step is not None:
            sql += " AND step > ?"
            params.append(int(after_step))
        rows = self._db.query(sql + ' ORDER BY run_id, key COLLATE "C", step, id', params) if ids else []
        numbers = np.array([r[2:] for r in rows], dtype=np.float64).reshape(-1, 5)
        parsed = {(r, k): parse_key(k, self._run_modalities(r)) for r, k in {(r[0], r[1]) for r in rows}}
        frame = pd.DataFrame(
            {
                "run_id": [r[0] for r in rows],
                "id": numbers[:, 0],
                "step": numbers[:, 1],
                "epoch": numbers[:, 2],
                "wall_time": numbers[:, 3],
                "key": [r[1] for r in rows],
                "split": [parsed[(r[0], r[1])][0] for r in rows],
                "quantity": [parsed[(r[0], r[1])][1] for r in rows],
                "modality": [parsed[(r[0], r[1])][2] for r in rows],
                "value": numbers[:, 4],
            },
            columns=METRIC_COLUMNS,
        )
        return frame.astype(METRIC_DTYPES)

    def load_metric_arrays(
        self,
        run_id: str,
        *,
        after_id: int = 0,
        upto_id: int | None = None,
        keys: Iterable[str] | None = None,
        columns: Iterable[str] = ARRAY_COLUMNS,
    ) -> dict[str, np.ndarray]:
        """Per-key number arrays of the rows with ``after_id < id <= upto_id`` (see
        :meth:`RunStore.load_metric_arrays`); the (run_id, id) index gives a poll only the new rows."""
        cols = check_array_columns(columns)
        sql = f"SELECT key, {', '.join(cols)} FROM metrics WHERE run_id = ? AND id > ?"
        params: list[Any] = [run_id, int(after_id)]
        if upto_id is not None:
            sql += " AND id <= ?"
            params.append(int(upto_id))
        if keys is not None:
            sql += " AND key = ANY(?)"
            params.append(sorted(set(keys)))
        return _arrays_by_key(self._db.query(sql + ' ORDER BY key COLLATE "C", step, id', params), len(cols))

    def last_metric_id(self, run_id: str) -> int:
        """The id of the run's newest metric row, 0 when none."""
        return int(self._db.query("SELECT max(id) FROM metrics WHERE run_id = ?", [run_id])[0][0] or 0)

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.workspace)!r})"
