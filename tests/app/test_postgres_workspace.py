"""A PostgreSQL workspace end to end: the CLI trains and forks a run into it (by URL), the dashboard shows it
(MMVIZ_WORKSPACE = the URL), and checkpoints land in the shared artifact folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmviz.launcher import available_checkpoints, prepare_run
from mmviz.store import open_store
from mmviz.training.config import build_run_config
from mmviz.ui.frame import WORKSPACE_KEY

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


def test_the_sidebar_shows_a_workspace_password_as_stars(postgres_workspace, open_page):
    # every visitor of a dashboard sees its sidebar: the field showed the database password in clear text
    url = postgres_workspace.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@", 1)
    with open_store(url) as store:
        run_id = prepare_run(store, build_run_config("synthetic", "baseline", epochs=1), name="pg-shown")
    at = open_page(url, "runs")
    field = at.sidebar.text_input[0]
    assert field.value == url.replace(":s3cret-pw@", ":***@") and "s3cret-pw" not in field.value
    assert run_id in set(at.dataframe[0].value["run id"])  # the page reads the workspace with its password
    field.set_value(field.value.replace("?", "?connect_timeout=10&", 1)).run()  # an edit that keeps the ***
    assert not at.exception and not at.error, at.error
    assert at.session_state[WORKSPACE_KEY] == url.replace("?", "?connect_timeout=10&", 1)
    assert "s3cret-pw" not in at.sidebar.text_input[0].value


def test_the_cli_prints_a_workspace_password_as_stars(postgres_workspace, tmp_path):
    url = postgres_workspace.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@", 1)
    env = {**os.environ, "MMVIZ_WORKSPACE": url}
    empty = subprocess.run([sys.executable, "-m", "mmviz", "runs"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert empty.returncode == 0 and empty.stdout.startswith("No runs in postgresql://postgres:***@"), empty.stdout
    out = subprocess.run(
        [sys.executable, "-m", "mmviz", "train", *TINY, "--epochs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr  # the summary goes to terminals and log files
    assert "dashboard --workspace 'postgresql://postgres:***@" in out.stderr and "MMVIZ_WORKSPACE" in out.stderr
