"""AppTest of the embeddings page against a real short run with a snapshot every epoch."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mmviz.analysis.worker as worker_module
from mmviz.analysis.worker import ProjectionWorker
from mmviz.store import open_store
from mmviz.ui.embeddings import start_projection_worker

ROOT = Path(__file__).resolve().parents[2]
# only the probes the page reads: snapshots (every epoch, not every 10th) and the run's own accuracy
QUICK_RUN = [
    "--dataset", "synthetic", "--set", "data.n_train=300", "--epochs", "3", "--name", "embeddings-test",
    "--set", "probes.snapshots.every_n_epochs=1", "--set", "probes.snapshots.max_overhead=0",
    *(f"--set=probes.{p}.enabled=false" for p in ("shapley", "grad_conflict", "separability", "unimodal_acc")),
]  # fmt: skip


def train_quick_run(workspace: Path) -> str:
    """A finished 3-epoch synthetic run with a snapshot every epoch; returns its id."""
    argv = [sys.executable, "-m", "mmviz", "train", "--workspace", str(workspace), *QUICK_RUN]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.split()[0]


@pytest.fixture(scope="module")
def run_ws(tmp_path_factory) -> dict:
    """``{'workspace', 'run'}``: this module's own workspace (the page writes projection caches into it)."""
    ws = tmp_path_factory.mktemp("embeddings-ws")
    return {"workspace": ws, "run": train_quick_run(ws)}


def decode(value) -> np.ndarray:
    """A plotly JSON array (plain list, or typed ``{'dtype', 'bdata', 'shape'}``) as numpy."""
    if isinstance(value, dict):
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return array.reshape([int(n) for n in str(value.get("shape", len(array))).split(",")])
    return np.asarray(value)


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def panel_headers(at) -> list[str]:
    return [m.value for m in at.markdown if " · epoch " in m.value]


def chart_specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_page_renders_a_real_run_with_its_widgets(open_page, run_ws):
    ws, parent = run_ws["workspace"], run_ws["run"]
    at = open_page(ws, "embeddings", run=parent, projection="pca")
    assert not at.exception
    assert at.selectbox(key="emb.run").value == parent
    # named as on the Live, Compare and Runs pages (name · method · id): a status in the label went stale, since the
    # select box is not redrawn when the run ends
    with open_store(ws) as store:
        run = store.get_run(parent)
    assert f"{run['name']} · {run['method']} · {parent}" in at.selectbox(key="emb.run").proto.options
    slider = at.select_slider(key="emb.epoch")
    assert slider.options == ["1", "2", "3"] and slider.value == 3  # the newest epoch first
    assert at.button_group(key="emb.method").value == "pca"
    assert at.selectbox(key="emb.color").value == "class"
    assert at.selectbox(key="emb.reference").value == "last"
    assert at.toggle(key="emb.play").value is False
    assert {b.key for b in at.download_button} == {"emb.csv", "emb.html"}

    # one panel per modality and one fused, PCA at once, with the caution beside them
    headers = [h.split(" · ")[:2] for h in panel_headers(at)]
    assert headers == [["**a**", "epoch 3"], ["**b**", "epoch 3"], ["**fused**", "epoch 3"]]
    specs = chart_specs(at)
    assert len(specs) == 3
    assert all(s["layout"]["xaxis"]["title"]["text"] == "PCA 1" for s in specs)
    assert captions(at).count("PCA") == 3
    assert [e.label for e in at.expander if e.label == "Reading these maps"]  # below the panels, page-wide
    assert any("UMAP** keeps" in m.value for m in at.markdown)

    at.select_slider(key="emb.epoch").set_value(1).run()
    assert not at.exception
    assert all("epoch 1" in h for h in panel_headers(at))


