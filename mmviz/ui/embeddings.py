"""The embeddings page: each modality's features of the fixed probe set, side by side, epoch by epoch.

PCA (fitted on a reference epoch, so its axes stay put) is computed in the page at once. UMAP runs in the projection
worker (:mod:`mmviz.analysis.worker`); until its result is cached the panel shows PCA, and a fragment polls the
worker (``st.fragment(run_every=...)``) and reruns the page when a result, a new epoch or a crash arrives. Per-epoch
UMAPs are aligned onto each other with Procrustes over the fixed probe set; AlignedUMAP is fitted over the whole
run on request. A lasso or box selection in one panel highlights the same samples in every panel and fills a table.
"""

from __future__ import annotations

import html
import os
import time
import uuid

import numpy as np
import pandas as pd
import streamlit as st

from mmviz.analysis.projection import PCAProjection, ProcrustesAlignment, align_sequence
from mmviz.analysis.snapshots import Snapshot, compute_embedding_frame, load_snapshot
from mmviz.analysis.worker import ProjectionRequest, ProjectionWorker, ensure_worker, load_result
from mmviz.ui.embedding_controls import (
    ACTIVE,
    CAUTION,
    Controls,
    current_selection,
    render_controls,
    render_epoch_picker,
    render_run_picker,
    render_selection_table,
    snapshot_index,
)
from mmviz.ui.labels import md
from mmviz.ui.readers import load_run_summaries, runs_by_id
from mmviz.viz.embeddings import compute_axis_ranges, legend_entries, plot_embedding, plot_embedding_grid

PLOTLY_CONFIG = {  # narrow panels: keep the toolbar to selection, zoom, pan and reset
    "displaylogo": False,
    "scrollZoom": False,
    "modeBarButtonsToRemove": ["toImage", "zoomIn2d", "zoomOut2d", "autoScale2d"],
}
POLL_S = 1.0  # how often the page asks the worker and the store whether something changed
PLAY_S = 1.5  # seconds per epoch while playing
CRASH_SHOWN_S = 300  # a worker crash stays on the page this long
UMAP_PARAMS = ("n_neighbors", "min_dist")


@st.cache_resource(show_spinner=False)
def start_projection_worker() -> ProjectionWorker:
    """The dashboard's projection worker, started once per server process (it warms up UMAP in the background)."""
    return ensure_worker()


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner=False, max_entries=48)
def _snapshot(path: str, mtime: int, epoch: int) -> Snapshot:
    return load_snapshot(path, epoch)


@st.cache_resource(show_spinner=False, max_entries=64)
def _pca_model(path: str, mtime: int, epoch: int, view: str) -> PCAProjection:
    return PCAProjection(2).fit(_snapshot(path, mtime, epoch).features[view])


@st.cache_data(show_spinner=False, max_entries=4096)
def _pca_coords(path: str, mtime: int, epoch: int, view: str, ref: tuple[str, int, int]) -> np.ndarray:
    return _pca_model(*ref, view).transform(_snapshot(path, mtime, epoch).features[view]).astype(np.float32)


@st.cache_resource(show_spinner=False, max_entries=1024)
def _result(path: str, mtime: int):
    return load_result(path)


