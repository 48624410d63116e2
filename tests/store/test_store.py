"""The run store against real databases, real threads and real writer processes.

Every test taking ``store`` runs twice: on SQLite (a workspace folder) and on PostgreSQL (a real server started for
the session; see ``postgres_server`` in ``tests/conftest.py``). The tests of opening a workspace folder take no
``store``: they are about SQLite's file (WAL mode, a file that is not a database, another application's database, a
newer schema, a folder that cannot be written), which a PostgreSQL workspace does not have.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from mmviz.errors import RunNotFoundError, StoreError
from mmviz.store import (
    LOST_AFTER_S,
    SCHEMA_VERSION,
    RunStore,
    default_workspace,
    open_store,
    open_store_for_reading,
    parse_key,
    pid_alive,
)

REPO = Path(__file__).resolve().parents[2]
MODALITIES = ["audio", "visual"]


def make_run(store: RunStore, **overrides) -> str:
    kwargs = dict(
        config={"lr": 0.01, "method": {"name": "ogm_ge", "alpha": 0.5}},
        name="demo",
        dataset="synthetic",
        method="ogm_ge",
        fusion="concat",
        modalities=MODALITIES,
    )
    kwargs.update(overrides)
    return store.create_run(**kwargs)


@pytest.fixture
def store(any_workspace):
    """An empty store: a SQLite workspace folder, then a database on the session's PostgreSQL server."""
    with open_store(any_workspace) as s:
        yield s


# ---------------------------------------------------------------- opening a workspace folder (SQLite only: its file)


def test_open_creates_workspace_schema_meta_and_wal(tmp_path: Path) -> None:
    ws = tmp_path / "nested" / "ws"
    with RunStore(ws):
        assert (ws / "runs").is_dir()
        probe = sqlite3.connect(ws / "mmviz.db")
        tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "runs", "metrics", "events", "artifacts"} <= tables
        assert dict(probe.execute("SELECT key, value FROM meta")) == {
            "app": "mmviz",
            "schema_version": str(SCHEMA_VERSION),
        }
        assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"metrics_run_key_step", "metrics_run_id"} <= indexes
        probe.close()
    with RunStore(ws) as again:  # reopening an existing store works and keeps one meta row per key
        assert again.list_runs().empty
        assert again._db.query("SELECT count(*) FROM meta") == [(2,)]


def test_default_workspace_reads_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MMVIZ_WORKSPACE", raising=False)
    assert default_workspace() == Path("./mmviz-runs")
    monkeypatch.setenv("MMVIZ_WORKSPACE", str(tmp_path / "elsewhere"))
    assert default_workspace() == tmp_path / "elsewhere"


def _refuses_unchanged(ws: Path, match: str) -> str:
    db = ws / "mmviz.db"
    before = db.read_bytes()
    with pytest.raises(StoreError, match=match) as info:
        RunStore(ws)
    assert db.read_bytes() == before
    wal = ws / "mmviz.db-wal"  # a reader of a WAL-mode file may leave an empty WAL beside it, never content
    assert not wal.exists() or wal.stat().st_size == 0
    assert str(db) in str(info.value)
    return str(info.value)


def test_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mmviz.db").write_bytes(b"these are my lab notes, not a database\n" * 100)
    _refuses_unchanged(ws, "not an SQLite database")


def test_refuses_a_folder_where_the_database_should_be(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "mmviz.db").mkdir(parents=True)
    with pytest.raises(StoreError, match="is a folder, not an SQLite database") as info:
        RunStore(ws)
    assert str(ws / "mmviz.db") in str(info.value) and (ws / "mmviz.db").is_dir()


def test_a_closed_store_says_so_and_is_not_opened_again(tmp_path: Path) -> None:
    """A connection closed for a fork opens again at its next use; one closed for good does not."""
    from mmviz.store.connection import closed_for_fork

    store = RunStore(tmp_path)
    run_id = make_run(store)
    with closed_for_fork():
        assert store._db._conn is None
    assert store.get_run(run_id)["name"] == "demo"  # reopened
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_run(run_id)


