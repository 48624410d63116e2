"""mmviz.api: a user's loop becomes a run like a built-in one (store rows, status, heartbeats, refusals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import mmviz.api
from mmviz import launcher
from mmviz.cli import main as cli_main
from mmviz.errors import ConfigError
from mmviz.store import open_store
from mmviz.testing import missing_probe_families

ROOT = Path(__file__).resolve().parents[2]


def test_a_watched_loop_lands_in_the_store_like_a_built_in_run(tmp_path, tiny, loop):
    model, opt, train, val = tiny()
    with mmviz.api.watch(
        model, train_loader=train, val_loader=val, epochs=2, optimizer=opt, workspace=tmp_path, name="mine",
        settings={"lr": 0.1, "note": "<b>not html</b>"},
    ) as run:  # fmt: skip
        loop(run, model, opt, train, 2)
    store = open_store(tmp_path)
    row = store.get_run(run.run_id)
    assert (row["status"], row["origin"], row["epochs_done"], row["name"]) == ("finished", "api", 2, "mine")
    assert row["best_val_acc"] == run.best_val_acc > 0 and row["config"]["settings"]["note"] == "<b>not html</b>"
    assert row["config"]["train"]["epochs"] == 2 and row["modalities"] == ["a", "b"]
    keys = set(store.metric_keys(run.run_id))
    for family in ("train/loss", "train/acc/fused", "val/loss", "val/acc/fused", "val/acc/a", "lr"):
        assert family in keys
    assert not missing_probe_families(keys), missing_probe_families(keys)  # every probe's key family
    snaps = store.load_artifacts(run.run_id, "snapshot")
    assert list(snaps["epoch"]) == [1, 2]
    assert all((store.run_dir(run.run_id) / p).is_file() for p in snaps["path"])
    steps = store.load_metrics(run.run_id, ["train/loss"])["step"].tolist()
    assert steps == list(range(6))  # one row per optimiser step, steps counted like fit()'s


def test_probes_can_be_switched_off_or_retimed_and_bad_names_are_refused(tmp_path, tiny, loop):
    model, opt, train, val = tiny()
    probes = {"shapley": False, "imbalance": False, "grad_norm": {"every_n_steps": 2, "max_overhead": 0.0}}
    with mmviz.api.watch(model, train_loader=train, val_loader=val, epochs=1, workspace=tmp_path, probes=probes) as run:
        loop(run, model, opt, train, 1)
    store = open_store(tmp_path)
    keys = set(store.metric_keys(run.run_id))
    assert not any(k.startswith(("val/shapley", "imbalance/")) for k in keys)
    assert store.load_metrics(run.run_id, ["grad_norm/a"])["step"].tolist() == [0, 2]
    with pytest.raises(ConfigError, match="Unknown probe 'shapely'. Did you mean 'shapley'"):
        mmviz.api.watch(model, train_loader=train, epochs=1, workspace=tmp_path, probes={"shapely": False})
    with pytest.raises(ConfigError, match="Unknown balancing method 'ogm-ge'. Did you mean 'ogm_ge'"):
        mmviz.api.watch(model, train_loader=train, epochs=1, workspace=tmp_path, method="ogm-ge")
    assert len(store.list_runs()) == 1  # refused before anything was written


def test_a_method_that_changes_the_loss_asks_for_run_loss(tmp_path, tiny):
    model, opt, train, val = tiny()
    run = mmviz.api.watch(model, train_loader=train, epochs=1, optimizer=opt, method="pmr", workspace=tmp_path)
    batch = next(iter(train))
    out = model(batch)
    torch.nn.functional.cross_entropy(out.logits, batch["label"]).backward()
    with pytest.raises(ConfigError, match=r"Method 'pmr' changes the loss; compute it with run.loss\(out, batch\)"):
        run.after_backward(out, batch)
    run.close()


def test_a_model_outside_the_contract_is_refused_in_one_sentence(tmp_path, tiny):
    _, _, train, _ = tiny()
    with pytest.raises(
        ConfigError,
        match="model 'Linear' does not follow mmviz's model contract; wrap it with mmviz.adapter.ModelAdapter",
    ):
        mmviz.api.watch(torch.nn.Linear(2, 2), train_loader=train, epochs=1, workspace=tmp_path)


def test_an_exception_in_the_with_block_marks_the_run_failed(tmp_path, tiny):
    model, opt, train, val = tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with mmviz.api.watch(model, train_loader=train, epochs=3, workspace=tmp_path) as run:
            raise RuntimeError("boom")
    row = open_store(tmp_path).get_run(run.run_id)
    assert row["status"] == "failed" and row["error"] == "RuntimeError: boom"


def test_stop_from_the_dashboard_is_seen_by_the_loop_and_never_signals_it(tmp_path, tiny, loop):
    model, opt, train, val = tiny()
    run = mmviz.api.watch(model, train_loader=train, val_loader=val, epochs=3, optimizer=opt, workspace=tmp_path)
    store = open_store(tmp_path)
    launcher.stop(store, run.run_id, grace=0.01, wait=True)  # a built-in run would get SIGTERM here
    loop(run, model, opt, train, 1)
    assert run.should_stop
    run.close()
    assert store.get_run(run.run_id)["status"] == "stopped"


def test_restart_and_fork_are_refused_with_a_sentence(tmp_path, tiny, loop, capsys):
    model, opt, train, val = tiny()
    with mmviz.api.watch(model, train_loader=train, val_loader=val, epochs=1, workspace=tmp_path) as run:
        loop(run, model, opt, train, 1)
    store = open_store(tmp_path)
    with pytest.raises(
        ConfigError,
        match=rf"Run '{run.run_id}' was trained by your own code through mmviz.api, so mmviz cannot restart it",
    ):
        launcher.restart(store, run.run_id)
    with pytest.raises(ConfigError, match="so mmviz cannot fork it"):
        launcher.fork(store, run.run_id, 1)
    code = cli_main(["train", "--workspace", str(tmp_path), "--fork", run.run_id, "--fork-epoch", "1"])
    assert code != 0 and "so mmviz cannot fork it" in capsys.readouterr().err
    assert len(store.list_runs()) == 1


SCRIPT = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_setup, train_epochs
import mmviz.api
model, opt, train, val = tiny_setup()
run = mmviz.api.watch(model, train_loader=train, val_loader=val, epochs=50, optimizer=opt, workspace={ws!r})
print(run.run_id, flush=True)
train_epochs(run, model, opt, train, 1)
if {mode!r} == "crash":
    raise ValueError("the user's code broke")
if {mode!r} == "forget":
    sys.exit(0)  # no close(): finished at exit
time.sleep(60)
"""