class Projector:
    """Each view's coordinates for one page run: PCA at once, UMAP / AlignedUMAP once the worker has cached them.

    Asking for UMAP submits the current epoch first and the other epochs after it (nearest first), so playing or
    moving the slider finds them ready.
    """

    def __init__(self, worker: ProjectionWorker, owner: str, run_id: str, index: pd.DataFrame, reference: int):
        self.worker, self.owner, self.run_id = worker, owner, run_id
        self.paths = dict(zip(index["epoch"].astype(int), index["path"], strict=True))
        self.epochs = sorted(self.paths)
        self.ref = (self.paths[reference], _mtime(self.paths[reference]), reference)
        self.wanted: set[str] = set()  # keys submitted in this page run (the rest of this session's queue is pruned)
        self.watch: list[ProjectionRequest] = []  # requests whose completion changes what is shown now
        self.errors: dict[str, tuple[ProjectionRequest, str]] = {}

    def pca(self, epoch: int, view: str) -> np.ndarray:
        """PCA coordinates of ``view`` at ``epoch`` on the reference epoch's axes."""
        path = self.paths[epoch]
        return _pca_coords(path, _mtime(path), epoch, view, self.ref)

    def request(self, method: str, view: str, epochs: list[int], params: dict) -> ProjectionRequest:
        """The worker request for ``view`` (UMAP takes only the UMAP parameters)."""
        params = {k: v for k, v in params.items() if k in UMAP_PARAMS}
        return ProjectionRequest.create(self.run_id, view, method, epochs, [self.paths[e] for e in epochs], params)

    def _submit(self, request: ProjectionRequest, priority: int, watch: bool = False) -> None:
        self.wanted.add(request.key)
        if watch:
            self.watch.append(request)
        if self.worker.submit(request, priority, owner=self.owner) == "error":
            self.errors[request.view] = (request, self.worker.state(request).message)

    def _loaded(self, request: ProjectionRequest):
        path = str(request.cache_path)
        return _result(path, _mtime(path)) if os.path.isfile(path) else None

    def coords(self, epoch: int, view: str, method: str, params: dict) -> tuple[np.ndarray, list, str]:
        """``(coords at epoch, every available epoch's coords in the same frame, what is shown)``."""
        pca = self.pca(epoch, view)
        if method == "pca":
            return pca, [self.pca(e, view) for e in self.epochs], "PCA"
        if method == "aligned_umap":
            request = self.request("aligned_umap", view, self.epochs, params)
            self._submit(request, 1, watch=True)  # after the current epoch's UMAP, which shows meanwhile
            result = self._loaded(request)
            if result is not None:  # one map onto the first epoch's PCA keeps AlignedUMAP's own alignment
                first = self.epochs[0]
                align = ProcrustesAlignment("spread").fit(result.embeddings[first], self.pca(first, view))
                frames = [align.transform(result.embeddings[e]) for e in self.epochs]
                return frames[self.epochs.index(epoch)], frames, "AlignedUMAP"
        requests = {e: self.request("umap", view, [e], params) for e in self.epochs}
        self._submit(requests[epoch], 2, watch=True)
        if method == "umap":
            for e in sorted(self.epochs, key=lambda e: abs(e - epoch))[1:]:
                self._submit(requests[e], 1)
        results = {e: r for e in self.epochs if (r := self._loaded(requests[e])) is not None}
        if epoch not in results:
            return pca, [pca], "PCA"
        done = sorted(results)  # each epoch rotated onto the previous (the first onto its PCA view), at its PCA's size
        pcas = [self.pca(e, view) for e in done]
        chain = align_sequence([results[e].embeddings[e] for e in done], anchor=pcas[0], references=pcas)
        return chain[done.index(epoch)], chain, "UMAP"


def _sample_of(point: dict) -> int | None:
    """The sample index a selected point carries (``customdata[0]``; the browser sends a 2-D row as a dict)."""
    data = point.get("customdata")
    if isinstance(data, dict):
        data = data.get("0", data.get(0))
    elif isinstance(data, (list, tuple)):
        data = data[0] if data else None
    return None if data is None else int(data)


def _on_select(view: str) -> None:
    event = st.session_state.get(f"emb.chart.{view}")
    points = event["selection"]["points"] if event else []
    indices = sorted({s for p in points if (s := _sample_of(p)) is not None})
    st.session_state["emb.selection"] = {"view": view, "indices": indices}


def render_worker_status(worker: ProjectionWorker, method: str) -> None:
    """A recent crash (the worker was restarted), a worker that stays dead, or a worker still warming up."""
    recent = [c for c in worker.crashes if c.time > time.time() - CRASH_SHOWN_S]
    if recent:
        st.warning(md(recent[-1].message()), icon=":material/restart_alt:")
    if not worker.alive():
        st.error("The projection worker keeps crashing and was not restarted; PCA still works. Restart the dashboard.")
    elif method != "pca" and not worker.ready():
        st.caption("UMAP worker warming up (numba compiles its code once per dashboard start); PCA is shown meanwhile.")