def test_refuses_a_foreign_sqlite_database(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    other = sqlite3.connect(ws / "mmviz.db")
    other.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    other.execute("INSERT INTO customers (name) VALUES ('ada')")
    other.commit()
    other.close()
    _refuses_unchanged(ws, "not an mmviz run store")


def test_refuses_a_meta_table_of_another_app(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    other = sqlite3.connect(ws / "mmviz.db")
    other.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    other.execute("INSERT INTO meta VALUES ('app', 'something-else')")
    other.commit()
    other.close()
    _refuses_unchanged(ws, "not an mmviz run store")


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with RunStore(ws) as s:
        make_run(s)
    bump = sqlite3.connect(ws / "mmviz.db")
    bump.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    bump.commit()
    bump.close()  # last connection: checkpoints the WAL into the main file and removes it
    message = _refuses_unchanged(ws, "newer mmviz")
    assert "upgrade mmviz" in message


def test_opening_the_store_again_keeps_what_a_connection_of_the_same_process_writes(tmp_path: Path) -> None:
    """A dashboard server opens the store for a page while its other sessions hold it open, and trainers write.

    Reading the file's first bytes with Python's ``open()`` and closing it drops every lock the process holds on
    the file (POSIX locks belong to the process, not to the descriptor): the next process to close the store then
    took it for unused, checkpointed it and deleted its WAL file, and the held connection wrote into the deleted
    file (lost, or "disk I/O error"; CI saw "database disk image is malformed")."""
    ws = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    other = [sys.executable, "-c", "import sys; from mmviz.store import RunStore; s = RunStore(sys.argv[1]); "
             "print(s.get_run(sys.argv[2])['name'] if len(sys.argv) > 2 else ''); s.close()", str(ws)]  # fmt: skip
    with RunStore(ws) as held:
        run_id = make_run(held)
        RunStore(ws).close()  # another page of the same server
        subprocess.run(other, env=env, cwd=REPO, check=True, timeout=120)  # another process opens and closes it
        for n in range(20):
            held.update_run(run_id, name=f"renamed {n}")
        seen = subprocess.run([*other, run_id], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert seen.returncode == 0 and seen.stdout.strip() == "renamed 19", seen.stderr
    with RunStore(ws) as again:
        assert again.get_run(run_id)["name"] == "renamed 19"
        assert again._db.query("PRAGMA integrity_check") == [("ok",)]


def test_refuses_a_workspace_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file where a folder should be")
    ws = blocker / "ws"
    with pytest.raises(StoreError, match="Cannot create the workspace folder") as info:
        RunStore(ws)
    assert str(ws) in str(info.value)
    assert blocker.read_text() == "a regular file where a folder should be"


def test_a_workspace_that_is_a_file_is_named_as_one(tmp_path: Path) -> None:
    afile = tmp_path / "runs.db"
    afile.write_text("not a folder")
    with pytest.raises(StoreError, match=r"is a file, not a folder; choose a folder") as info:
        RunStore(afile)
    assert str(afile) in str(info.value) and "File exists" not in str(info.value)
    assert afile.read_text() == "not a folder"


def as_unprivileged(fn) -> str:
    """``fn()``'s outcome as text (what it returns if text, else "ok"; "ErrorType: message" if it raises), run where
    file permissions apply: as root (which reads and writes any file) in a forked child that drops to ``nobody``,
    else in this process."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        try:
            result = fn()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return result if isinstance(result, str) else "ok"
    import pwd

    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no imports from here on (the interpreter's own files may be root's only)
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                result = fn()
                out = result if isinstance(result, str) else "ok"
            except Exception as exc:
                out = f"{type(exc).__name__}: {exc}"
            os.write(write, out.encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def open_folder():
    """A folder anyone may enter (pytest's tmp_path is its owner's only), removed afterwards."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mmviz-perm-"))
    folder.chmod(0o755)
    RunStore(folder / "warm").close()  # what opening a store imports is imported before any fork
    yield folder
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    shutil.rmtree(folder)


def test_refuses_a_read_only_workspace(open_folder: Path) -> None:
    ws = open_folder / "ro"
    ws.mkdir()
    (ws / "runs").mkdir()
    ws.chmod(0o555)
    out = as_unprivileged(lambda: RunStore(ws))
    assert out == (
        f"StoreError: The workspace folder {str(ws)!r} is not writable; choose a writable folder with --workspace or "
        "MMVIZ_WORKSPACE."
    )
    assert not (ws / "mmviz.db").exists()


def test_a_store_file_that_cannot_be_read_is_named_with_the_permission_to_fix(open_folder: Path) -> None:
    ws = open_folder / "ws"
    RunStore(ws).close()
    db = ws / "mmviz.db"
    before = db.read_bytes()
    os.chmod(ws, 0o777)
    db.chmod(0o000)  # someone else's store, private to them
    out = as_unprivileged(lambda: RunStore(ws))
    assert out == f"StoreError: Cannot read {str(db)!r} (permission denied); check its permissions."
    db.chmod(0o444)  # readable, not writable
    out = as_unprivileged(lambda: RunStore(ws))
    assert out == (
        f"StoreError: The run store {str(db)!r} is not writable; fix its permissions or choose another workspace."
    )
    assert db.read_bytes() == before and sorted(p.name for p in ws.iterdir()) == ["mmviz.db", "runs"]
    db.chmod(0o666)  # writable by anyone: it opens (the check refuses nothing it should not)
    assert as_unprivileged(lambda: RunStore(ws).close()) == "ok"


def read_only_tree(folder: Path) -> dict[str, bytes]:
    """Take write permission away from ``folder`` and everything in it; return its files' contents by name."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    for path in [*folder.rglob("*"), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return files


def listed_and_exported(ws: Path, run_id: str):
    """What a reading command sees in ``ws`` (runs, the run's metric rows), and what a write to it says."""

    def read() -> str:
        store = open_store_for_reading(ws)
        runs, rows = list(store.list_runs()["run_id"]), len(store.load_metrics(run_id))
        try:
            store.set_status(run_id, "failed")
            wrote = "written"
        except StoreError as exc:
            wrote = str(exc)
        store.close()
        return json.dumps([runs, rows, wrote])

    return read


def test_a_workspace_one_cannot_write_is_read_without_a_change(open_folder: Path, capfd) -> None:
    """``mmviz runs`` / ``export`` of another user's workspace, or a read-only mount: the old code refused it ("The
    workspace folder ... is not writable"), though they only read. Opened read-only, nothing in it changes and a write
    is refused with its own sentence; the commands that write still refuse the workspace."""
    ws = open_folder / "theirs"
    with RunStore(ws) as store:  # the owner's store, closed: no -wal or -shm file left
        run_id = make_run(store)
        store.log_batch(run_id, [(s, 0.0, 0.0, "train/loss", 1.0 / (s + 1)) for s in range(5)])
    before = read_only_tree(ws)
    out = as_unprivileged(listed_and_exported(ws, run_id))
    assert json.loads(out) == [
        [run_id],
        5,
        f"The run store {str(ws / 'mmviz.db')!r} is open for reading only (its folder is not writable); this needs a "
        "workspace you can write.",
    ]
    assert as_unprivileged(lambda: open_store(ws)).startswith(f"StoreError: The workspace folder {str(ws)!r} is not")
    from mmviz.cli import main

    capfd.readouterr()
    assert as_unprivileged(lambda: str(main(["runs", "--workspace", str(ws)]))) == "0"
    assert run_id in capfd.readouterr().out
    after = {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file()}
    assert after == before  # no -wal, -shm or journal made, no byte changed


def test_a_read_only_workspace_of_an_older_schema_or_empty_is_refused_in_a_sentence(open_folder: Path) -> None:
    """Upgrading an older store writes to it, and an empty file has no tables to read: each is one sentence, and the
    file stays as it was."""
    old = open_folder / "old"
    RunStore(old).close()
    with sqlite3.connect(old / "mmviz.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),))
    conn.close()
    empty = open_folder / "empty"
    empty.mkdir()
    (empty / "mmviz.db").touch()
    before = {**read_only_tree(old), **read_only_tree(empty)}
    db = str(old / "mmviz.db")
    assert as_unprivileged(lambda: open_store_for_reading(old)) == (
        f"StoreError: {db!r} was written by an older mmviz (schema {SCHEMA_VERSION - 1}, this mmviz reads "
        f"{SCHEMA_VERSION}) and cannot be upgraded here, where its folder is not writable; open it once where it can "
        "be written."
    )
    assert as_unprivileged(lambda: open_store_for_reading(empty)) == (
        f"StoreError: {str(empty / 'mmviz.db')!r} holds no mmviz runs yet (an empty store); choose the workspace of "
        "your runs."
    )
    assert {**read_only_tree(old), **read_only_tree(empty)} == before


def test_a_read_only_workspace_shows_what_its_open_writer_committed(open_folder: Path) -> None:
    """While the owner's process has the store open (its -wal and -shm files exist), a reader who cannot write the
    folder still sees every committed row, those in the -wal file too."""
    ws = open_folder / "busy"
    store = RunStore(ws)
    try:
        run_id = make_run(store)
        store._db.write(lambda c: c.execute("PRAGMA wal_autocheckpoint = 0"))  # the rows stay in the -wal file
        store.log_batch(run_id, [(s, 0.0, 0.0, "train/loss", 0.5) for s in range(7)])
        assert (ws / "mmviz.db-wal").stat().st_size > 0
        read_only_tree(ws)
        out = as_unprivileged(listed_and_exported(ws, run_id))
        assert json.loads(out)[:2] == [[run_id], 7]
    finally:
        for path in [ws, *ws.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        store.close()


# ---------------------------------------------------------------- runs


def test_run_round_trip(store: RunStore) -> None:
    run_id = make_run(store, tags=["baseline", "seed0"], device="cpu", version="0.1.0")
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run_id)
    assert json.loads((store.run_dir(run_id) / "config.json").read_text()) == {
        "lr": 0.01,
        "method": {"name": "ogm_ge", "alpha": 0.5},
    }
    run = store.get_run(run_id)
    assert run["status"] == run["effective_status"] == "queued"
    assert run["config"]["method"]["alpha"] == 0.5
    assert run["modalities"] == MODALITIES and run["tags"] == ["baseline", "seed0"]
    assert (run["dataset"], run["method"], run["fusion"], run["device"]) == ("synthetic", "ogm_ge", "concat", "cpu")
    assert run["started"] is None and run["finished"] is None and math.isnan(run["duration"])
    assert run["stop_requested"] is False and run["epochs_done"] == 0

    store.set_status(run_id, "running", pid=os.getpid())
    started = store.get_run(run_id)["started"]
    assert started is not None and store.get_run(run_id)["effective_status"] == "running"
    store.set_status(run_id, "running")  # 'started' is stamped once
    assert store.get_run(run_id)["started"] == started

    store.heartbeat(run_id, epochs_done=3, step=120, best_val_acc=0.75, best_epoch=2, summary={"gap": 0.1})
    store.set_tags(run_id, ["kept"])
    run = store.get_run(run_id)
    assert (run["epochs_done"], run["step"], run["best_val_acc"], run["best_epoch"]) == (3, 120, 0.75, 2)
    assert run["summary"] == {"gap": 0.1} and run["tags"] == ["kept"]

    store.set_status(run_id, "failed", error="CUDA out of memory")
    run = store.get_run(run_id)
    assert run["effective_status"] == "failed" and run["error"] == "CUDA out of memory"
    assert run["finished"] >= started and run["duration"] == run["finished"] - started

    with pytest.raises(ValueError, match="'crashed'"):
        store.set_status(run_id, "crashed")
    with pytest.raises(ValueError, match="'status'"):
        store.update_run(run_id, status="finished")


def test_fork_fields_and_list_runs_newest_first(store: RunStore) -> None:
    parent = make_run(store, name="parent")
    time.sleep(0.01)
    child = make_run(store, name="child", parent_run_id=parent, fork_epoch=4)
    runs = store.list_runs()
    assert list(runs["run_id"]) == [child, parent]
    assert {"effective_status", "duration", "config", "tags"} <= set(runs.columns)
    row = runs.set_index("run_id").loc[child]
    assert row["parent_run_id"] == parent and row["fork_epoch"] == 4 and row["modalities"] == MODALITIES
    with pytest.raises(StoreError, match="already exists"):
        make_run(store, run_id=child)


def test_unknown_run_names_workspace_and_suggests(store: RunStore) -> None:
    run_id = make_run(store)
    typo = run_id[:-1] + ("0" if run_id[-1] != "0" else "1")
    with pytest.raises(RunNotFoundError) as info:
        store.get_run(typo)
    message = str(info.value)
    assert repr(typo) in message and str(store.workspace) in message
    assert f"Did you mean {run_id!r}?" in message and "Recent runs:" in message
    for call in (lambda: store.log_batch(typo, [(0, 0.0, 0.0, "train/loss", 1.0)]), lambda: store.request_stop(typo)):
        with pytest.raises(RunNotFoundError):
            call()


def test_stop_request_round_trip(store: RunStore) -> None:
    run_id = make_run(store)
    assert store.stop_requested(run_id) is False
    store.request_stop(run_id)
    assert store.stop_requested(run_id) is True
    assert store.get_run(run_id)["stop_requested"] is True


# ---------------------------------------------------------------- lost detection


def test_dead_pid_on_this_host_is_lost(store: RunStore) -> None:
    run_id = make_run(store)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.set_status(run_id, "running", pid=proc.pid)
    assert store.get_run(run_id)["status"] == "running"
    assert store.get_run(run_id)["effective_status"] == "lost"
    runs = store.list_runs()
    assert runs.loc[runs["run_id"] == run_id, "effective_status"].item() == "lost"


def test_queued_with_dead_pid_is_lost(store: RunStore) -> None:
    run_id = make_run(store)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.set_status(run_id, "queued", pid=proc.pid)
    assert store.get_run(run_id)["effective_status"] == "lost"


def test_launcher_pid_counts_as_a_sign_of_life(store: RunStore) -> None:
    run_id = make_run(store)
    store.update_run(run_id, pid=os.getpid())  # what the launcher records right after spawning the trainer
    run = store.get_run(run_id)
    assert run["host"] and run["heartbeat"] is not None and run["effective_status"] == "queued"
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.update_run(run_id, pid=proc.pid)
    assert store.get_run(run_id)["effective_status"] == "lost"


def test_stale_heartbeat_is_lost_even_with_a_live_pid(store: RunStore) -> None:
    run_id = make_run(store)
    store.set_status(run_id, "running", pid=os.getpid())
    assert store.get_run(run_id)["effective_status"] == "running"
    store.update_run(run_id, heartbeat=time.time() - LOST_AFTER_S - 1)
    assert store.get_run(run_id)["effective_status"] == "lost"
    store.heartbeat(run_id)
    assert store.get_run(run_id)["effective_status"] == "running"
    store.set_status(run_id, "finished")
    store.update_run(run_id, heartbeat=time.time() - 3600)
    assert store.get_run(run_id)["effective_status"] == "finished"  # only active runs can be lost


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_zombie_process_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.02)
        assert state == "Z"
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()
    assert pid_alive(os.getpid())
    assert not pid_alive(None) and not pid_alive(0)


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("val/acc/audio", ("val", "acc", "audio")),
        ("val/acc/fused", ("val", "acc", "fused")),
        ("grad_norm_pre/visual", (None, "grad_norm_pre", "visual")),
        ("train/loss", ("train", "loss", None)),
        ("coef/ogm_ge/audio", (None, "coef/ogm_ge", "audio")),
        ("sys/step_ms", (None, "sys/step_ms", None)),
        ("test/acc/text", ("test", "acc/text", None)),  # 'text' is not one of this run's modalities
        ("audio", (None, "audio", None)),  # the quantity is never empty
    ],
)
def test_key_is_split_into_split_quantity_modality(store: RunStore, key: str, expected: tuple) -> None:
    assert parse_key(key, MODALITIES) == expected
    run_id = make_run(store)
    store.log_batch(run_id, [(1, 0.5, 100.0, key, 2.0)])
    row = store.load_metrics(run_id).iloc[0]
    stored = tuple(None if pd.isna(v) else v for v in (row["split"], row["quantity"], row["modality"]))
    assert (row["key"], stored) == (key, expected)
    raw = store._db.query("SELECT split, quantity, modality FROM metrics WHERE run_id = ?", (run_id,))
    assert raw == [expected]


