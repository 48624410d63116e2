"""The training loop: determinism, stored metrics and checkpoints, exact fork resume, stop, divergence."""

import time

import pytest
import torch

from mmviz.launcher import prepare_run
from mmviz.store import RunStore
from mmviz.training.checkpoint import checkpoint_path, load_checkpoint
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit
from mmviz.training.runner import run_training

SMALL = ["data.n_train=240", "train.batch_size=32"]


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_other_seed_differs():
    a = fit(build_run_config("synthetic", "baseline", SMALL, epochs=2, seed=3))
    b = fit(build_run_config("synthetic", "baseline", SMALL, epochs=2, seed=3))
    c = fit(build_run_config("synthetic", "baseline", SMALL, epochs=2, seed=4))
    pa, pb, pc = _params(a.model), _params(b.model), _params(c.model)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


def test_run_stores_metrics_checkpoints_and_test_result(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("mfeat", "baseline", ["train.batch_size=128"], epochs=3)
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["epochs_done"] == 3 and 0.5 < run["best_val_acc"] <= 1
    df = store.load_metrics(run_id)
    steps_per_epoch = -(-1400 // 128)
    assert (df.key == "train/loss").sum() == 3 * steps_per_epoch
    assert sorted(df[df.key == "train/loss"].step) == list(range(3 * steps_per_epoch))
    for key in ("val/acc/fused", "val/loss", "val/acc/pix", "val/acc/fou"):
        assert (df.key == key).sum() == 3
    for key in ("test/acc/fused", "test/acc/pix"):
        assert (df.key == key).sum() == 1
    row = df[df.key == "val/acc/fou"].iloc[0]
    assert (row.split, row.quantity, row.modality) == ("val", "acc", "fou")
    for epoch in range(4):
        assert checkpoint_path(store.run_dir(run_id), epoch).is_file()
    assert set(store.load_artifacts(run_id, kind="checkpoint").epoch) == {0, 1, 2, 3}
    assert "test_acc" in run["summary"]


def test_fork_with_same_settings_continues_bit_for_bit(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", SMALL + ["optim.name=sgd"], epochs=4)
    parent = prepare_run(store, cfg)
    assert run_training(store, parent) == "finished"
    child = prepare_run(store, cfg, parent_run_id=parent, fork_epoch=2)
    assert run_training(store, child) == "finished"
    start = load_checkpoint(checkpoint_path(store.run_dir(parent), 2))
    assert not (store.run_dir(child) / "checkpoints" / "epoch_0002.pt").exists()
    end_p = load_checkpoint(checkpoint_path(store.run_dir(parent), 4))
    end_c = load_checkpoint(checkpoint_path(store.run_dir(child), 4))
    assert end_c["step"] == end_p["step"]
    assert all(torch.equal(end_p["model"][k], end_c["model"][k]) for k in end_p["model"])
    assert not all(torch.equal(start["model"][k], end_c["model"][k]) for k in start["model"])
    events = store.load_events(child)
    assert "fork" in set(events.kind)
    # the child logs only its own steps, starting where the parent's checkpoint ended
    steps = store.load_metrics(child, keys=["train/loss"]).step
    assert steps.min() == start["step"]


def test_fork_with_another_optimizer_lr_uses_the_new_value(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", SMALL, epochs=2)
    parent = prepare_run(store, cfg)
    run_training(store, parent)
    cfg2 = build_run_config(base=cfg.to_dict(), sets=["optim.lr=0.0005"])
    child = prepare_run(store, cfg2, parent_run_id=parent, fork_epoch=1)
    assert run_training(store, child) == "finished"
    lrs = store.load_metrics(child, keys=["lr"]).value
    assert set(lrs) == {0.0005}


def test_stop_request_ends_stopped_with_checkpoint(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", SMALL, epochs=50)
    run_id = prepare_run(store, cfg)
    store.request_stop(run_id)
    assert run_training(store, run_id) == "stopped"
    assert store.get_run(run_id)["status"] == "stopped"
    assert (store.run_dir(run_id) / "checkpoints" / "stopped.pt").is_file()
    assert "stop" in set(store.load_events(run_id).kind)
    assert store.load_artifacts(run_id, kind="checkpoint_stop").path.tolist() == ["checkpoints/stopped.pt"]
    assert load_checkpoint(store.run_dir(run_id) / "checkpoints" / "stopped.pt")["step"] >= 0


def test_a_stop_ends_a_run_without_diagnostics_at_the_first_epoch_end(tmp_path, monkeypatch):
    """Without diagnostics the trainer writes to the store only every flush interval; it still reads the stop flag at
    every epoch end, so a Stop does not wait for the next write (a run shorter than the interval used to finish)."""
    import functools

    import mmviz.training.loop as loop
    from mmviz.probes import PROBES

    monkeypatch.setattr(loop, "MetricLogger", functools.partial(loop.MetricLogger, flush_interval=600.0))
    store = RunStore(tmp_path / "ws")
    off = [f"probes.{entry.name}.enabled=false" for entry in PROBES]
    cfg = build_run_config("synthetic", "baseline", SMALL + off, epochs=5)
    run_id = prepare_run(store, cfg)
    store.request_stop(run_id)
    assert run_training(store, run_id) == "stopped"
    assert store.get_run(run_id)["epochs_done"] == 1


def test_divergence_is_reported_with_the_step(tmp_path):
    import numpy as np

    y = np.repeat(np.arange(2), 30)
    np.savez(tmp_path / "huge.npz", a=np.full((60, 3), 3e38) * (y[:, None] * 2 - 1), b=np.ones((60, 2)), label=y)
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(
        "arrays", "baseline", [f"data.path={tmp_path / 'huge.npz'}", "data.standardize=false"], epochs=2
    )
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "diverged"
    run = store.get_run(run_id)
    assert run["status"] == "diverged" and "at step" in run["error"]


def test_three_modalities_and_fusion_without_split():
    r = fit(build_run_config("synthetic", "baseline", SMALL + ["data.preset=custom", "data.n_modalities=3"], epochs=1))
    assert set(r.test) >= {"test_acc", "test_acc_a", "test_acc_b", "test_acc_c"}
    r = fit(build_run_config("synthetic", "baseline", SMALL + ["model.fusion=film"], epochs=1))
    assert "test_acc_a" not in r.test and 0 <= r.test["test_acc"] <= 1


@pytest.mark.parametrize("dataset", ["mfeat", "avdigits", "synthetic"])
def test_each_bundled_dataset_learns(dataset):
    r = fit(build_run_config(dataset, "baseline", ["train.batch_size=128"], epochs=2))
    assert r.test["test_acc"] > 0.5


class CountingStore(RunStore):
    """The real store, counting its write transactions from the trainer (and those made between an epoch's steps:
    an epoch's end writes ``epochs_done``)."""

    writes = 0
    between_steps = 0

    def log_batch(self, run_id, rows, **extra):
        self.writes += 1
        self.between_steps += "epochs_done" not in (extra.get("heartbeat") or {})
        return super().log_batch(run_id, rows, **extra)


def test_short_epochs_share_one_store_write_and_lose_nothing(tmp_path, monkeypatch):
    import functools

    import mmviz.training.loop as loop
    from mmviz.probes import PROBES

    # a flush interval no run of this test reaches: what is counted is not how fast this machine is right now
    monkeypatch.setattr(loop, "MetricLogger", functools.partial(loop.MetricLogger, flush_interval=600.0))
    store = CountingStore(tmp_path / "ws")
    off = [f"probes.{entry.name}.enabled=false" for entry in PROBES]
    cfg = build_run_config("synthetic", "baseline", SMALL + off, epochs=8)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id))
    assert store.writes <= 2  # epochs without diagnostics share writes (here: the first flush and the last)
    df = store.load_metrics(run_id)
    assert (df.key == "val/acc/fused").sum() == 8 and (df.key == "train/acc/fused").sum() == 8
    assert sorted(store.load_artifacts(run_id, kind="checkpoint").epoch) == list(range(9))
    run = store.get_run(run_id)
    assert run["epochs_done"] == 8 and run["best_epoch"] >= 1


def test_epochs_shorter_than_the_flush_interval_write_at_their_ends_once_per_interval(tmp_path):
    from mmviz.probes import PROBES

    store = CountingStore(tmp_path / "ws")
    off = [f"probes.{entry.name}.enabled=false" for entry in PROBES]  # epochs with diagnostics write at their ends
    cfg = build_run_config("synthetic", "baseline", SMALL + off, epochs=40)  # ~10-40 ms an epoch
    run_id = prepare_run(store, cfg)
    start = time.monotonic()
    fit(cfg, store, run_id, store.run_dir(run_id))
    seconds = time.monotonic() - start
    assert store.writes <= seconds / 0.5 + 3  # about one write per 0.5 s flush interval, not one per epoch
    assert store.between_steps <= 1  # the first epoch's steps may write before its length is known; later ones not
    df = store.load_metrics(run_id)
    assert sorted(df[df.key == "val/acc/fused"].epoch) == [float(e) for e in range(1, 41)]
    assert (df.key == "sys/step_ms").sum() >= 40  # the steps' mean time: at least once per epoch


def test_weights_broken_at_an_epochs_last_step_end_the_run_as_diverged_before_probing(monkeypatch):
    import mmviz.training.loop as loop

    built = []
    original = loop.build_model
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: built.append(original(*a, **k)) or built[-1])

    def progress(info, values):  # called after each optimiser step: break the weights at epoch 1's last step
        if info.epoch == 1 and info.batch_index == info.batches_per_epoch - 1 and "loss" in values:
            with torch.no_grad():
                next(built[0].parameters()).fill_(float("nan"))

    with pytest.raises(loop.Diverged, match="validation loss became nan at step") as err:
        fit(build_run_config("synthetic", "baseline", SMALL, epochs=3), progress=progress)
    assert err.value.step == -(-240 // 32)  # the first epoch's steps, all with a finite training loss


def test_epoch_diagnostics_are_written_at_their_epochs_end(tmp_path):
    store = CountingStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", SMALL, epochs=4)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id))
    assert store.writes >= 4
    df = store.load_metrics(run_id)
    for key in ("imbalance/index", "sep/purity/a", "val/acc_ncm/b", "val/shapley/a"):
        assert sorted(df[df.key == key].epoch) == [1.0, 2.0, 3.0, 4.0], key
    assert sorted(store.load_artifacts(run_id, kind="snapshot").epoch) == [1, 2, 3, 4]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_logger_flushes_cuda_and_cpu_tensors_together():
    from mmviz.training.logger import MetricLogger
    from mmviz.training.loop import NullStore

    class Keep(NullStore):
        rows: list = []

        def log_batch(self, run_id, rows, **extra):
            self.rows.extend(rows)

    store = Keep()
    logger = MetricLogger(store, "r")
    logger.log("train/loss", torch.tensor(0.5, device="cuda"))
    logger.log("proto/intra/a", torch.tensor(2.0))
    logger.log("train/acc/fused", torch.tensor(0.25, device="cuda"))
    logger.flush()
    assert [(r[3], r[4]) for r in store.rows] == [
        ("train/loss", 0.5),
        ("proto/intra/a", 2.0),
        ("train/acc/fused", 0.25),
    ]


def test_checkpoint_every_n_epochs_and_forks_only_from_those(tmp_path):
    from mmviz.errors import ConfigError
    from mmviz.probes import PROBES

    store = RunStore(tmp_path / "ws")
    off = [f"probes.{entry.name}.enabled=false" for entry in PROBES]
    cfg = build_run_config("synthetic", "baseline", [*SMALL, *off, "train.checkpoint_every=3"], epochs=7)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id))
    assert sorted(store.load_artifacts(run_id, kind="checkpoint").epoch) == [0, 3, 6, 7]  # and the last
    assert sorted(p.name for p in (store.run_dir(run_id) / "checkpoints").iterdir()) == [
        "epoch_0000.pt", "epoch_0003.pt", "epoch_0006.pt", "epoch_0007.pt"
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="no checkpoint for epoch 4. Available epochs: 0, 3, 6, 7."):
        prepare_run(store, cfg, parent_run_id=run_id, fork_epoch=4)
    child = prepare_run(store, cfg, parent_run_id=run_id, fork_epoch=3)
    assert store.get_run(child)["fork_epoch"] == 3
