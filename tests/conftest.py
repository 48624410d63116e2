"""Shared fixtures: a workspace filled once per session by real short trainer runs, and throw-away copies of it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHORT_RUN = ["--dataset", "synthetic", "--set", "data.n_train=300", "--epochs", "3"]


def _train(workspace: Path, *args: str) -> str:
    """Run ``python -m mmviz train`` to the end; return the run id it printed."""
    out = subprocess.run(
        [sys.executable, "-m", "mmviz", "train", "--workspace", str(workspace), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout.split()[0]


@pytest.fixture(scope="session")
def filled_workspace(tmp_path_factory) -> dict:
    """A workspace with a finished 3-epoch synthetic run (``parent``) and a fork of it at epoch 2 (``child``).

    Treat it as read-only; tests that change a store use :func:`scratch_workspace`.
    """
    ws = tmp_path_factory.mktemp("filled-ws")
    parent = _train(ws, *SHORT_RUN, "--name", "parent-run")
    # --epochs: the ogm_ge recipe would otherwise make the fork a 30-epoch run (a fork keeps the total explicit)
    child = _train(
        ws, "--fork", parent, "--fork-epoch", "2", "--method", "ogm_ge", "--epochs", "3", "--name", "child-run"
    )
    return {"workspace": ws, "parent": parent, "child": child}


def stop_processes(workspace: Path) -> None:
    """Kill every trainer process the store in ``workspace`` still lists as alive (tests' own runs only)."""
    from mmviz.store import open_store, pid_alive

    with open_store(workspace) as store:
        for item in store.list_queue():  # nothing left for a scheduler to start afterwards
            store.cancel_queued(item["run_id"])
        for run in store.list_runs().to_dict("records"):
            pid = run.get("pid")
            if run["status"] in ("queued", "running") and pid and pid == pid and pid_alive(int(pid)):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def scratch_workspace(filled_workspace, tmp_path) -> dict:
    """A private copy of the filled workspace; trainer processes started in it are killed afterwards."""
    ws = tmp_path / "ws"
    shutil.copytree(filled_workspace["workspace"], ws)
    yield {**filled_workspace, "workspace": ws}
    stop_processes(ws)


@pytest.fixture(scope="session")
def kill_runs():
    """The :func:`stop_processes` helper, for fixtures that start runs through other processes (the e2e server)."""
    return stop_processes


@pytest.fixture(scope="session")
def lesson_workspace(tmp_path_factory) -> Path:
    """A workspace with every default lesson run (seed 0) trained once for the session (teach page and e2e)."""
    from mmviz.store import open_store
    from mmviz.teach.warm import warm_lessons

    ws = tmp_path_factory.getbasetemp() / "teach-lessons"
    if not (ws / "warm").is_file():
        with open_store(ws) as store:
            warm_lessons(store, in_process=True)
        (ws / "warm").write_text("ok\n")
    return ws


@pytest.fixture(scope="session")
def sweep_workspace(tmp_path_factory) -> dict:
    """A workspace with one finished sweep: 2 methods × 2 learning rates × 2 seeds of 2-epoch synthetic runs,
    trained in this process one after the other (no process start-up). Treat it as read-only."""
    from mmviz.store import open_store
    from mmviz.sweep import SweepSpec, parse_sets, start_sweep
    from mmviz.training.runner import run_training

    ws = tmp_path_factory.mktemp("sweep-ws")
    methods = ("baseline", "ogm_ge")
    params, fixed = parse_sets(["optim.lr=0.01,0.05", "data.n_train=240", "train.threads=1"], "synthetic", methods)
    spec = SweepSpec(methods=methods, params=params, seeds=(0, 1), dataset="synthetic", fixed=fixed, epochs=2)
    with open_store(ws) as store:
        sweep_id, run_ids = start_sweep(store, spec, name="lr-sweep", backend=None)
        for run_id in run_ids:
            assert run_training(store, run_id) == "finished"
    return {"workspace": ws, "sweep": sweep_id, "runs": run_ids}


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL cluster for the session (Debian's server binaries, a unix socket in a temporary
    folder); yields a URL template with ``{db}``. Skipped, saying why, when the binaries are absent."""
    import tempfile

    from mmviz.testing import postgres_bin, start_postgres, stop_postgres

    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed ('make system' installs Debian's postgresql).")
    folder = tempfile.mkdtemp(prefix="mmviz-pg-")  # not under pytest's root-only tmp: the server runs as postgres
    try:
        yield start_postgres(folder)
    finally:
        stop_postgres(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_workspace(postgres_server, tmp_path) -> str:
    """A ``postgresql://`` workspace URL on a fresh database, with its artifacts in ``tmp_path``."""
    import secrets

    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres_server.format(db="postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.format(db=name) + f"&artifacts={tmp_path / 'artifacts'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_workspace(request, tmp_path):
    """The same test on a SQLite workspace folder and on a PostgreSQL workspace URL."""
    if request.param == "sqlite":
        return tmp_path / "ws"
    return request.getfixturevalue("postgres_workspace")


class TinyRun(NamedTuple):
    """The ``--set`` values of a tiny synthetic run (seconds an epoch on one thread) and its steps per epoch."""

    sets: list[str]
    steps_per_epoch: int


@pytest.fixture(scope="session")
def tiny_run() -> TinyRun:
    """Settings of a tiny synthetic run, for tests that start many real runs (the queue, sweeps)."""
    n_train, batch_size = 240, 32
    sets = [f"data.n_train={n_train}", f"train.batch_size={batch_size}", "train.threads=1"]
    return TinyRun(sets, -(-n_train // batch_size))


def _wait_all(store, run_ids: list[str], timeout: float = 300.0):
    """The runs' rows (indexed by run id) once every one of them has ended; AssertionError after ``timeout``."""
    from mmviz.store import TERMINAL

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


@pytest.fixture(scope="session")
def wait_all():
    """``wait_all(store, run_ids, timeout=300)``: the runs' rows once all have ended (see :func:`_wait_all`)."""
    return _wait_all


@pytest.fixture(scope="session")
def peak_running():
    """``peak_running(runs)``: the most of ``runs`` that ran at once, from their start and finish times."""
    return _peak_running


APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def open_page(monkeypatch):
    """``open_page(workspace, 'live', run='ID')`` -> an AppTest that has run the page once (query params optional)."""
    from streamlit.testing.v1 import AppTest

    def open_(workspace, page: str, **query: str):
        monkeypatch.setenv("MMVIZ_WORKSPACE", str(workspace))
        at = AppTest.from_file(APP, default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        if page != "runs":
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
        return at

    return open_