@pytest.mark.parametrize("bad", ["Val/acc", "val//acc", "val/acc/", "/loss", "val acc", "val/acc-top1", ""])
def test_malformed_key_rejects_the_whole_batch(store: RunStore, bad: str) -> None:
    run_id = make_run(store)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        store.log_batch(run_id, [(0, 0.0, 0.0, "train/loss", 1.0), (0, 0.0, 0.0, bad, 1.0)])
    assert store.load_metrics(run_id).empty


def test_metrics_round_trip_order_dtypes_and_non_finite(store: RunStore) -> None:
    run_id = make_run(store)
    rows = [
        (2, 0.2, 10.2, "val/acc/audio", 0.6),
        (1, 0.1, 10.1, "val/acc/audio", 0.5),
        (1, 0.1, 10.1, "train/loss", float("inf")),
        (2, 0.2, 10.2, "train/loss", float("nan")),
        (1, 0.1, 10.1, "val/acc/audio", 0.55),  # same step logged twice: kept, ordered by id
    ]
    assert store.log_batch(run_id, rows) == 5
    df = store.load_metrics(run_id)
    assert list(df.columns) == [
        "run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"
    ]  # fmt: skip
    assert {c: str(df[c].dtype) for c in ("id", "step", "epoch", "wall_time", "value")} == {
        "id": "int64",
        "step": "int64",
        "epoch": "float64",
        "wall_time": "float64",
        "value": "float64",
    }
    assert list(zip(df["key"], df["step"], strict=True)) == [
        ("train/loss", 1),
        ("train/loss", 2),
        ("val/acc/audio", 1),
        ("val/acc/audio", 1),
        ("val/acc/audio", 2),
    ]
    assert df["value"].iloc[0] == float("inf") and math.isnan(df["value"].iloc[1])
    assert list(df["value"].iloc[2:]) == [0.5, 0.55, 0.6]
    assert df["id"].iloc[2] < df["id"].iloc[3]
    assert store.metric_keys(run_id) == ["train/loss", "val/acc/audio"]


