"""Run summaries computed in the store, for views over many runs (the Runs table with a thousand runs).

A mixin of the SQL stores (see :mod:`mmviz.store.sql_queue` for how they share code): one read transaction with
one index lookup per run, instead of one cached read per run in the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mmviz.store.keys import validate_key


class SQLSummaries:
    """Summary reads of the SQL run stores."""

    _db: Any
    _KEY_INDEX_HINT = ""  # SQLite names its covering index (see mmviz.store.sqlite); PostgreSQL needs no hint

    def last_values(self, key: str, run_ids: Iterable[str] | None = None) -> dict[str, float]:
        """``{run_id: value}`` of ``key``'s latest row (largest step, then id) for each run that logged it."""
        key = validate_key(key)
        sql = (
            f"SELECT value FROM metrics {self._KEY_INDEX_HINT} WHERE run_id = ? AND key = ? "
            "ORDER BY step DESC, id DESC LIMIT 1"
        )

        def read(c: Any) -> dict[str, float]:
            ids = [r for (r,) in c.execute("SELECT run_id FROM runs").fetchall()] if run_ids is None else run_ids
            out = {}
            for run_id in ids:
                row = c.execute(sql, (run_id, key)).fetchone()
                if row is not None:
                    out[run_id] = float("nan") if row[0] is None else float(row[0])
            return out

        return self._db.read(read)
