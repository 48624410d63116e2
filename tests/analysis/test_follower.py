"""The analysis process (issue 15): the same diagnostic values as inline, and nothing lost when it is killed."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
import torch

import mmviz.training.loop as loop
from mmviz.analysis.follower import analysis_pending
from mmviz.launcher import prepare_run
from mmviz.measures.record import RECORD_DIR
from mmviz.probes.record import AnalysisSupervisor
from mmviz.store import RunStore, open_store
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit

EPOCHS = 4
SETS = ["data.n_train=300", "train.threads=1", "probes.unimodal_acc.probe_every=2"]
ANALYSED = r"^(sep/|proto/|val/acc_ncm/|val/acc_probe/|val/shapley/|imbalance/)"


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run(store: RunStore, process: bool, progress=None) -> tuple[str, pd.DataFrame]:
    cfg = build_run_config("synthetic", "baseline", SETS, epochs=EPOCHS, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=process, progress=progress)
    frame = store.load_metrics(run_id)
    return run_id, frame[frame["key"].str.match(ANALYSED)]


def values(frame: pd.DataFrame) -> dict:
    return {
        (k, s, e): v for k, s, e, v in zip(frame["key"], frame["step"], frame["epoch"], frame["value"], strict=True)
    }


def test_the_analysis_process_writes_exactly_the_inline_values(any_workspace):
    with open_store(any_workspace) as store:  # on PostgreSQL the process is handed the URL, not a folder
        _, inline = run(store, process=False)
        run_id, process = run(store, process=True)
        assert len(inline) > 20 * EPOCHS and values(process) == values(inline)  # bit for bit, same steps, epochs
        assert analysis_pending(store, run_id) == []
        left = sorted(p.name for p in (store.run_dir(run_id) / RECORD_DIR).iterdir())
    assert left == [".done", f"epoch_{EPOCHS:04d}.npz"]  # analysed records are deleted but the last


def test_killing_the_analysis_process_loses_no_epoch(tmp_path, monkeypatch):
    supervisors: list[AnalysisSupervisor] = []

    class Watched(AnalysisSupervisor):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            supervisors.append(self)

    monkeypatch.setattr(loop, "AnalysisSupervisor", Watched)
    killed = []

    def kill_after_epoch_2(info, values_) -> None:
        if values_.get("epoch_done") in (2, 3) and supervisors and supervisors[0].proc is not None:
            os.kill(supervisors[0].proc.pid, signal.SIGKILL)  # mid-run, whatever it is doing
            supervisors[0].proc.wait()
            killed.append(values_["epoch_done"])

    store = RunStore(tmp_path)
    _, inline = run(store, process=False)
    run_id, process = run(store, process=True, progress=kill_after_epoch_2)
    assert killed == [2, 3] and supervisors[0].restarts >= 1
    assert values(process) == values(inline)  # every epoch's rows, each exactly once
    assert process.groupby("key").size().max() == EPOCHS