def test_incremental_and_filtered_reads(store: RunStore) -> None:
    a, b = make_run(store, name="a"), make_run(store, name="b")
    keys = ["train/loss", "val/acc/audio", "grad_norm/audio", "grad_norm_pre/audio"]
    store.log_batch(a, [(s, s / 10, 0.0, k, float(s)) for s in range(10) for k in keys])
    store.log_batch(b, [(s, s / 10, 0.0, "train/loss", float(s)) for s in range(5)])

    first = store.load_metrics(a)
    assert len(first) == 40
    held = int(first["id"].max())
    assert store.load_metrics(a, after_id=held).empty
    store.log_batch(a, [(s, s / 10, 0.0, k, float(s)) for s in range(10, 13) for k in keys])
    new = store.load_metrics(a, after_id=held)
    assert len(new) == 12 and (new["id"] > held).all() and set(new["step"]) == {10, 11, 12}

    assert set(store.load_metrics(a, after_step=10)["step"]) == {11, 12}
    only = store.load_metrics(a, ["val/acc/audio"])
    assert set(only["key"]) == {"val/acc/audio"} and len(only) == 13
    assert store.load_metrics(a, []).empty
    # '_' is literal in a prefix, and 'grad_norm/' does not match 'grad_norm_pre/...'
    assert set(store.load_metrics(a, key_prefix="grad_norm/")["key"]) == {"grad_norm/audio"}
    assert set(store.load_metrics(a, key_prefix="grad_norm")["key"]) == {"grad_norm/audio", "grad_norm_pre/audio"}
    assert set(store.load_metrics(a, keys, key_prefix="val/")["key"]) == {"val/acc/audio"}

    both = store.load_metrics([b, a], ["train/loss"])
    assert list(both["run_id"].unique()) == sorted([a, b])
    assert len(both) == 13 + 5
    assert store.load_metrics("no-such-run").empty


