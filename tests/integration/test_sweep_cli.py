"""A CLI sweep with real trainer processes never runs more than N trials at once, and all of them finish."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmviz.store import open_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cli_sweep_runs_12_trials_never_more_than_2_at_once(tmp_path, tiny_run, peak_running):
    ws = tmp_path / "ws"
    out = subprocess.run(
        [
            sys.executable, "-m", "mmviz", "sweep", "--workspace", str(ws), "--dataset", "synthetic",
            "--method", "baseline,ogm_ge,agm", "--set", "optim.lr=0.01,0.05", "--seeds", "0,1", "--epochs", "2",
            *(a for s in tiny_run.sets for a in ("--set", s)), "--max-parallel", "2", "--wait", "--name", "three-by-two",
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
        assert peak_running(runs) <= 2
        assert peak_running(runs) == 2  # and the limit was used
