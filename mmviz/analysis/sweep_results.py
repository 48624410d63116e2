"""A sweep's table of settings vs results, and its grouping over seeds (pandas only; no store, no streamlit).

Settings are the config fields that differ between the trials, named like ``--set`` keys (``method``,
``optim.lr``, ``method.alpha``, ``train.seed``). Results are read from each trial's metrics at two epochs: the
best-on-val epoch (the run's ``best_epoch``) and the last epoch that logged the key:

* ``fused acc``: ``val/acc/fused``;
* ``probe acc <m>``: ``val/acc_probe/<m>``, a linear probe on modality m's features;
* ``imbalance``: ``imbalance/index`` (0 = balanced, 1 = one modality carries all the accuracy).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

SEED = "train.seed"
WHEN = ("best", "last")
# (result name prefix, metric key template); <m> is each modality of the trial
RESULTS = (("fused acc", "val/acc/fused"), ("probe acc <m>", "val/acc_probe/<m>"), ("imbalance", "imbalance/index"))
SECTION_NAMES = {"method_params": "method", "data": "data", "model": "model", "optim": "optim", "train": "train"}


def result_keys(modalities: Iterable[str]) -> list[str]:
    """The metric keys the results are read from, for trials with these modalities."""
    keys = []
    for _, template in RESULTS:
        keys.extend(template.replace("<m>", m) for m in modalities) if "<m>" in template else keys.append(template)
    return keys


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{'method': 'ogm_ge', 'optim.lr': 0.01, 'method.alpha': 0.5, ...}``: a stored run config, flat."""
    out: dict[str, Any] = {"dataset": config.get("dataset"), "method": config.get("method")}
    for section, prefix in SECTION_NAMES.items():
        for key, value in (config.get(section) or {}).items():
            out[f"{prefix}.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return out


def varying_settings(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The flat config keys whose values differ between the trials (``method`` first, the seed last).

    A method's own settings (``method.*``) that differ only because the method differs (one value per method)
    are left out: they are the methods' defaults, not something the sweep varied.
    """
    flats = [flatten_config(c) for c in configs]
    keys = sorted({k for f in flats for k in f})

    def distinct(rows: list[dict], key: str) -> int:
        return len({json.dumps(f.get(key), default=str) for f in rows})

    by_method: dict[str, list[dict]] = {}
    for f in flats:
        by_method.setdefault(str(f.get("method")), []).append(f)
    varying = [
        k
        for k in keys
        if distinct(flats, k) > 1
        and not (k.startswith("method.") and all(distinct(rows, k) == 1 for rows in by_method.values()))
    ]
    return sorted(varying, key=lambda k: (k != "method", k == SEED, k))


def _value_at(series: pd.DataFrame, epoch: float | None) -> float:
    if series.empty:
        return float("nan")
    if epoch is None:
        return float(series["value"].iloc[-1])
    at = series[series["epoch"] == float(epoch)]
    return float(at["value"].iloc[-1]) if not at.empty else float("nan")


def compute_sweep_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per trial: run id, name, status, each varying setting, and each result at best and last epoch.

    Args:
        runs: the trials (runs-table rows with ``config``, ``modalities``, ``best_epoch``, ``effective_status``).
        metrics: tidy metric rows of the trials for :func:`result_keys` (any order).
    Returns:
        ``(table, settings, results)``: the table and the names of its setting and result columns.
    """
    settings = varying_settings(runs["config"]) if len(runs) > 1 else []
    modalities = sorted({m for ms in runs["modalities"] for m in (ms or [])})
    results = []
    for name, template in RESULTS:
        for m in modalities if "<m>" in template else [None]:
            label = name.replace("<m>", m) if m else name
            results.extend(f"{label} @{w}" for w in WHEN)
    ordered = metrics.sort_values(["run_id", "key", "step", "id"]) if not metrics.empty else metrics
    groups = {k: g for k, g in ordered.groupby(["run_id", "key"], sort=False)} if not ordered.empty else {}
    rows = []
    for run in runs.to_dict("records"):
        flat = flatten_config(run["config"])
        best = run.get("best_epoch")
        best = None if best is None or best != best else best
        row: dict[str, Any] = {"run id": run["run_id"], "name": run.get("name"), "status": run["effective_status"]}
        row.update({k: flat.get(k) for k in settings})
        for name, template in RESULTS:
            for m in modalities if "<m>" in template else [None]:
                label = name.replace("<m>", m) if m else name
                series = groups.get((run["run_id"], template.replace("<m>", m) if m else template), pd.DataFrame())
                row[f"{label} @best"] = _value_at(series, best) if best is not None else float("nan")
                row[f"{label} @last"] = _value_at(series, None)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["run id", "name", "status", *settings, *results])
    return table, settings, results


def group_over_seeds(table: pd.DataFrame, settings: list[str], results: list[str]) -> pd.DataFrame:
    """Mean and standard deviation of each result over the seeds of each configuration (``n`` trials each).

    Columns: the settings other than the seed, ``n``, then ``<result> mean`` and ``<result> sd`` (sample sd;
    NaN for a single seed). Only finished trials count.
    """
    keys = [s for s in settings if s != SEED]
    done = table[table["status"] == "finished"]
    cols = [*keys, "n", *(f"{r} {stat}" for r in results for stat in ("mean", "sd"))]
    if done.empty:
        return pd.DataFrame(columns=cols)
    if not keys:
        done = done.assign(_all="all")
        keys_used = ["_all"]
    else:
        keys_used = keys
    out = []
    for values, group in done.groupby(keys_used, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        row = dict(zip(keys, values, strict=False)) if keys else {}
        row["n"] = len(group)
        for r in results:
            data = pd.to_numeric(group[r], errors="coerce").dropna()
            row[f"{r} mean"] = float(data.mean()) if len(data) else np.nan
            row[f"{r} sd"] = float(data.std(ddof=1)) if len(data) > 1 else np.nan
        out.append(row)
    return pd.DataFrame(out, columns=cols)