def test_events_and_artifacts(store: RunStore) -> None:
    run_id = make_run(store)
    store.log_events(run_id, [(5, 1.0, 1.0, "epoch_end", {"epoch": 1}), (9, 2.0, 2.0, "diverged", None)])
    events = store.load_events(run_id)
    assert list(events["kind"]) == ["epoch_end", "diverged"]
    assert list(events["payload"]) == [{"epoch": 1}, {}]
    assert store.load_events([run_id], after_id=int(events["id"].iloc[0]))["kind"].tolist() == ["diverged"]

    ckpt = store.run_dir(run_id) / "checkpoints" / "epoch_2.pt"
    store.add_artifact(run_id, 2, "checkpoint", ckpt, {"bytes": 10})
    store.add_artifact(run_id, 1, "snapshot", "snapshots/epoch_1.npz")
    arts = store.load_artifacts(run_id)
    assert list(arts["path"]) == ["snapshots/epoch_1.npz", "checkpoints/epoch_2.pt"]
    only = store.load_artifacts(run_id, kind="checkpoint")
    assert only["meta"].tolist() == [{"bytes": 10}] and only["epoch"].tolist() == [2]
    with pytest.raises(ValueError, match="outside the run folder"):
        store.add_artifact(run_id, 1, "checkpoint", store.artifact_root / "elsewhere.pt")


