"""Run summaries computed in the store, for views over many runs (the Runs table and run selectors with a thousand
runs).

A mixin of the SQL stores (see :mod:`mmviz.store.sql_queue` for how they share code). Every read here is one
statement: a run's latest value of a key is a correlated subquery answered by one lookup in the (run_id, key, step,
id) index, so the cost grows with the number of runs, never with the number of metric rows; and no config is
decoded (the config values such views show are columns of their own, :data:`~mmviz.store.contract.CONFIG_SUMMARY`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from mmviz.store.contract import JSON_COLUMNS, SUMMARY_COLUMNS, effective_status, run_duration
from mmviz.store.keys import RUN_ID_RE, validate_key


class SQLSummaries:
    """Summary reads of the SQL run stores."""

    _db: Any
    _hostname: str
    _skip: Callable[[str, Any, str], None]  # warns once that a row is ignored (see mmviz.store.sqlite)
    _KEY_INDEX_HINT = ""  # SQLite names its covering index (see mmviz.store.sqlite); PostgreSQL needs no hint

    def _latest(self, column: str) -> str:
        """A subquery: ``column`` of the latest row (largest step, then id) of the key ``?`` of the enclosing
        ``runs`` row's run."""
        return (
            f"(SELECT m.{column} FROM metrics AS m {self._KEY_INDEX_HINT} WHERE m.run_id = runs.run_id AND m.key = ? "
            "ORDER BY m.step DESC, m.id DESC LIMIT 1)"
        )

    def last_values(self, key: str, run_ids: Iterable[str] | None = None) -> dict[str, float]:
        """``{run_id: value}`` of ``key``'s latest row (largest step, then id) for each run that logged it."""
        key = validate_key(key)
        wanted = None if run_ids is None else set(run_ids)
        latest = f"SELECT run_id, {self._latest('id')} AS last_id FROM runs"
        sql = f"SELECT latest.run_id, m.value FROM ({latest}) AS latest JOIN metrics AS m ON m.id = latest.last_id"
        return {
            run_id: float("nan") if value is None else float(value)
            for run_id, value in self._db.query(sql, (key,))
            if wanted is None or run_id in wanted
        }

    def list_run_summaries(self, keys: Iterable[str] = ()) -> pd.DataFrame:
        """All runs newest first without config or summary, plus each key's latest value (see the contract)."""
        keys = [validate_key(k) for k in keys]
        lasts = "".join(f", {self._latest('value')}" for _ in keys)
        sql = f"SELECT {', '.join(SUMMARY_COLUMNS)}{lasts} FROM runs ORDER BY created DESC, run_id DESC"
        rows = self._db.query(sql, keys)
        now, n = time.time(), len(SUMMARY_COLUMNS)
        decode = [i for i, c in enumerate(SUMMARY_COLUMNS) if c in JSON_COLUMNS]
        records = []
        for row in rows:
            if not isinstance(row[0], str) or not RUN_ID_RE.match(row[0]):
                self._skip("run id", row[0], "it is not a safe folder name (crafted or foreign workspace)")
                continue
            run = dict(zip(SUMMARY_COLUMNS, row[:n], strict=True))
            for i in decode:
                run[SUMMARY_COLUMNS[i]] = None if row[i] is None else json.loads(row[i])
            run["stop_requested"] = bool(run["stop_requested"])
            run["effective_status"] = effective_status(run, now, self._hostname)
            run["duration"] = run_duration(run)
            for key, value in zip(keys, row[n:], strict=True):
                run[key] = math.nan if value is None else float(value)
            records.append(run)
        return pd.DataFrame(records, columns=[*SUMMARY_COLUMNS, "effective_status", "duration", *keys])
