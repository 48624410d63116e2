"""The store contract, run against both stores: SQLite (a folder) and PostgreSQL (a real server started for the
session). Each test takes ``any_workspace`` and runs once per store."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from mmviz.errors import RunNotFoundError, StoreError
from mmviz.store import LOST_AFTER_S, MetricSink, RunReader, RunStoreProtocol, RunWriter, open_store
from mmviz.store.contract import METRIC_COLUMNS
from mmviz.training.loop import NullStore

REPO = Path(__file__).resolve().parents[2]
MODALITIES = ["audio", "visual"]


def make_run(store, **overrides) -> str:
    kwargs = dict(
        config={"lr": 0.01, "method": "ogm_ge"},
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
    with open_store(any_workspace) as s:
        yield s


def test_both_stores_implement_the_protocols(store):
    assert isinstance(store, RunStoreProtocol) and isinstance(store, RunReader) and isinstance(store, RunWriter)
    assert isinstance(NullStore(), MetricSink)
    for name in ("log_batch", "add_artifact", "stop_requested"):  # NullStore takes what a store takes
        assert inspect.signature(getattr(NullStore, name)).parameters.keys() == (
            inspect.signature(getattr(type(store), name)).parameters.keys()
        )


def test_a_sound_store_passes_the_integrity_check_train_makes_first(store):
    assert store.check_integrity() is None  # `mmviz train` calls it before adding a run (it raised on PostgreSQL)


def test_run_lifecycle_and_json_columns(store):
    rid = make_run(store, tags=["a", "b"], parent_run_id=None)
    run = store.get_run(rid)
    assert run["status"] == run["effective_status"] == "queued" and run["tags"] == ["a", "b"]
    assert run["config"] == {"lr": 0.01, "method": "ogm_ge"} and run["modalities"] == MODALITIES
    assert json.loads((store.run_dir(rid) / "config.json").read_text()) == run["config"]
    store.set_status(rid, "running", pid=os.getpid())
    store.update_run(rid, epochs_done=2, summary={"test_acc": 0.5})
    store.heartbeat(rid, step=7)
    store.set_tags(rid, ["c"])
    run = store.get_run(rid)
    assert run["status"] == "running" and run["started"] is not None and run["pid"] == os.getpid()
    assert run["epochs_done"] == 2 and run["summary"] == {"test_acc": 0.5} and run["step"] == 7 and run["tags"] == ["c"]
    assert not store.stop_requested(rid)
    store.request_stop(rid)
    assert store.stop_requested(rid)
    store.set_status(rid, "stopped")
    run = store.get_run(rid)
    assert run["status"] == "stopped" and run["finished"] >= run["started"] and run["duration"] >= 0
    assert list(store.list_runs()["run_id"]) == [rid]
    with pytest.raises(ValueError, match="Cannot update run field 'status'"):
        store.update_run(rid, status="finished")


def test_unknown_run_names_close_ids(store):
    rid = make_run(store)
    with pytest.raises(RunNotFoundError, match="Did you mean"):
        store.get_run(rid[:-1] + "x")
    with pytest.raises(RunNotFoundError):
        store.update_run("nope", epochs_done=1)


def test_duplicate_run_id_is_refused(store):
    make_run(store, run_id="fixed-id")
    with pytest.raises(StoreError, match="already exists"):
        make_run(store, run_id="fixed-id")


def test_a_stale_heartbeat_shows_lost(store):
    rid = make_run(store)
    store.set_status(rid, "running")
    store.update_run(rid, heartbeat=time.time() - LOST_AFTER_S - 5, host="elsewhere")
    assert store.get_run(rid)["effective_status"] == "lost"


def test_metrics_round_trip_with_filters(store):
    rid, other = make_run(store), make_run(store)
    rows = [
        (s, s / 10, 100.0 + s, key, v)
        for s in range(5)
        for key, v in (("train/loss", 1.0 / (s + 1)), ("val/acc/audio", s / 10))
    ]
    rows.append((5, 0.5, 105.0, "grad_norm/visual", math.inf))
    rows.append((5, 0.5, 105.0, "sys/step_ms", math.nan))
    assert store.log_batch(rid, rows, heartbeat={"step": 5}) == len(rows)
    store.log_batch(other, [(0, 0.0, 1.0, "train/loss", 9.0)])
    df = store.load_metrics(rid)
    assert list(df.columns) == METRIC_COLUMNS and len(df) == len(rows)
    assert list(df["key"].drop_duplicates()) == sorted({r[3] for r in rows})
    acc = df[df["key"] == "val/acc/audio"]
    assert list(acc["step"]) == list(range(5)) and list(acc["value"]) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert set(acc["split"]) == {"val"} and set(acc["quantity"]) == {"acc"} and set(acc["modality"]) == {"audio"}
    assert df[df["key"] == "grad_norm/visual"]["value"].iloc[0] == math.inf
    assert math.isnan(df[df["key"] == "sys/step_ms"]["value"].iloc[0])
    assert store.get_run(rid)["step"] == 5
    last = int(df["id"].max())
    store.log_batch(rid, [(6, 0.6, 106.0, "train/loss", 0.1)])
    newer = store.load_metrics(rid, after_id=last)
    assert list(newer["step"]) == [6]
    assert set(store.load_metrics(rid, key_prefix="val/")["key"]) == {"val/acc/audio"}
    assert list(store.load_metrics(rid, keys=["train/loss"], after_step=3)["step"]) == [4, 6]
    both = store.load_metrics([rid, other], keys=["train/loss"])
    assert list(both["run_id"].drop_duplicates()) == sorted([rid, other])
    assert store.metric_keys(other) == ["train/loss"]
    with pytest.raises(ValueError, match="malformed"):
        store.log_batch(rid, [(7, 0.7, 1.0, "Bad Key", 1.0)])
    assert len(store.load_metrics(rid)) == len(rows) + 1  # the bad batch wrote nothing


@pytest.mark.parametrize("small_read", [50_000, 0])  # a poll's few new rows by id, or key by key
def test_metric_arrays_hold_the_rows_per_key_and_a_poll_gets_only_newer_ones(store, small_read, monkeypatch):
    import numpy as np

    import mmviz.store.sqlite

    monkeypatch.setattr(mmviz.store.sqlite, "_SMALL_READ", small_read)
    rid, other = make_run(store), make_run(store)
    rows = [(s, s / 10, 100.0 + s, k, s * 0.5) for s in range(6) for k in ("train/loss", "val/acc/audio")]
    store.log_batch(rid, rows + [(9, 0.9, 109.0, "sys/step_ms", math.nan)])
    store.log_batch(other, [(0, 0.0, 1.0, "train/loss", 9.0)])
    arrays = store.load_metric_arrays(rid)
    tidy = store.load_metrics(rid)
    assert sorted(arrays) == ["sys/step_ms", "train/loss", "val/acc/audio"]
    for key, got in arrays.items():
        want = tidy[tidy["key"] == key][["id", "step", "epoch", "wall_time", "value"]].to_numpy(dtype=float)
        np.testing.assert_array_equal(got, want)  # the same rows, ordered by step then id
    last = int(tidy["id"].max())
    assert store.last_metric_id(rid) == last and store.last_metric_id("no-such-run") == 0
    assert store.load_metric_arrays(rid, after_id=last) == {}
    store.log_batch(rid, [(7, 0.7, 107.0, "train/loss", 0.1), (3, 0.3, 103.0, "train/loss", 0.2)])
    store.log_batch(rid, [(7, 0.7, 107.0, "grad_norm/audio", 2.0)])
    newer = store.load_metric_arrays(rid, after_id=last)
    assert sorted(newer) == ["grad_norm/audio", "train/loss"]
    assert newer["train/loss"][:, 1].tolist() == [3, 7] and (newer["train/loss"][:, 0] > last).all()
    assert store.load_metric_arrays("no-such-run") == {}
    part = store.load_metric_arrays(rid, upto_id=last, keys=["train/loss"], columns=("value", "id"))
    assert list(part) == ["train/loss"] and part["train/loss"].shape == (6, 2)  # columns in ARRAY_COLUMNS order
    np.testing.assert_array_equal(part["train/loss"], arrays["train/loss"][:, [0, 4]])
    with pytest.raises(ValueError, match="Unknown metric array column 'key'; valid: id, step, epoch"):
        store.load_metric_arrays(rid, columns=("key",))


def test_events_and_artifacts(store):
    rid = make_run(store)
    store.log_batch(
        rid,
        [(0, 0.0, 1.0, "train/loss", 1.0)],
        events=[(0, 0.0, 1.0, "fork", {"from": "x"})],
        artifacts=[(1, "checkpoint", "checkpoints/epoch_1.pt", {"bytes": 3})],
    )
    store.log_events(rid, [(2, 0.2, 2.0, "stop", None)])
    events = store.load_events(rid)
    assert list(events["kind"]) == ["fork", "stop"] and events["payload"].iloc[0] == {"from": "x"}
    assert list(store.load_events(rid, after_id=int(events["id"].iloc[0]))["kind"]) == ["stop"]
    assert isinstance(store.add_artifact(rid, 2, "checkpoint", store.run_dir(rid) / "checkpoints" / "epoch_2.pt"), int)
    store.add_artifact(rid, None, "snapshot", "snapshots/a.npz")
    arts = store.load_artifacts(rid)
    assert list(arts["epoch"].astype(object).where(arts["epoch"].notna(), None)) == [None, 1, 2]
    ck = store.load_artifacts(rid, "checkpoint")
    assert list(ck["path"]) == ["checkpoints/epoch_1.pt", "checkpoints/epoch_2.pt"] and ck["meta"].iloc[0] == {
        "bytes": 3
    }
    with pytest.raises(ValueError, match="outside the run folder"):
        store.add_artifact(rid, 3, "checkpoint", "/etc/passwd")
    store.add_artifact(rid, 1, "checkpoint", "checkpoints/epoch_1b.pt")  # a newer one of epoch 1
    # the same artifacts as plain values (what the analysis process polls): the newest per epoch, none without one
    assert store.artifact_paths(rid, "checkpoint") == {1: "checkpoints/epoch_1b.pt", 2: "checkpoints/epoch_2.pt"}
    assert store.artifact_paths(rid, "snapshot") == {} and store.artifact_paths(rid, "record") == {}


def test_delete_removes_rows_and_folder(store):
    rid, keep = make_run(store), make_run(store)
    store.log_batch(rid, [(0, 0.0, 1.0, "train/loss", 1.0)], events=[(0, 0.0, 1.0, "fork", None)])
    store.set_status(rid, "running", pid=os.getpid())
    with pytest.raises(StoreError, match="stop it first"):
        store.delete_run(rid)
    store.set_status(rid, "finished")
    store.delete_run(rid)
    assert not store.run_dir(rid).exists() and list(store.list_runs()["run_id"]) == [keep]
    assert store.load_metrics(rid).empty and store.load_events(rid).empty


def test_fork_points_come_from_the_artifacts_table(store):
    from mmviz.launcher import available_checkpoints

    rid = make_run(store)
    folder = store.run_dir(rid) / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("epoch_9.pt", "epoch_0.pt", "epoch_1.pt", "epoch_2.pt"):
        (folder / name).write_bytes(b"x")  # epoch 9: a stray file, never recorded
    store.log_batch(rid, [], artifacts=[(e, "checkpoint", f"checkpoints/epoch_{e}.pt", None) for e in (2, 0, 1, 3)])
    assert available_checkpoints(store, rid) == [0, 1, 2]  # epoch 3: recorded, but its file is gone


WRITER = textwrap.dedent(
    """
    import sys, time
    from mmviz.store import open_store

    store = open_store(sys.argv[1])
    run_id, start_at = sys.argv[2], float(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))
    for batch in range(25):
        rows = [(batch * 20 + i, 0.0, time.time(), "train/loss", float(i)) for i in range(20)]
        store.log_batch(run_id, rows, events=[(batch, 0.0, time.time(), "tick", {"b": batch})], heartbeat={"step": batch})
    store.close()
    """
)


def test_four_concurrent_writer_processes_lose_no_rows(store):
    ids = [make_run(store) for _ in range(4)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_at = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.workspace), rid, start_at],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rid in ids
    ]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read()
    for rid in ids:
        df = store.load_metrics(rid)
        assert sorted(df["step"]) == list(range(500))
        assert len(store.load_events(rid)) == 25 and store.get_run(rid)["step"] == 24


def test_last_values_reads_each_runs_latest_row(store):
    a, b, none = make_run(store), make_run(store), make_run(store)
    store.log_batch(a, [(3, 1.0, 1.0, "imbalance/index", 0.3), (1, 0.0, 1.0, "imbalance/index", 0.1)])
    store.log_batch(a, [(3, 1.0, 2.0, "imbalance/index", 0.35)])  # same step, later row wins
    store.log_batch(b, [(0, 0.0, 1.0, "imbalance/index", 0.9), (5, 0.0, 1.0, "train/loss", 1.0)])
    assert store.last_values("imbalance/index") == {a: pytest.approx(0.35), b: pytest.approx(0.9)}
    assert store.last_values("imbalance/index", [b, none]) == {b: pytest.approx(0.9)}


def test_run_summaries_equal_what_the_metric_rows_say(store):
    """The summary listing's latest values are those of the metric rows (largest step, then the later row)."""
    a, b, quiet = make_run(store, name="a"), make_run(store, name="b"), make_run(store, name="quiet")
    store.log_batch(a, [(s, s / 10, 1.0, key, s * k) for s in (3, 0, 7, 2) for k, key in
                        ((0.1, "imbalance/index"), (0.01, "val/acc/fused"))])  # fmt: skip
    store.log_batch(a, [(7, 0.7, 2.0, "imbalance/index", 0.9)])  # the same step again: the later row wins
    store.log_batch(b, [(1, 0.1, 1.0, "imbalance/index", math.nan), (0, 0.0, 1.0, "val/acc/fused", 0.5)])
    keys = ["imbalance/index", "val/acc/fused"]
    summaries = store.list_run_summaries(keys).set_index("run_id")
    rows = store.load_metrics([a, b, quiet], keys=keys)
    expected = rows.sort_values(["run_id", "key", "step", "id"]).groupby(["run_id", "key"])["value"].last()
    for (run_id, key), value in expected.items():
        assert summaries.loc[run_id, key] == pytest.approx(value, nan_ok=True)
        if run_id == a:
            assert store.last_values(key)[a] == pytest.approx(value)
    assert summaries.loc[a, "imbalance/index"] == pytest.approx(0.9)
    assert math.isnan(summaries.loc[b, "imbalance/index"])  # logged as NaN
    assert math.isnan(summaries.loc[quiet, "imbalance/index"]) and math.isnan(summaries.loc[quiet, "val/acc/fused"])
    assert quiet not in store.last_values("imbalance/index") and math.isnan(store.last_values("imbalance/index")[b])
    # the listing is list_runs' without the configs, newest first, with the config values views show
    full = store.list_runs()
    assert list(summaries.index) == list(full["run_id"]) == [quiet, b, a]
    assert "config" not in summaries.columns and summaries.loc[a, "tags"] == [] and summaries.loc[a, "name"] == "a"
    assert (summaries["effective_status"] == full.set_index("run_id")["effective_status"]).all()