def test_a_selection_fills_the_table_and_highlights_every_panel(open_page, run_ws):
    ws, parent = run_ws["workspace"], run_ws["run"]
    at = open_page(ws, "embeddings", run=parent, projection="pca")
    assert not at.dataframe
    spec = chart_specs(at)[0]
    picked = sorted(int(row[0]) for trace in spec["data"] for row in decode(trace["customdata"]))[:5]
    at.session_state["emb.selection"] = {"view": "a", "indices": picked}  # what a lasso in panel 'a' leaves
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["index"].tolist() == picked
    assert list(table.columns[:5]) == ["index", "label", "pred_a", "pred_b", "pred_fused"]
    assert any("5 samples selected" in m.value for m in at.markdown)
    for spec in chart_specs(at):  # the same samples stand out in every panel
        chosen = [int(decode(t["customdata"])[i][0]) for t in spec["data"] for i in decode(t["selectedpoints"])]
        assert sorted(chosen) == picked
    at.button(key="emb.clear").click().run()
    assert not at.dataframe


def test_umap_replaces_pca_when_the_worker_returns_it(open_page, run_ws):
    ws, parent = run_ws["workspace"], run_ws["run"]
    at = open_page(ws, "embeddings", run=parent)  # UMAP is the default
    assert at.button_group(key="emb.method").value == "umap"
    assert not at.exception
    deadline = time.monotonic() + 180
    while captions(at).count("UMAP") < 3:
        assert time.monotonic() < deadline, captions(at)
        assert all(c.startswith(("PCA · UMAP", "UMAP")) for c in captions(at) if c[:3] in ("PCA", "UMA"))
        time.sleep(0.5)
        at.run()  # what the polling fragment does in the browser
        assert not at.exception
    assert all(s["layout"]["xaxis"]["title"]["text"] == "UMAP 1" for s in chart_specs(at))
    assert list((ws / "runs" / parent / "snapshots" / "proj").glob("umap-*.npz"))  # cached next to the snapshots


@pytest.fixture
def cold_worker(monkeypatch):
    """The page's worker swapped for one without warm-up (no numba), restored afterwards."""
    w = ProjectionWorker(warm=False)
    monkeypatch.setattr(worker_module, "_WORKER", w)
    start_projection_worker.clear()
    yield w
    w.stop()
    start_projection_worker.clear()


def test_a_worker_crash_is_reported_on_the_page_and_the_worker_restarts(open_page, run_ws, cold_worker):
    ws, parent = run_ws["workspace"], run_ws["run"]
    at = open_page(ws, "embeddings", run=parent, projection="pca")
    assert not at.warning
    old = cold_worker.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not at.warning:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        at.run()
    assert "projection worker crashed" in at.warning[0].value and "restarted" in at.warning[0].value
    assert cold_worker.pid != old and cold_worker.alive()
    assert not at.exception


def test_a_run_without_snapshots_says_so(open_page, tmp_path):
    from mmviz.store import open_store

    with open_store(tmp_path / "ws") as store:
        run_id = store.create_run(config={}, name="bare", dataset="synthetic", method="baseline", fusion="concat",
                                  modalities=["a", "b"])  # fmt: skip
    at = open_page(tmp_path / "ws", "embeddings", run=run_id)
    assert any("no snapshots yet" in i.value for i in at.info)


def test_a_damaged_snapshot_is_one_sentence_on_the_page(open_page, run_ws, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(run_ws["workspace"], ws)
    (ws / "runs" / run_ws["run"] / "snapshots" / "epoch_0003.npz").write_bytes(b"not a zip file")
    at = open_page(ws, "embeddings", run=run_ws["run"], projection="pca")
    assert any("cannot be read" in e.value for e in at.error)


def test_a_umap_that_finishes_while_the_panel_draws_says_ready_not_plain_pca():
    from types import SimpleNamespace

    from mmviz.ui.embeddings import _pending_note

    request = SimpleNamespace(view="a", method="umap")
    states = {"running": "computing", "queued": "waiting for the worker"}

    def projector(state):
        worker = SimpleNamespace(state=lambda r: SimpleNamespace(state=state))
        return SimpleNamespace(watch=[request], worker=worker)

    for state, doing in states.items():
        assert _pending_note(projector(state), "a", "PCA") == f" · UMAP {doing}…"
    assert _pending_note(projector("done"), "a", "PCA").startswith(" · UMAP ready")
    assert _pending_note(projector("done"), "a", "UMAP") == ""
    assert _pending_note(projector("running"), "b", "PCA") == ""  # another panel's request
