"""The run store: runs, tidy metrics, events and artifact paths of one workspace folder.

SQLite (WAL) is the embedded default; the rest of mmviz talks to :class:`RunStore` only through the
methods documented there, so a server-backed store can take its place.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmviz.store.keys import FUSED, SPLITS, parse_key, pid_alive, validate_key
from mmviz.store.schema import LOST_AFTER_S, ORIGINS, SCHEMA_VERSION, STATUSES, TERMINAL
from mmviz.store.sqlite import RunStore

__all__ = [
    "FUSED",
    "LOST_AFTER_S",
    "ORIGINS",
    "SCHEMA_VERSION",
    "SPLITS",
    "STATUSES",
    "TERMINAL",
    "RunStore",
    "default_workspace",
    "open_store",
    "parse_key",
    "pid_alive",
    "validate_key",
]


def default_workspace() -> Path:
    """Return the workspace folder from ``MMVIZ_WORKSPACE``, else ``./mmviz-runs``."""
    return Path(os.environ.get("MMVIZ_WORKSPACE", "./mmviz-runs"))


def open_store(workspace: str | Path | None = None) -> RunStore:
    """Open the run store in ``workspace`` (default: :func:`default_workspace`)."""
    return RunStore(default_workspace() if workspace is None else workspace)