def _signature(store, run_id: str, worker: ProjectionWorker, watch: list[ProjectionRequest]) -> tuple:
    states = tuple(worker.state(r).state for r in watch)
    return len(store.load_artifacts(run_id, kind="snapshot")), states, len(worker.crashes), worker.ready()


def render_poller(store, run_id: str, worker: ProjectionWorker, watch: list, active: bool, epochs: list[int]) -> None:
    """A fragment that reruns the page when what it waits for changes, or steps the epoch while playing."""
    playing = bool(st.session_state.get("emb.play")) and len(epochs) > 1
    st.session_state["emb.signature"] = _signature(store, run_id, worker, watch)
    waiting = any(worker.state(r).state != "done" and worker.state(r).state != "error" for r in watch)
    if not (playing or waiting or active or (watch and not worker.ready())):
        return

    @st.fragment(run_every=PLAY_S if playing else POLL_S)
    def poll() -> None:
        if playing:
            later = [e for e in epochs if e > st.session_state.get("emb.epoch", epochs[-1])]
            st.session_state["emb.next_epoch"] = later[0] if later else epochs[0]  # the slider applies it
            st.rerun()
        if _signature(store, run_id, worker, watch) != st.session_state.get("emb.signature"):
            st.rerun()

    poll()


def _pending_note(projector: Projector, view: str, shown: str = "") -> str:
    """E.g. ``' · AlignedUMAP computing…'`` for the slowest request the panel still waits for.

    A request that finished after the panel chose its coordinates (``shown`` is still "PCA") reads "ready": the
    next poll shows it.
    """
    for request in sorted((r for r in projector.watch if r.view == view), key=lambda r: r.method != "aligned_umap"):
        state = projector.worker.state(request).state
        name = "AlignedUMAP" if request.method == "aligned_umap" else "UMAP"
        if state in ("queued", "running", "missing"):
            doing = "computing" if state == "running" else "waiting for the worker"
            return f" · {name} {doing}…"
        if state == "done" and shown == "PCA":
            return f" · {name} ready, showing it next…"
    return ""


ACCURACY_SOURCES = {"head": "head-split accuracy", "ncm": "NCM accuracy (nearest class mean)"}


def panel_accuracy_text(view: str, accuracy: float, source: str | None) -> str:
    """What a panel's title says about accuracy, naming its measure: ``'head-split accuracy 93.3%'``.

    A modality's predictions come from its slice of the fused head when the fusion allows that split, else from the
    nearest class mean of its features; the fused view's are the model's own predictions.
    """
    if not np.isfinite(accuracy):
        return ""
    measure = "fused accuracy" if view == "fused" else ACCURACY_SOURCES.get(source or "head", f"{source} accuracy")
    return f"{measure} {100 * accuracy:.1f}%"


def _render_panel(projector: Projector, frame: pd.DataFrame, view: str, epoch: int, shown: str, controls: Controls,
                  source: str | None, **plot_kw) -> None:  # fmt: skip
    rows = frame[frame["view"] == view]
    accuracy = panel_accuracy_text(view, rows["correct"].mean(), source)
    st.markdown(f"**{md(view)}** · epoch {epoch}" + (f" · {accuracy}" if accuracy else ""))
    fig = plot_embedding(rows, controls.color_by, axis_title=shown.split(" ")[0], **plot_kw)
    st.plotly_chart(fig, key=f"emb.chart.{view}", on_select=lambda: _on_select(view), selection_mode=("lasso", "box"),
                    config=PLOTLY_CONFIG, width="stretch")  # fmt: skip
    st.caption(md(shown + _pending_note(projector, view, shown)))
    if view in projector.errors:
        request, message = projector.errors[view]
        st.error(md(message), icon=":material/error:")
        if st.button("Retry", key=f"emb.retry.{view}"):
            projector.worker.submit(request, 3, owner=projector.owner, retry=True)
            st.rerun()


