"""The run store: runs, tidy metrics, events and artifact paths of one workspace.

A workspace is a folder (SQLite, WAL: the embedded default) or a ``postgresql://`` URL with a shared artifact
folder (:mod:`mmviz.store.postgres`). The rest of mmviz talks to a store only through the protocols of
:mod:`mmviz.store.contract`.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmviz.store.contract import MetricSink, RunReader, RunStoreProtocol, RunWriter
from mmviz.store.keys import FUSED, SPLITS, parse_key, pid_alive, validate_key
from mmviz.store.schema import DB_NAME, LOST_AFTER_S, ORIGINS, SCHEMA_VERSION, STATUSES, TERMINAL
from mmviz.store.sqlite import RunStore

__all__ = [
    "FUSED",
    "MetricSink",
    "RunReader",
    "RunStoreProtocol",
    "RunWriter",
    "LOST_AFTER_S",
    "ORIGINS",
    "SCHEMA_VERSION",
    "SPLITS",
    "STATUSES",
    "TERMINAL",
    "WORKSPACE_ENV",
    "RunStore",
    "child_workspace",
    "default_workspace",
    "is_store_url",
    "open_store",
    "open_store_for_reading",
    "parse_key",
    "shown_workspace",
    "workspace_text",
    "pid_alive",
    "validate_key",
]


WORKSPACE_ENV = "MMVIZ_WORKSPACE"


def is_store_url(workspace: object) -> bool:
    """Whether ``workspace`` is a ``postgresql://`` URL rather than a folder."""
    return isinstance(workspace, str) and workspace.startswith(("postgresql://", "postgres://"))


def default_workspace() -> Path | str:
    """Return the workspace from ``MMVIZ_WORKSPACE`` (a folder, or a ``postgresql://`` URL as is), else
    ``./mmviz-runs``."""
    value = os.environ.get(WORKSPACE_ENV, "./mmviz-runs")
    return value if is_store_url(value) else Path(value)


def workspace_text(workspace: str | Path) -> str:
    """``workspace`` as one string that means the same from any folder: a ``postgresql://`` URL as given, a folder
    as an absolute path."""
    return str(workspace) if is_store_url(workspace) else str(Path(workspace).expanduser().absolute())


def shown_workspace(workspace: str | Path) -> str:
    """``workspace`` as mmviz shows it to people (pages, terminals, log files): a URL's password as ``***``."""
    if is_store_url(workspace):
        from mmviz.store.postgres import redact

        return redact(str(workspace))
    return str(workspace)


def child_workspace(workspace: str | Path) -> tuple[list[str], dict[str, str]]:
    """How a process that mmviz starts is told ``workspace``: ``(arguments, environment)`` to add.

    A folder goes on its command line, ``--workspace FOLDER`` (absolute), so ``ps`` shows which workspace a process
    serves. A ``postgresql://`` URL goes in its environment as ``MMVIZ_WORKSPACE`` instead: a URL may carry a
    password, and every user of the machine can read a process's command line (``ps``, ``/proc/PID/cmdline``), while
    only its owner can read its environment.
    """
    if is_store_url(workspace):
        return [], {WORKSPACE_ENV: str(workspace)}
    return ["--workspace", workspace_text(workspace)], {}


def open_store(workspace: str | Path | None = None) -> RunStore:
    """Open the run store of ``workspace`` (default: :func:`default_workspace`): a folder opens the SQLite store,
    a ``postgresql://`` URL the PostgreSQL one."""
    workspace = default_workspace() if workspace is None else workspace
    if is_store_url(workspace):
        from mmviz.store.postgres import PostgresStore

        return PostgresStore(str(workspace))
    return RunStore(workspace)


def open_store_for_reading(workspace: str | Path | None = None) -> RunStore:
    """Open the run store for a command that only reads (``mmviz runs``, ``mmviz export``): as :func:`open_store`,
    except that a workspace folder this user cannot write (another user's results, a read-only mount) is opened read
    only instead of refused."""
    workspace = default_workspace() if workspace is None else workspace
    if not is_store_url(workspace):
        folder = Path(workspace).expanduser()
        db = folder / DB_NAME
        if folder.is_dir() and (
            not os.access(folder, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK))
        ):
            return RunStore(folder, read_only=True)
    return open_store(workspace)