def test_one_log_batch_writes_rows_events_artifacts_and_heartbeat_together(store: RunStore) -> None:
    run_id = make_run(store)
    before = store.get_run(run_id)["heartbeat"]
    n = store.log_batch(
        run_id,
        [(3, 0.5, 1.0, "train/loss", 0.7)],
        events=[(3, 0.5, 1.0, "reinit", {"modality": "audio"})],
        artifacts=[(1, "checkpoint", "checkpoints/epoch_0001.pt", None)],
        heartbeat={"step": 3, "epochs_done": 1, "best_val_acc": 0.5},
    )
    assert n == 1
    run = store.get_run(run_id)
    assert (run["step"], run["epochs_done"], run["best_val_acc"]) == (3, 1, 0.5)
    assert run["heartbeat"] is not None and (before is None or run["heartbeat"] >= before)
    assert store.load_events(run_id)["kind"].tolist() == ["reinit"]
    assert store.load_artifacts(run_id)["path"].tolist() == ["checkpoints/epoch_0001.pt"]
    # one bad part rejects the whole transaction: nothing of it is stored
    with pytest.raises(ValueError, match="outside the run folder"):
        store.log_batch(
            run_id,
            [(4, 0.6, 2.0, "train/loss", 0.6)],
            events=[(4, 0.6, 2.0, "stop", None)],
            artifacts=[(2, "checkpoint", store.artifact_root / "elsewhere.pt", None)],
            heartbeat={"step": 4},
        )
    with pytest.raises(ValueError, match="Cannot update run field"):
        store.log_batch(run_id, [(4, 0.6, 2.0, "train/loss", 0.6)], heartbeat={"status": "finished"})
    assert len(store.load_metrics(run_id)) == 1 and len(store.load_events(run_id)) == 1
    assert store.get_run(run_id)["step"] == 3


