"""A PostgreSQL workspace end to end: the CLI trains and forks a run into it (by URL), the dashboard shows it
(MMVIZ_WORKSPACE = the URL), and checkpoints land in the shared artifact folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmviz.launcher import available_checkpoints
from mmviz.store import open_store

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "synthetic", "--set", "data.n_train=240", "--set", "train.threads=1"]


def _train(url: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mmviz", "train", "--workspace", url, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


@pytest.mark.slow
def test_cli_and_dashboard_on_a_postgresql_workspace(postgres_workspace, open_page):
    parent = _train(postgres_workspace, *TINY, "--epochs", "2", "--name", "pg-parent")
    with open_store(postgres_workspace) as store:
        run = store.get_run(parent)
        assert run["status"] == "finished" and run["epochs_done"] == 2
        assert len(store.load_metrics(parent, keys=["val/acc/fused"])) == 2
        assert available_checkpoints(store, parent) == [0, 1, 2]
        assert str(store.run_dir(parent)).startswith(str(store.artifact_root))
        assert (store.run_dir(parent) / "checkpoints").is_dir()
    child = _train(postgres_workspace, "--fork", parent, "--fork-epoch", "1", "--method", "ogm_ge", "--epochs", "2")
    at = open_page(postgres_workspace, "runs")
    table = at.dataframe[0].value
    assert set(table["name"]) >= {"pg-parent"} and len(table) == 2
    assert set(table["status"]) == {"finished"}
    with open_store(postgres_workspace) as store:
        assert store.get_run(child)["parent_run_id"] == parent
