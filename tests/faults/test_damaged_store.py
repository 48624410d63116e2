"""A run store with damaged pages: every entry point names the file and the way out, and never writes to it."""

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = 4096


def mmviz(*args, workspace):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "mmviz", *args, "--workspace", str(workspace)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A workspace with one finished run whose 'runs' and 'metrics' table pages were overwritten with garbage."""
    ws = tmp_path_factory.mktemp("ws")
    proc = mmviz(
        "train", "--dataset", "synthetic", "--set", "data.n_train=240", "--epochs", "1", "--quiet", workspace=ws
    )
    assert proc.returncode == 0, proc.stderr
    db = ws / "mmviz.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master"))
    with open(db, "r+b") as fh:
        for table in ("runs", "metrics"):
            fh.seek((roots[table] - 1) * PAGE)
            fh.write(bytes([0x0D, 0xFF, 0xFF]) + os.urandom(PAGE - 3))  # a leaf page with an impossible header
    return ws, proc.stdout.split()[0]


def _digest(ws: Path) -> str:
    return hashlib.sha256((ws / "mmviz.db").read_bytes()).hexdigest()


def _assert_named(text: str, ws: Path) -> None:
    assert f"The run store {str(ws / 'mmviz.db')!r} is damaged" in text, text
    assert ".recover" in text and "-wal" in text and "new workspace" in text and "Traceback" not in text


@pytest.mark.parametrize("command", [["runs"], ["export", "RUN"], ["train", "--epochs", "1"]])
def test_cli_names_the_damaged_file_and_leaves_it_alone(damaged, command):
    ws, run_id = damaged
    before = _digest(ws)
    proc = mmviz(*[run_id if c == "RUN" else c for c in command], workspace=ws)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    _assert_named(proc.stderr, ws)
    assert _digest(ws) == before
    assert not proc.stdout  # train refused before a run existed: no run id printed


def test_runs_page_names_the_damaged_file(damaged, monkeypatch):
    from streamlit.testing.v1 import AppTest

    ws, _ = damaged
    before = _digest(ws)
    monkeypatch.setenv("MMVIZ_WORKSPACE", str(ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and at.error, at.exception
    _assert_named(re.sub(r"\\(.)", r"\1", at.error[0].value), ws)  # shown as literal (markdown-escaped) text
    assert _digest(ws) == before
