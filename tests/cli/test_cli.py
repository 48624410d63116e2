"""The command line as a user runs it: real processes, one clear sentence for bad input, nothing written."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def mmviz(*args, workspace=None, check=False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "mmviz", *args]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    proc = mmviz(
        "train", "--dataset", "synthetic", "--set", "data.n_train=200", "--epochs", "2", workspace=ws, check=True
    )
    return ws, proc.stdout.strip().splitlines()[0]


def test_train_runs_export_round_trip(finished_run):
    ws, run_id = finished_run
    runs = json.loads(mmviz("runs", "--json", workspace=ws, check=True).stdout)
    assert runs[0]["run_id"] == run_id and runs[0]["effective_status"] == "finished"
    csv = mmviz("export", run_id, workspace=ws, check=True).stdout.splitlines()
    assert csv[0] == "run_id,step,epoch,wall_time,key,split,quantity,modality,value"
    assert any(",val/acc/fused,val,acc,fused," in line for line in csv)
    data = json.loads(mmviz("export", run_id, "--format", "json", workspace=ws, check=True).stdout)
    assert data["run"]["status"] == "finished" and len(data["metrics"]) == len(csv) - 1


def test_methods_and_datasets_listings():
    methods = json.loads(mmviz("methods", "--json", check=True).stdout)
    assert {"baseline", "unimodal"} <= {m["name"] for m in methods}
    datasets = json.loads(mmviz("datasets", "--json", check=True).stdout)
    assert {"mfeat", "avdigits", "synthetic", "arrays"} <= {d["name"] for d in datasets}
    mfeat = next(d for d in datasets if d["name"] == "mfeat")
    assert any(f["name"] == "views" and f["default"] == ["pix", "fou"] for f in mfeat["fields"])


BAD = [
    (["--dataset", "mfet"], "Unknown dataset 'mfet'. Did you mean 'mfeat'?"),
    (["--method", "basline"], "Unknown balancing method 'basline'. Did you mean 'baseline'?"),
    (["--set", "model.fusion=concatt"], "'fusion' parameter of ModelConfig must be one of"),
    (["--set", "data.views=pix,fuo"], "Did you mean 'fou'?"),
    (["--set", "optim.lrate=0.1"], "Unknown setting 'optim.lrate' for OptimConfig."),
    (["--set", "optim.lr=0"], "'lr' parameter of OptimConfig must be a float in (0, 10]. Got 0.0 instead."),
    (["--epochs", "0"], "'epochs' parameter of TrainConfig must be an integer in [1, 100000]. Got 0 instead."),
    (["--set", "train.batch_size=0"], "'batch_size' parameter of TrainConfig must be an integer"),
    (["--set", "data.val_fraction=1.5"], "'val_fraction' parameter of MfeatConfig must be a float in [0.01, 0.5]"),
    (["--set", "method.modality=audio", "--method", "unimodal"], "must be one of 'pix', 'fou'"),
    (["--set", "data.path=/nonexistent.npz", "--dataset", "arrays"], "no such file"),
    (["--fork-epoch", "2"], "--fork-epoch needs --fork RUN_ID"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, args, message):
    ws = tmp_path / "ws"
    proc = mmviz("train", *args, workspace=ws)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("mmviz: error: ")
    assert not ws.exists()


def test_fork_errors_change_nothing(finished_run):
    ws, run_id = finished_run
    before = mmviz("runs", "--json", workspace=ws, check=True).stdout
    proc = mmviz("train", "--fork", "nope", "--fork-epoch", "1", workspace=ws)
    assert proc.returncode == 2 and "No run 'nope'" in proc.stderr
    proc = mmviz("train", "--fork", run_id, "--fork-epoch", "9", workspace=ws)
    assert proc.returncode == 2 and "has no checkpoint for epoch 9. Available epochs: 0, 1, 2." in proc.stderr
    proc = mmviz("export", "nope", workspace=ws)
    assert proc.returncode == 2 and "No run 'nope'" in proc.stderr
    ckpt = ws / "runs" / run_id / "checkpoints" / "epoch_0001.pt"
    whole = ckpt.read_bytes()
    try:
        ckpt.write_bytes(whole[: len(whole) // 2])  # as a write killed half-way would leave it
        proc = mmviz("train", "--fork", run_id, "--fork-epoch", "1", workspace=ws)
        assert proc.returncode == 2 and "is cut short" in proc.stderr and proc.stderr.count("\n") == 1
    finally:
        ckpt.write_bytes(whole)
    assert mmviz("runs", "--json", workspace=ws, check=True).stdout == before


def test_workspace_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = mmviz("train", "--epochs", "1", workspace=blocker / "ws")
    assert proc.returncode == 2 and str(blocker) in proc.stderr


def test_foreign_file_and_newer_store_are_refused_untouched(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    db = ws / "mmviz.db"
    db.write_bytes(b"not a database at all" * 10)
    before = db.read_bytes()
    proc = mmviz("train", "--epochs", "1", workspace=ws)
    assert proc.returncode == 2 and "mmviz.db" in proc.stderr
    assert db.read_bytes() == before

    ws2 = tmp_path / "ws2"
    mmviz("runs", workspace=ws2, check=True)  # creates an empty store
    with sqlite3.connect(ws2 / "mmviz.db") as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    proc = mmviz("runs", workspace=ws2)
    assert proc.returncode == 2 and "newer" in proc.stderr


def test_malformed_arrays_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, a=np.zeros((10, 2)), b=np.zeros((9, 2)), label=np.arange(10) % 2)
    proc = mmviz("train", "--dataset", "arrays", "--set", f"data.path={path}", workspace=tmp_path / "ws")
    assert proc.returncode == 2 and "has 9 samples but there are 10 labels" in proc.stderr
    assert not (tmp_path / "ws").exists()
