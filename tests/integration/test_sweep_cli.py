"""A CLI sweep with real trainer processes never runs more than N trials at once, and all of them finish."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmviz.store import TERMINAL, open_store

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.n_train=240", "train.batch_size=32", "train.threads=1"]
STEPS = 240 // 32 + 1


def _wait_all(store, run_ids, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store.list_runs().set_index("run_id").loc[run_ids]
        if runs["status"].isin(TERMINAL).all():
            return runs
        time.sleep(0.5)
    raise AssertionError(f"runs did not end in {timeout}s: {store.list_runs()[['run_id', 'status']]}")


def _peak_running(runs) -> int:
    """The most runs whose [started, finished] intervals overlap."""
    edges = sorted([(t, 1) for t in runs["started"]] + [(t, -1) for t in runs["finished"]])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_cli_sweep_runs_12_trials_never_more_than_2_at_once(tmp_path):
    ws = tmp_path / "ws"
    out = subprocess.run(
        [
            sys.executable, "-m", "mmviz", "sweep", "--workspace", str(ws), "--dataset", "synthetic",
            "--method", "baseline,ogm_ge,agm", "--set", "optim.lr=0.01,0.05", "--seeds", "0,1", "--epochs", "2",
            *(a for s in TINY for a in ("--set", s)), "--max-parallel", "2", "--wait", "--name", "three-by-two",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    sweep_id, *run_ids = out.stdout.split()
    assert len(run_ids) == 12
    with open_store(ws) as store:
        runs = store.list_runs().set_index("run_id").loc[run_ids]
        assert set(runs["status"]) == {"finished"}
        assert all(f"sweep:{sweep_id}" in tags for tags in runs["tags"])
        assert sorted(runs["method"].value_counts().tolist()) == [4, 4, 4]
        assert _peak_running(runs) <= 2
        assert _peak_running(runs) == 2  # and the limit was used