# ---------------------------------------------------------------- delete


def test_delete_removes_rows_and_folder_but_not_a_live_run(store: RunStore) -> None:
    keep, gone = make_run(store, name="keep"), make_run(store, name="gone")
    for run_id in (keep, gone):
        store.log_batch(run_id, [(1, 0.0, 0.0, "train/loss", 1.0)])
        store.log_events(run_id, [(1, 0.0, 0.0, "note", {})])
        store.add_artifact(run_id, 0, "snapshot", "snapshots/e0.npz")
    (store.run_dir(gone) / "snapshots").mkdir()
    (store.run_dir(gone) / "snapshots" / "e0.npz").write_bytes(b"\0" * 16)

    store.set_status(gone, "running", pid=os.getpid())
    with pytest.raises(StoreError, match="still running"):
        store.delete_run(gone)
    assert store.run_dir(gone).exists()

    store.set_status(gone, "stopped")
    store.delete_run(gone)
    assert not store.run_dir(gone).exists()
    with pytest.raises(RunNotFoundError):
        store.get_run(gone)
    for table in ("metrics", "events", "artifacts", "runs"):
        assert store._db.query(f"SELECT count(*) FROM {table} WHERE run_id = ?", (gone,)) == [(0,)]
        assert store._db.query(f"SELECT count(*) FROM {table} WHERE run_id = ?", (keep,)) == [(1,)]
    assert store.run_dir(keep).exists()


