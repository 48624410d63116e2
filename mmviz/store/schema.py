"""Schema and open-time checks of the SQLite run store (no connection state here; the neutral constants and
run-status rules live in :mod:`mmviz.store.contract`)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from mmviz.errors import StoreError
from mmviz.store.contract import (  # noqa: F401 - the neutral constants, re-exported for older imports
    ARRAY_COLUMNS,
    ARTIFACT_COLUMNS,
    CONFIG_SUMMARY,
    EVENT_COLUMNS,
    JSON_COLUMNS,
    LOST_AFTER_S,
    METRIC_COLUMNS,
    METRIC_DTYPES,
    ORIGINS,
    RUN_COLUMNS,
    STATUSES,
    TERMINAL,
    UPDATABLE,
    config_summary,
    effective_status,
    run_duration,
)

SCHEMA_VERSION = 1
DB_NAME = "mmviz.db"
# Columns added after schema 1 was released, with their SQL type: ``create_schema`` adds those an older database lacks
# (readers of schema 1 name their columns, so the added ones do not disturb an older mmviz reading the same file).
ADDED_RUN_COLUMNS = {
    "notes": "TEXT", "restart_of": "TEXT", "origin": "TEXT DEFAULT 'trainer'", "backend": "TEXT",
    "epochs_total": "INTEGER", "encoder": "TEXT",  # CONFIG_SUMMARY: filled from the config by fill_config_summary
}  # fmt: skip

DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, name TEXT, created REAL, started REAL, finished REAL, status TEXT, config TEXT,
        dataset TEXT, method TEXT, fusion TEXT, modalities TEXT, pid INTEGER, host TEXT, heartbeat REAL,
        parent_run_id TEXT, fork_epoch INTEGER, error TEXT, stop_requested INTEGER DEFAULT 0, tags TEXT,
        epochs_done INTEGER DEFAULT 0, step INTEGER DEFAULT 0, best_val_acc REAL, best_epoch INTEGER,
        imbalance_index REAL, device TEXT, version TEXT, summary TEXT, notes TEXT, restart_of TEXT,
        origin TEXT DEFAULT 'trainer', backend TEXT)""",
    """CREATE TABLE IF NOT EXISTS metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, step INTEGER, epoch REAL, wall_time REAL, key TEXT,
        split TEXT, quantity TEXT, modality TEXT, value REAL)""",
    # Covering index for load_metrics: ORDER BY run_id, key, step, id needs neither a sort nor table lookups.
    "CREATE INDEX IF NOT EXISTS metrics_run_key_step ON metrics (run_id, key, step, id, epoch, wall_time, value)",
    "CREATE INDEX IF NOT EXISTS metrics_run_id ON metrics (run_id, id)",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, step INTEGER, epoch REAL, wall_time REAL, kind TEXT,
        payload TEXT)""",
    "CREATE INDEX IF NOT EXISTS events_run_id ON events (run_id, id)",
    """CREATE TABLE IF NOT EXISTS artifacts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, epoch INTEGER, kind TEXT, path TEXT, meta TEXT)""",
    "CREATE INDEX IF NOT EXISTS artifacts_run_kind ON artifacts (run_id, kind, epoch)",
    # Runs waiting for a free slot, in start order (see mmviz.store.queue); a claimed run leaves this table.
    "CREATE TABLE IF NOT EXISTS queue (run_id TEXT PRIMARY KEY, position REAL, enqueued REAL, backend TEXT)",
]


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, indexes, added columns and ``meta`` rows that are missing (inside the caller's
    transaction)."""
    for statement in DDL:
        conn.execute(statement)
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for column, sql_type in ADDED_RUN_COLUMNS.items():
        if column not in have:  # a database made before the column existed: add it, existing rows read NULL
            conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}")
    if not set(CONFIG_SUMMARY) <= have:
        fill_config_summary(conn)
    conn.executemany(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
        [("app", "mmviz"), ("schema_version", str(SCHEMA_VERSION))],
    )


def fill_config_summary(conn: Any) -> None:
    """Fill the :data:`CONFIG_SUMMARY` columns of the runs made before those columns existed, from their configs
    (once, in the transaction that adds the columns; ``conn`` takes ``?`` placeholders: both SQL stores use it)."""
    updates = []
    for run_id, text in conn.execute("SELECT run_id, config FROM runs").fetchall():
        try:
            values = config_summary(json.loads(text) if text else None)
        except (TypeError, ValueError):  # a damaged config: listed without these values, like a config lacking them
            continue
        if any(v is not None for v in values.values()):
            updates.append((*values.values(), run_id))
    if updates:
        sets = ", ".join(f"{column} = ?" for column in CONFIG_SUMMARY)
        conn.executemany(f"UPDATE runs SET {sets} WHERE run_id = ?", updates)