def _script(tmp_path: Path, mode: str) -> subprocess.Popen:
    code = textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent), ws=str(tmp_path), mode=mode))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_crash_marks_failed_a_forgotten_close_finishes_and_a_kill_leaves_the_run_lost(tmp_path):
    crash, forget, killed = _script(tmp_path, "crash"), _script(tmp_path, "forget"), _script(tmp_path, "sleep")
    store = open_store(tmp_path)
    out, err = crash.communicate(timeout=180)
    assert crash.returncode == 1 and "the user's code broke" in err  # the user's traceback is still printed
    row = store.get_run(out.split()[0])
    assert row["status"] == "failed" and row["error"] == "ValueError: the user's code broke"
    out, _ = forget.communicate(timeout=180)
    assert forget.returncode == 0 and store.get_run(out.split()[0])["status"] == "finished"
    run_id = killed.stdout.readline().split()[0]
    deadline = time.time() + 180
    while store.get_run(run_id)["epochs_done"] < 1 and time.time() < deadline:
        time.sleep(0.2)
    assert store.get_run(run_id)["effective_status"] == "running"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    row = store.get_run(run_id)
    assert row["status"] == "running" and row["effective_status"] == "lost"  # dead pid on this host: lost at once


def test_tuple_batches_are_refused_in_one_sentence(tmp_path, tiny):
    model, _, _, _ = tiny()
    pairs = torch.utils.data.DataLoader([(torch.zeros(8), torch.zeros(6), 0)] * 4, batch_size=2)
    with pytest.raises(
        ConfigError,
        match=r"train loader's dataset yields tuple batches; mmviz needs dict batches \('a', 'b' and 'label'",
    ):
        mmviz.api.watch(model, train_loader=pairs, epochs=1, workspace=tmp_path)


def test_snapshots_follow_the_datasets_own_absolute_indices(tmp_path, loop):
    import numpy as np

    from mmviz.data import av_fixtures as fx
    from mmviz.data.av_benchmarks import CremadConfig
    from mmviz.data.registry import create_dataset
    from models import MultimodalNet

    data = create_dataset(
        "cremad", CremadConfig(root=str(fx.write_cremad(tmp_path / "c")), image_size=32, val_fraction=0.25)
    )
    model = MultimodalNet(
        [(s.name, s.kind, s.shape) for s in data.modalities], data.num_classes,
        encoders={"audio": "cnn1d", "visual": "resnet18_visual"}, feature_dim=16, hidden_dim=16,
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train = data.loader("train", 8)
    with mmviz.api.watch(
        model, train_loader=train, val_loader=data.loader("val", 8), epochs=1, optimizer=opt, workspace=tmp_path / "ws",
        probes={"shapley": False, "grad_conflict": False, "unimodal_acc": False, "separability": False},
    ) as run:  # fmt: skip
        assert set(run.ctx.probe_index) == set(data.splits["val"])  # absolute clip indices, as batches carry them
        loop(run, model, opt, train, 1)
    assert np.isfinite(run.last_eval.loss), run.last_eval.loss
    store = open_store(tmp_path / "ws")
    (path,) = store.load_artifacts(run.run_id, "snapshot")["path"]
    with np.load(store.run_dir(run.run_id) / path) as snap:
        assert sorted(snap["index"]) == sorted(data.splits["val"]) and snap["features_visual"].shape[0] == 6
