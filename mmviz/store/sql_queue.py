"""The SQL stores' queue and settings (see :mod:`mmviz.store.queue` for the rules).

A mixin of :class:`mmviz.store.sqlite.RunStore` and :class:`mmviz.store.postgres.PostgresStore`: it uses the
store's connection (``self._db``), host name and not-found error, with portable SQL. Each method is one write
transaction, and both connections serialise write transactions (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
transaction-level advisory lock): that is what makes :meth:`claim_queued` atomic across processes and hosts.
"""

from __future__ import annotations

import time
from typing import Any

from mmviz.errors import StoreError
from mmviz.store.queue import (
    BACKEND_NAMES,
    CANCELLED,
    MAX_PARALLEL,
    SETTINGS,
    check_setting,
    default_max_parallel,
    holds_slot,
)

_SLOT_COLUMNS = ["run_id", "status", "pid", "host", "heartbeat", "started", "created"]


class SQLQueue:
    """Queue and settings methods of the SQL run stores."""

    _db: Any
    _hostname: str

    # ---------------------------------------------------------------- settings
    def get_setting(self, key: str) -> Any:
        """A workspace setting (``max_parallel``: the stored value, else :func:`default_max_parallel`)."""
        if key not in SETTINGS:
            check_setting(key, None)  # raises, naming the valid settings
        rows = self._db.query("SELECT value FROM meta WHERE key = ?", (f"setting:{key}",))
        if key == MAX_PARALLEL:
            return int(rows[0][0]) if rows else default_max_parallel()
        return rows[0][0] if rows else None

    def set_setting(self, key: str, value: Any) -> None:
        """Store a workspace setting (checked first; ``ValueError`` names the bad value and what is valid)."""
        value = check_setting(key, value)
        name = f"setting:{key}"

        def write(c: Any) -> None:
            if not c.execute("UPDATE meta SET value = ? WHERE key = ?", (str(value), name)).rowcount:
                c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (name, str(value)))

        self._db.write(write)

    # ---------------------------------------------------------------- queue
    def enqueue(self, run_id: str, backend: str = "local") -> int:
        """Put a created, not yet started run at the end of the queue; return its 1-based position."""
        if backend not in BACKEND_NAMES:
            raise ValueError(f"Unknown backend {backend!r}. Valid: {', '.join(BACKEND_NAMES)}.")

        def write(c: Any) -> int:
            row = c.execute("SELECT status, pid FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._not_found(run_id)
            if row[0] != "queued" or row[1] is not None:
                raise StoreError(f"Run {run_id!r} is {row[0]!r} and has been started; only new runs can be queued.")
            last = c.execute("SELECT MAX(position) FROM queue").fetchone()[0]
            c.execute(
                "INSERT INTO queue (run_id, position, enqueued, backend) VALUES (?, ?, ?, ?)",
                (run_id, (last or 0) + 1, time.time(), backend),
            )
            return c.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

        return self._db.write(write)

    def list_queue(self) -> list[dict[str, Any]]:
        """The queued runs in start order: ``{run_id, position (1-based), backend, enqueued}``."""
        rows = self._db.query("SELECT run_id, backend, enqueued FROM queue ORDER BY position, enqueued")
        return [{"run_id": r, "position": i, "backend": b, "enqueued": t} for i, (r, b, t) in enumerate(rows, 1)]

    def move_queued(self, run_id: str, position: int) -> None:
        """Move a queued run to the 1-based ``position`` (clamped to the queue's length)."""

        def write(c: Any) -> None:
            order = [r for (r,) in c.execute("SELECT run_id FROM queue ORDER BY position, enqueued")]
            if run_id not in order:
                raise StoreError(f"Run {run_id!r} is not in the queue (it has started or was cancelled).")
            order.remove(run_id)
            order.insert(max(0, min(int(position) - 1, len(order))), run_id)
            c.executemany("UPDATE queue SET position = ? WHERE run_id = ?", [(i, r) for i, r in enumerate(order, 1)])

        self._db.write(write)

    def cancel_queued(self, run_id: str) -> None:
        """Take a run off the queue before it starts; it ends as 'stopped' with the error 'Cancelled while queued.'."""

        def write(c: Any) -> None:
            if not c.execute("DELETE FROM queue WHERE run_id = ?", (run_id,)).rowcount:
                raise StoreError(
                    f"Run {run_id!r} is not in the queue (it has started or was cancelled); stop it instead."
                )
            c.execute(
                "UPDATE runs SET status = 'stopped', error = ?, finished = ? WHERE run_id = ?",
                (CANCELLED, time.time(), run_id),
            )

        self._db.write(write)

    def claim_queued(self, limit: int, backends: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
        """Atomically take runs off the head of the queue while fewer than ``limit`` runs hold a slot.

        Returns ``[(run_id, backend), ...]`` for the caller to start; each is stamped as claimed (heartbeat now,
        this host), so it holds its slot until its process reports, and no other caller gets it. With
        ``backends``, only runs queued for those backends are taken (in queue order among them).
        """

        def write(c: Any) -> list[tuple[str, str]]:
            now = time.time()
            queue = c.execute("SELECT run_id, backend FROM queue ORDER BY position, enqueued").fetchall()
            queued_ids = {r for r, _ in queue}
            queue = [(r, b) for r, b in queue if backends is None or b in backends]
            if not queue:
                return []
            sql = f"SELECT {', '.join(_SLOT_COLUMNS)} FROM runs WHERE status IN ('queued', 'running')"
            active = [dict(zip(_SLOT_COLUMNS, row, strict=True)) for row in c.execute(sql)]
            busy = sum(holds_slot(r, now, self._hostname, queued_ids) for r in active)
            take = queue[: max(0, int(limit) - busy)]
            for run_id, _ in take:
                c.execute("DELETE FROM queue WHERE run_id = ?", (run_id,))
                c.execute("UPDATE runs SET heartbeat = ?, host = ? WHERE run_id = ?", (now, self._hostname, run_id))
            return [(r, b) for r, b in take]

        return self._db.write(write)