def check_workspace(workspace: Path, *, read_only: bool = False) -> None:
    """Create the workspace folder (and ``runs/``) if missing; raise ``StoreError`` when it is not writable. With
    ``read_only`` (commands that only read: ``mmviz runs``, ``mmviz export``) the folder and its run store must exist
    and be readable, and nothing is created."""
    ws = str(workspace)
    if workspace.exists() and not workspace.is_dir():
        raise StoreError(
            f"The workspace {ws!r} is a file, not a folder; choose a folder with --workspace or MMVIZ_WORKSPACE."
        )
    if read_only:
        if not os.access(workspace, os.R_OK | os.X_OK):
            raise StoreError(f"Cannot read the workspace folder {ws!r} (permission denied); check its permissions.")
        if not (workspace / DB_NAME).is_file():
            raise StoreError(
                f"The workspace folder {ws!r} holds no run store ({DB_NAME}); choose the workspace of your runs with "
                "--workspace or MMVIZ_WORKSPACE."
            )
        return
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "runs").mkdir(exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the workspace folder {ws!r} ({exc.strerror or exc}); choose a writable folder "
            "with --workspace or MMVIZ_WORKSPACE."
        ) from exc
    if not os.access(workspace, os.W_OK | os.X_OK):
        raise StoreError(
            f"The workspace folder {ws!r} is not writable; choose a writable folder with --workspace or "
            "MMVIZ_WORKSPACE."
        )


def check_db_file(db_path: Path, *, read_only: bool = False) -> None:
    """Refuse, without writing to it, a file that is not an mmviz store of a schema version this mmviz reads.

    SQLite reads the file, never Python's ``open()``: closing any descriptor of a file drops every POSIX lock the
    process holds on it, so reading the header while another connection of this process (another page of the same
    dashboard server) has the store open would let a third process take the store for unused and delete its WAL
    file under that connection (SQLite's "How To Corrupt An SQLite Database File", 2.2).
    """
    path = str(db_path)
    try:
        if not db_path.exists() or db_path.stat().st_size == 0:
            if read_only:  # nothing to read, and the tables cannot be made
                raise StoreError(
                    f"{path!r} holds no mmviz runs yet (an empty store); choose the workspace of your runs."
                )
            return  # SQLite treats an empty file as an empty database
    except OSError as exc:
        raise StoreError(f"Cannot read {path!r} ({exc.strerror or exc}); check its permissions.") from exc
    if db_path.is_dir():
        raise StoreError(f"{path!r} is a folder, not an SQLite database; move it away or choose another workspace.")
    if not os.access(db_path, os.R_OK):
        raise StoreError(f"Cannot read {path!r} (permission denied); check its permissions.")
    if not read_only and not os.access(db_path, os.R_OK | os.W_OK):
        raise StoreError(f"The run store {path!r} is not writable; fix its permissions or choose another workspace.")
    try:
        from mmviz.store.connection import connect_read_only

        conn = connect_read_only(db_path)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise StoreError(
                f"{path!r} is not an SQLite database (or its first page is damaged); move it away or choose another "
                "workspace."
            ) from exc
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CANTOPEN:
            raise StoreError(f"Cannot open {path!r} ({exc}); check the file and its permissions.") from exc
        from mmviz.store.connection import damaged_store

        raise damaged_store(db_path, exc) from exc
    if tables and meta.get("app") != "mmviz":
        raise StoreError(
            f"{path!r} is an SQLite database of another application, not an mmviz run store; choose another workspace."
        )
    if meta:
        try:
            version = int(meta["schema_version"])
        except (KeyError, ValueError) as exc:
            raise StoreError(f"{path!r} has no valid mmviz schema version; move it away.") from exc
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path!r} was written by a newer mmviz (schema {version}, this mmviz reads {SCHEMA_VERSION}); "
                "upgrade mmviz."
            )
        if read_only and version < SCHEMA_VERSION:  # upgrading it would write
            raise StoreError(
                f"{path!r} was written by an older mmviz (schema {version}, this mmviz reads {SCHEMA_VERSION}) and "
                "cannot be upgraded here, where its folder is not writable; open it once where it can be written."
            )
    elif read_only:
        raise StoreError(f"{path!r} holds no mmviz runs yet (an empty store); choose the workspace of your runs.")