# ---------------------------------------------------------------- concurrency

WRITER = textwrap.dedent(
    """
    import sys, time
    from mmviz.store import open_store
    workspace, run_id, n_rows, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    keys = ["train/loss", "val/acc/audio", "val/acc/visual", "grad_norm/audio", "grad_norm/visual"]
    with open_store(workspace) as store:
        store.set_status(run_id, "running")
        for start in range(0, n_rows, batch):
            rows = [(i, i / 100, time.time(), keys[i % len(keys)], float(i)) for i in range(start, start + batch)]
            store.log_batch(run_id, rows)
            store.heartbeat(run_id, step=start + batch)
        store.set_status(run_id, "finished")
    """
)


def test_three_writer_processes_lose_nothing_while_a_reader_polls(any_workspace) -> None:
    ws, n_rows, batch = any_workspace, 3000, 50
    with open_store(ws) as store:
        run_ids = [make_run(store, name=f"w{i}") for i in range(3)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(ws), run_id, str(n_rows), str(batch)],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for run_id in run_ids
        ]
        # Poll like a live page: hold the largest id seen, read only newer rows, never see a row twice.
        seen: list[pd.DataFrame] = []
        held, counts = 0, []
        while True:
            finished = all(p.poll() is not None for p in procs)
            new = store.load_metrics(run_ids, after_id=held)
            if not new.empty:
                assert (new["id"] > held).all()
                held = int(new["id"].max())
                seen.append(new)
            counts.append(sum(len(f) for f in seen))
            if finished:
                break
            time.sleep(0.01)
        errors = [p.stderr.read() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errors

        final = store.load_metrics(run_ids)
        assert len(final) == 3 * n_rows
        for run_id in run_ids:
            mine = final[final["run_id"] == run_id]
            assert len(mine) == n_rows and sorted(mine["step"]) == list(range(n_rows))
            assert store.get_run(run_id)["status"] == "finished"
            assert store.get_run(run_id)["step"] == n_rows
        polled = pd.concat(seen)
        assert polled["id"].is_unique and set(polled["id"]) == set(final["id"])
        assert counts == sorted(counts) and len(counts) > 1


def test_threads_share_one_store(store: RunStore) -> None:
    run_id = make_run(store)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for start in range(0, 500, 25):
                store.log_batch(run_id, [(offset + i, 0.0, 0.0, "train/loss", 1.0) for i in range(start, start + 25)])
                store.load_metrics(run_id, after_id=0)
                store.heartbeat(run_id)
        except BaseException as exc:  # surfaced below with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.load_metrics(run_id)) == 4 * 500