def render_legend(frame: pd.DataFrame, color_by: str) -> None:
    """One colour key for every panel (panels carry no legend of their own, so their plots stay the same size)."""
    entries = legend_entries(frame, color_by)
    if entries:
        items = " ".join(
            f'<span style="color:{html.escape(str(c))};font-size:1.2em">&#9679;</span>&nbsp;{html.escape(str(n))}&emsp;'
            for n, c in entries
        )  # names come from the data set (e.g. an arrays file's modality names): escaped, shown as text
        st.markdown(f'<div style="font-size:0.85em">{items}</div>', unsafe_allow_html=True)


def render_embeddings_page(store, workspace: str) -> None:
    """The whole page below the frame: pickers, one panel per view, the selection table, exports and caution."""
    worker = start_projection_worker()
    owner = st.session_state.setdefault("emb.owner", uuid.uuid4().hex[:12])
    runs = load_run_summaries(workspace)
    if runs.empty:
        st.info("No runs yet: start one on the Runs page or with `python -m mmviz train`.")
        return
    run_id = render_run_picker(runs)
    if run_id is None:
        return
    active = runs_by_id(runs)[run_id].get("effective_status") in ACTIVE
    index = snapshot_index(workspace, run_id, len(store.load_artifacts(run_id, kind="snapshot")))
    if index.empty:
        later = ", and they appear here as they arrive." if active else " (it was off, or the run ended early)."
        st.info("This run has no snapshots yet; the `snapshots` probe writes them every few epochs" + later)
        render_poller(store, run_id, worker, [], active, [])
        return
    epochs = [int(e) for e in index["epoch"]]
    last = index["path"].iloc[-1]
    controls = render_controls(epochs, bool(_snapshot(last, _mtime(last), epochs[-1]).dropped))
    epoch, _ = render_epoch_picker(epochs, run_id)
    render_worker_status(worker, controls.method)
    projector = Projector(worker, owner, run_id, index, controls.reference)
    snapshot = _snapshot(projector.paths[epoch], _mtime(projector.paths[epoch]), epoch)
    views = list(snapshot.views)
    coords, ranges, shown = {}, {}, {}
    for view in views:
        coords[view], frames, shown[view] = projector.coords(epoch, view, controls.method, controls.params)
        ranges[view] = compute_axis_ranges(frames)
    worker.prune(owner, projector.wanted)
    frame = compute_embedding_frame(snapshot, coords)
    selection = current_selection(run_id)
    selected = set(selection["indices"]) if selection else None

    render_legend(frame, controls.color_by)
    meta = index.loc[index["epoch"] == epoch, "meta"].iloc[0]
    sources = meta.get("pred_source", {}) if isinstance(meta, dict) else {}
    columns = st.columns(len(views))  # the panels share the page width; the reading notes go below them
    for view, column in zip(views, columns, strict=True):
        with column:
            _render_panel(projector, frame, view, epoch, shown[view], controls, sources.get(view), selected=selected,
                          ranges=ranges[view])  # fmt: skip
    with st.expander("Reading these maps", icon=":material/help:"):
        st.markdown(CAUTION)
    render_selection_table(snapshot, selection, views)
    render_exports(frame, views, controls, shown, selected, f"{run_id}_epoch{epoch:04d}_{controls.method}")
    render_poller(store, run_id, worker, projector.watch, active, epochs)


def render_exports(frame: pd.DataFrame, views: list[str], controls: Controls, shown: dict, selected, name: str):
    """Download the coordinates (CSV, every view) and the panels as one figure (HTML; built on click)."""
    titles = {v: f"{v} ({shown[v]})" for v in views}

    def figure_html() -> str:
        fig = plot_embedding_grid(frame, views, controls.color_by, titles=titles, selected=selected, title=name)
        return fig.to_html(include_plotlyjs=True, full_html=True)

    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("Coordinates (CSV)", lambda: frame.to_csv(index=False), f"{name}.csv", "text/csv",
                       key="emb.csv", on_click="ignore", icon=":material/download:")  # fmt: skip
    c2.download_button("Figure (HTML)", figure_html, f"{name}.html", "text/html", key="emb.html", on_click="ignore",
                       icon=":material/download:")  # fmt: skip
