"""The sweep table: varying settings, results at the best-on-val and last epochs, mean ± sd over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmviz.analysis.sweep_results import compute_sweep_table, group_over_seeds, result_keys, varying_settings
from mmviz.viz.sweeps import plot_sweep_parallel


def _config(method: str, lr: float, seed: int) -> dict:
    params = {"alpha": 0.5} if method == "ogm_ge" else {}
    return {
        "dataset": "synthetic",
        "method": method,
        "method_params": params,
        "optim": {"lr": lr, "name": "sgd"},
        "train": {"seed": seed, "epochs": 3},
        "data": {"views": ["a", "b"]},
    }


def _trials():
    runs, rows = [], []
    i = 0
    for method in ("baseline", "ogm_ge"):
        for lr in (0.01, 0.1):
            for seed in (0, 1):
                rid = f"r{i}"
                runs.append(
                    {
                        "run_id": rid,
                        "name": f"s-{i:03d}",
                        "effective_status": "finished" if i != 7 else "running",
                        "config": _config(method, lr, seed),
                        "modalities": ["a", "b"],
                        "best_epoch": 2,
                    }
                )
                for epoch in (1, 2, 3):  # fused acc i/10 + epoch/100; probe accs and index likewise
                    for key, value in (
                        ("val/acc/fused", i / 10 + epoch / 100),
                        ("val/acc_probe/a", 0.5 + epoch / 100),
                        ("val/acc_probe/b", 0.3),
                        ("imbalance/index", epoch / 10),
                    ):
                        rows.append(
                            {
                                "run_id": rid,
                                "id": len(rows),
                                "step": epoch * 10,
                                "epoch": float(epoch),
                                "key": key,
                                "value": value,
                            }
                        )
                i += 1
    return pd.DataFrame(runs), pd.DataFrame(rows)


def test_varying_settings_leave_out_method_defaults():
    runs, _ = _trials()
    assert varying_settings(runs["config"]) == ["method", "optim.lr", "train.seed"]
    assert result_keys(["a", "b"]) == ["val/acc/fused", "val/acc_probe/a", "val/acc_probe/b", "imbalance/index"]


def test_table_reads_results_at_best_and_last_epoch():
    runs, metrics = _trials()
    table, settings, results = compute_sweep_table(runs, metrics.sample(frac=1.0, random_state=0))
    assert settings == ["method", "optim.lr", "train.seed"]
    assert results[:2] == ["fused acc @best", "fused acc @last"] and "probe acc b @last" in results
    row = table.set_index("run id").loc["r3"]
    assert row["method"] == "baseline" and row["optim.lr"] == 0.1 and row["train.seed"] == 1
    assert row["fused acc @best"] == pytest.approx(0.32) and row["fused acc @last"] == pytest.approx(0.33)
    assert row["probe acc a @best"] == pytest.approx(0.52) and row["imbalance @last"] == pytest.approx(0.3)


def test_group_over_seeds_gives_mean_and_sd_of_finished_trials():
    runs, metrics = _trials()
    table, settings, results = compute_sweep_table(runs, metrics)
    grouped = group_over_seeds(table, settings, results).set_index(["method", "optim.lr"])
    assert list(grouped["n"]) == [2, 2, 2, 1]  # r7 still runs
    first = grouped.loc[("baseline", 0.01)]
    assert first["fused acc @best mean"] == pytest.approx(np.mean([0.02, 0.12]))
    assert first["fused acc @best sd"] == pytest.approx(np.std([0.02, 0.12], ddof=1))
    assert np.isnan(grouped.loc[("ogm_ge", 0.1)]["fused acc @best sd"])  # one seed: no sd


def test_parallel_coordinates_have_an_axis_per_setting_and_the_result():
    runs, metrics = _trials()
    table, settings, _ = compute_sweep_table(runs, metrics)
    fig = plot_sweep_parallel(table, settings, "fused acc @last")
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["method", "optim.lr", "train.seed", "fused acc @last"]
    assert list(dims[0].ticktext) == ["baseline", "ogm_ge"] and list(dims[0].values[:5]) == [0, 0, 0, 0, 1]
    assert list(fig.data[0].line.color) == list(table["fused acc @last"])
    empty = plot_sweep_parallel(table.assign(x=np.nan), settings, "x")
    assert not empty.data and "No trial has a value" in empty.layout.annotations[0].text
