"""The CLI under faults: empty names, bad fork files, stop on a lost run, exit codes, what it prints (items 3, 8, 9)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--dataset", "synthetic", "--set", "data.n_train=240", "--epochs", "2"]


def mmviz(*args, workspace=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "mmviz", *args] + (["--workspace", str(workspace)] if workspace else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    # analysis in the trainer: each epoch line can then show the probe accuracies and the imbalance index (with the
    # default analysis process they arrive later, and the summary shows them)
    proc = mmviz("train", *SHORT, "--set", "train.analysis=inline", workspace=ws)
    assert proc.returncode == 0, proc.stderr
    return ws, proc


def test_train_in_a_log_prints_epoch_lines_and_a_summary(finished):
    ws, proc = finished
    run_id = proc.stdout.splitlines()[0]
    assert proc.stdout.splitlines() == [run_id]  # scripts read the id; nothing else on stdout
    lines = proc.stderr.splitlines()
    assert [ln.split("  ")[0] for ln in lines[:2]] == ["epoch 1/2", "epoch 2/2"]
    assert "loss " in lines[1] and "val acc " in lines[1] and "probe acc a " in lines[1] and "imbalance " in lines[1]
    summary = "\n".join(lines[2:])
    assert summary.startswith(f"Run {run_id} finished.")
    for part in ("best epoch ", "test acc fused ", "imbalance index ", "wall time ", f"live?run={run_id}"):
        assert part in summary, part
    quiet = mmviz("train", *SHORT, "--quiet", workspace=ws)
    assert quiet.returncode == 0 and not any(ln.startswith("epoch ") for ln in quiet.stderr.splitlines())
    assert f"Run {quiet.stdout.strip()} finished." in quiet.stderr


@pytest.mark.parametrize("flag", ["--dataset", "--method"])
def test_empty_names_are_refused(tmp_path, flag):
    proc = mmviz("train", flag, "", workspace=tmp_path / "ws")
    assert proc.returncode == 2 and "name is empty" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "ws").exists()


def test_a_detached_ray_run_without_a_cluster_is_refused_before_anything_starts(tmp_path, monkeypatch):
    # without a cluster address Ray would start inside the command and end with it: the run stayed 'queued' for ever
    monkeypatch.delenv("MMVIZ_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    proc = mmviz("train", *SHORT, "--backend", "ray", "--detach", workspace=tmp_path / "ws")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--detach with --backend ray" in proc.stderr and "MMVIZ_RAY_ADDRESS" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "ws").exists()  # no run created, Ray never started


def test_fork_from_a_pickle_file_is_refused_in_one_sentence(finished):
    ws, proc = finished
    run_id = proc.stdout.splitlines()[0]
    ckpt = ws / "runs" / run_id / "checkpoints" / "epoch_0001.pt"
    whole = ckpt.read_bytes()
    before = json.loads(mmviz("runs", "--json", workspace=ws).stdout)
    try:
        ckpt.write_bytes(b"\x80\x04\x95")  # the start of a pickle
        bad = mmviz("train", "--fork", run_id, "--fork-epoch", "1", "--epochs", "3", workspace=ws)
    finally:
        ckpt.write_bytes(whole)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "is not an mmviz checkpoint" in bad.stderr and "weights_only" not in bad.stderr
    nothing = mmviz("train", "--fork", run_id, "--fork-epoch", "2", "--epochs", "2", workspace=ws)
    assert nothing.returncode == 2 and "Nothing to train" in nothing.stderr
    assert json.loads(mmviz("runs", "--json", workspace=ws).stdout) == before


def test_stop_on_a_lost_run_fails_and_stop_imports_no_torch(finished):
    ws, proc = finished
    run_id = proc.stdout.splitlines()[0]
    from mmviz.store import open_store

    with open_store(ws) as store:  # a run whose process died without a word: it shows 'lost'
        store.set_status(run_id, "running", pid=2**22 + 12345)
        assert store.get_run(run_id)["effective_status"] == "lost"
    probe = (
        "import sys; from mmviz.cli import main; code = main(sys.argv[1:]); "
        "print('torch' in sys.modules, code, file=sys.stderr)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", probe, "stop", run_id, "--workspace", str(ws)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert "is 'lost'" in out.stderr and out.stderr.strip().endswith("False 2"), out.stderr


def test_a_stopped_foreground_run_exits_3(tmp_path):
    ws = tmp_path / "ws"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "mmviz",
        "train",
        "--dataset",
        "synthetic",
        "--epochs",
        "10000",
        "--workspace",
        str(ws),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    run_id = proc.stdout.readline().strip()
    time.sleep(1.0)
    stop = mmviz("stop", run_id, "--wait", workspace=ws)
    assert stop.returncode == 0 and f"Run {run_id} is stopped." in stop.stdout, stop.stderr
    proc.wait(timeout=120)
    assert proc.returncode == 3 and f"Run {run_id} stopped." in proc.stderr.read()


@pytest.mark.parametrize("n", ["0", "-3"])
def test_a_random_sweep_of_no_trials_is_refused(tmp_path, n):
    # '--random 0' was taken for a grid sweep (0 read as 'not given') and queued a trial
    proc = mmviz("sweep", "--random", n, workspace=tmp_path / "ws")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"--random N with N >= 1. Got {n}" in proc.stderr and not proc.stdout
    assert not (tmp_path / "ws" / "runs").exists() or not any((tmp_path / "ws" / "runs").iterdir())
