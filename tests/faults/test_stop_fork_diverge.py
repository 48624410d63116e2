"""Stop points, forks that cannot train, empty names and divergence (issue 12 items 6, 7, 9, 13)."""

import pytest

from mmviz.errors import ConfigError
from mmviz.launcher import available_checkpoints, prepare_run, stop_checkpoint
from mmviz.store import RunStore
from mmviz.training.checkpoint import checkpoint_path, load_checkpoint
from mmviz.training.config import build_run_config
from mmviz.training.loop import Diverged, StopTraining, fit
from mmviz.training.runner import run_training

SMALL = ["data.n_train=240", "train.batch_size=32"]  # 8 steps per epoch


def _stop_when(predicate):
    """A ``should_stop`` and ``progress`` pair: stop once ``predicate(info, values)`` was true."""
    flag = []

    def progress(info, values):
        if predicate(info, values):
            flag.append(True)

    return (lambda: bool(flag)), progress


def test_stop_at_an_epoch_end_is_labelled_with_that_epoch_and_forkable(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", [*SMALL, "train.checkpoint_every=5"], epochs=10)
    run_id = prepare_run(store, cfg)
    should_stop, progress = _stop_when(lambda info, v: v.get("epoch_done") == 2)
    with pytest.raises(StopTraining):
        fit(cfg, store, run_id, store.run_dir(run_id), should_stop=should_stop, progress=progress)
    stopped = load_checkpoint(store.run_dir(run_id) / "checkpoints" / "stopped.pt")
    assert (stopped["epoch"], stopped["step"]) == (2, 16)  # 2 whole epochs of 8 steps (was labelled 1)
    assert store.load_artifacts(run_id, kind="checkpoint_stop").epoch.tolist() == [2]
    # the stop point is an epoch boundary: it is that epoch's checkpoint too, although checkpoint_every skipped it
    assert 2 in available_checkpoints(store, run_id)
    assert load_checkpoint(checkpoint_path(store.run_dir(run_id), 2))["step"] == 16
    assert stop_checkpoint(store, run_id) == (2, 16)


def test_fork_from_a_stop_in_the_middle_of_an_epoch(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", SMALL, epochs=4)
    run_id = prepare_run(store, cfg)
    should_stop, progress = _stop_when(lambda info, v: info.step == 11)  # the 4th step of epoch 2
    with pytest.raises(StopTraining):
        fit(cfg, store, run_id, store.run_dir(run_id), should_stop=should_stop, progress=progress)
    store.set_status(run_id, "stopped")
    assert stop_checkpoint(store, run_id) == (1, 12)
    assert available_checkpoints(store, run_id) == [0, 1]  # no epoch checkpoint for a point inside epoch 2
    child = prepare_run(store, cfg, parent_run_id=run_id, fork_epoch="stopped")
    assert store.get_run(child)["fork_epoch"] == 1
    assert run_training(store, child) == "finished"
    steps = store.load_metrics(child, ["train/loss"]).step
    assert steps.min() == 12  # it resumed the stopped weights, not epoch 1's checkpoint
    with pytest.raises(ConfigError, match="The fork epoch must be a checkpoint's epoch number or 'stopped'"):
        prepare_run(store, cfg, parent_run_id=run_id, fork_epoch="last")
    with pytest.raises(ConfigError, match="has no stop checkpoint"):
        prepare_run(store, cfg, parent_run_id=child, fork_epoch="stopped")


def test_a_fork_with_nothing_left_to_train_is_refused_before_a_run_exists(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", SMALL, epochs=2)
    parent = prepare_run(store, cfg)
    assert run_training(store, parent) == "finished"
    before = len(store.list_runs())
    for epochs in (1, 2):
        with pytest.raises(ConfigError, match="Nothing to train: the fork starts after epoch 2"):
            prepare_run(store, build_run_config(base=cfg.to_dict(), epochs=epochs), parent_run_id=parent, fork_epoch=2)
    assert len(store.list_runs()) == before


def test_no_run_stores_minus_one_as_its_accuracy(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", ["data.n_train=6000", "train.batch_size=4"], epochs=1)
    run_id = prepare_run(store, cfg)
    store.request_stop(run_id)  # seen at the first flush (0.5 s), long before the epoch's evaluation
    assert run_training(store, run_id) == "stopped"
    assert store.get_run(run_id)["best_val_acc"] is None


@pytest.mark.parametrize("field", ["dataset", "method"])
def test_an_empty_dataset_or_method_is_refused(field):
    with pytest.raises(ConfigError, match=f"The {field} name is empty"):
        build_run_config(**{field: ""})


def test_divergence_stops_at_the_step_where_the_loss_broke(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "baseline", [*SMALL, "optim.name=sgd", "optim.lr=10"], epochs=20)
    run_id = prepare_run(store, cfg)
    with pytest.raises(Diverged) as caught:
        fit(cfg, store, run_id, store.run_dir(run_id))
    losses = store.load_metrics(run_id, ["train/loss"])
    bad = losses[~losses.value.apply(lambda v: v == v and abs(v) != float("inf"))]
    assert caught.value.step == bad.step.min()
    assert losses.step.max() == caught.value.step  # no step was trained after the first non-finite loss