def test_a_run_finishing_updates_its_summary(store):
    rid = make_run(store, config={"train": {"epochs": 3}, "model": {"encoder": "mlp"}})
    store.set_status(rid, "running", pid=os.getpid())
    store.log_batch(rid, [(9, 1.0, 1.0, "imbalance/index", 0.4)], heartbeat={"epochs_done": 1})
    run = store.list_run_summaries(["imbalance/index"]).iloc[0]
    assert run["imbalance/index"] == pytest.approx(0.4) and run["effective_status"] == "running"
    assert (run["epochs_total"], run["encoder"], run["epochs_done"]) == (3, "mlp", 1)
    store.log_batch(rid, [(29, 3.0, 3.0, "imbalance/index", 0.1)], heartbeat={"epochs_done": 3, "best_val_acc": 0.8})
    store.set_status(rid, "finished")
    run = store.list_run_summaries(["imbalance/index"]).iloc[0]
    assert run["imbalance/index"] == pytest.approx(0.1) and run["status"] == run["effective_status"] == "finished"
    assert run["epochs_done"] == 3 and run["best_val_acc"] == pytest.approx(0.8) and run["duration"] >= 0
    assert store.last_values("imbalance/index") == {rid: pytest.approx(0.1)}
    assert store.get_run(rid)["epochs_total"] == 3


def test_runs_made_before_the_summary_columns_get_them_from_their_config(any_workspace):
    """A workspace written by an older mmviz (no epochs_total / encoder columns) has them filled when opened."""
    with open_store(any_workspace) as store:
        old = make_run(store, config={"train": {"epochs": 12}, "model": {"encoder": "cnn"}})
        bare = make_run(store, config={"lr": 0.1})
        store._db.write(lambda c: [c.execute(f"ALTER TABLE runs DROP COLUMN {column}") for column in
                                   ("epochs_total", "encoder")])  # fmt: skip
    with open_store(any_workspace) as store:
        summaries = store.list_run_summaries().set_index("run_id")
        assert (summaries.loc[old, "epochs_total"], summaries.loc[old, "encoder"]) == (12, "cnn")
        assert pd.isna(summaries.loc[bare, "epochs_total"]) and pd.isna(summaries.loc[bare, "encoder"])
