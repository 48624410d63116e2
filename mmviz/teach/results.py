"""The numbers a lesson reads off its runs: final values and per-epoch / per-step series of tidy metric rows."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

# The metric keys the lessons read (what the UI loads from the store for a lesson run).
LESSON_KEYS = (
    "val/acc/fused",
    "val/acc/a",
    "val/acc/b",
    "val/acc_probe/a",
    "val/acc_probe/b",
    "val/acc_ncm/a",
    "val/acc_ncm/b",
    "val/acc_target",
    "grad_norm_pre/a",
    "grad_norm_pre/b",
    "ratio/a",
    "train/loss",
    "train/acc/fused",
)


@dataclasses.dataclass
class RunResult:
    """One finished lesson run: its role and label in the step, its id, and its tidy metric rows."""

    role: str
    label: str
    run_id: str
    frame: pd.DataFrame

    def series(self, key: str) -> pd.DataFrame:
        """Rows of ``key`` ordered by step (columns ``step``, ``epoch``, ``value``)."""
        rows = self.frame[self.frame["key"] == key]
        return rows.sort_values(["step", "id"])[["step", "epoch", "value"]].reset_index(drop=True)

    def final(self, key: str) -> float:
        """The last logged value of ``key`` (NaN when the run never logged it)."""
        rows = self.series(key)
        return float(rows["value"].iloc[-1]) if len(rows) else math.nan

    def window_mean(self, key: str, start: float, stop: float) -> float:
        """Mean of ``key`` over the steps in the ``[start, stop)`` fraction of its series (e.g. 0 to 0.3 = early)."""
        values = self.series(key)["value"].to_numpy()
        if values.size == 0:
            return math.nan
        lo, hi = int(start * values.size), max(int(start * values.size) + 1, int(stop * values.size))
        return float(np.nanmean(values[lo:hi]))


def alone_accuracy(result: RunResult) -> float:
    """What a modality reaches trained alone: the ``unimodal`` run's own (fused) val accuracy at the last epoch."""
    return result.final("val/acc/fused")


def pct(x: float) -> str:
    """``0.734`` -> ``'73%'`` (``'n/a'`` for NaN)."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.0f}%"


def points(d: float) -> str:
    """An accuracy difference in percentage points, signed: ``-0.12`` -> ``'-12 points'``."""
    if not math.isfinite(d):
        return "n/a"
    n = round(100 * d)
    return f"{n:+d} point{'' if abs(n) == 1 else 's'}"
