"""Widgets of the embeddings page: run, projection, colour and epoch pickers, and the selection table.

Each ``render_*`` returns plain values; widget keys start with ``emb.``.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from mmviz.analysis.snapshots import Snapshot, compute_sample_table, load_snapshot_index
from mmviz.ui.frame import get_store
from mmviz.ui.labels import run_method_label
from mmviz.ui.readers import runs_by_id
from mmviz.ui.run_select import render_run_filter
from mmviz.viz.embeddings import COLOR_MODES

ACTIVE = ("running", "queued")  # as on the runs page (imported from there it would pull in torch)
METHOD_LABELS = {"pca": "PCA", "umap": "UMAP", "aligned_umap": "Aligned UMAP (whole run)"}
CAUTION = """
- **PCA** is a linear projection: distances along its axes are real, but the features' other dimensions are dropped.
- **UMAP** keeps *neighbourhoods*: nearby points have similar features and separated clusters are distinct. The
  size of a cluster, the gaps between clusters and the axes mean little, and another seed or `n_neighbors` can
  move whole clusters.
- Judge a modality by how **mixed** its classes are, not by its spread. Epochs are aligned by rotation, reflection,
  scale and shift, which changes no distance.
"""


@dataclasses.dataclass(frozen=True)
class Controls:
    """What the user picked: projection method, colour mode, PCA reference epoch and UMAP parameters."""

    method: str
    color_by: str
    reference: int
    params: dict


def render_run_picker(runs: pd.DataFrame) -> str | None:
    """Filter and select box over the runs (``?run=ID`` in the URL picks one; the URL follows); returns the run id,
    or None when the filter leaves no run."""
    wanted = st.query_params.get("run")
    runs = render_run_filter(runs, "emb", keep=(wanted,) if wanted else ())
    if runs.empty:
        return None
    by_id = runs_by_id(runs)
    if wanted in by_id and st.session_state.get("emb.query_run") != wanted:
        st.session_state["emb.run"] = wanted
    if st.session_state.get("emb.run") not in by_id:
        active = runs[runs["effective_status"].isin(ACTIVE)]
        st.session_state["emb.run"] = str((active if not active.empty else runs)["run_id"].iloc[0])
    help_text = "Finished and running runs; a running run's new epochs appear as they arrive."
    run_id = st.selectbox(
        "Run", list(by_id), format_func=lambda r: run_method_label(by_id[r]), key="emb.run", help=help_text
    )
    st.query_params["run"] = run_id
    st.session_state["emb.query_run"] = run_id
    return run_id


@st.cache_data(show_spinner=False, max_entries=256)
def snapshot_index(workspace: str, run_id: str, count: int) -> pd.DataFrame:
    """The run's snapshots (``epoch``, absolute ``path``, ``meta``); ``count`` (how many are stored) keys the cache."""
    return load_snapshot_index(get_store(workspace), run_id)


def render_controls(epochs: list[int], has_dropped: bool) -> Controls:
    """Projection, colour mode, PCA reference epoch and (in an expander) UMAP parameters."""
    c1, c2, c3 = st.columns([2, 2, 1])
    if "emb.method" not in st.session_state:  # UMAP unless ?projection=pca (or aligned_umap) says otherwise
        wanted = st.query_params.get("projection")
        st.session_state["emb.method"] = wanted if wanted in METHOD_LABELS else "umap"
    method = c1.segmented_control("Projection", list(METHOD_LABELS), format_func=METHOD_LABELS.get,
                                  key="emb.method", help="PCA shows at once. UMAP replaces it when the worker has it; "
                                  "Aligned UMAP fits every epoch jointly (slower, computed on request).")  # fmt: skip
    modes = [m for m in COLOR_MODES if m != "dropped" or has_dropped]
    if st.session_state.get("emb.color") not in modes:
        st.session_state["emb.color"] = "class"
    color_by = c2.selectbox("Colour by", modes, format_func=COLOR_MODES.get, key="emb.color")
    ref_options = ["last", "first", *epochs]
    if st.session_state.get("emb.reference") not in ref_options:
        st.session_state["emb.reference"] = "last"
    ref = c3.selectbox("PCA axes from epoch", ref_options, key="emb.reference",
                       help="PCA is fitted on this epoch's features and every epoch is projected onto the same axes, "
                       "so the picture does not jump. 'last' follows a running run.")  # fmt: skip
    reference = epochs[-1] if ref == "last" else epochs[0] if ref == "first" else int(ref)
    with st.expander("UMAP settings"):
        u1, u2 = st.columns(2)
        n_neighbors = u1.slider("n_neighbors", 5, 100, 15, key="emb.n_neighbors",
                                help="Larger keeps more global structure; smaller, finer local groups.")  # fmt: skip
        min_dist = u2.slider("min_dist", 0.0, 0.99, 0.1, 0.01, key="emb.min_dist",
                             help="How tightly points may pack together in the map.")  # fmt: skip
    return Controls(
        method or "pca", color_by, reference, {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist)}
    )


def _follow_latest(epochs: list[int], run_id: str) -> None:
    """Keep the epoch valid for this run; when it sat on the newest epoch and a newer one arrived, move along."""
    step = st.session_state.pop("emb.next_epoch", None)  # set by the play timer (a fragment may not set the slider)
    if step in epochs:
        st.session_state["emb.epoch"] = step
    value = st.session_state.get("emb.epoch")
    last = st.session_state.get("emb.latest")
    if st.session_state.get("emb.epoch_run") != run_id or value not in epochs:
        st.session_state["emb.epoch"] = epochs[-1]
    elif value == last and epochs[-1] != last and not st.session_state.get("emb.play"):
        st.session_state["emb.epoch"] = epochs[-1]
    st.session_state["emb.latest"] = epochs[-1]
    st.session_state["emb.epoch_run"] = run_id


def render_epoch_picker(epochs: list[int], run_id: str) -> tuple[int, bool]:
    """Epoch slider plus a play toggle that steps through the epochs; returns ``(epoch, playing)``."""
    _follow_latest(epochs, run_id)
    c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
    if len(epochs) == 1:
        c1.caption(f"Epoch {epochs[0]} (the only snapshot so far)")
        st.session_state["emb.play"] = False
        return epochs[0], False
    epoch = c1.select_slider("Epoch", options=epochs, key="emb.epoch")
    playing = c2.toggle("Play", key="emb.play", help="Step through the epochs, one every 1.5 s (loops).")
    return int(epoch), bool(playing)


def current_selection(run_id: str) -> dict | None:
    """The selection (``{'view', 'indices'}``) of this run, or ``None``; a new run starts without one."""
    if st.session_state.get("emb.selection_run") != run_id:
        st.session_state["emb.selection"] = None
        st.session_state["emb.selection_run"] = run_id
    selection = st.session_state.get("emb.selection")
    return selection if selection and selection.get("indices") else None


def _clear_selection() -> None:
    st.session_state["emb.selection"] = None


def render_selection_table(snapshot: Snapshot, selection: dict | None, views: list[str]) -> None:
    """The selected samples (index, label, per-modality and fused predictions) with a clear button."""
    if not selection:
        st.caption("Lasso or box-select points in any panel (the tools are in the chart's top-right toolbar) to "
                   "highlight the same samples in every panel and list them here.")  # fmt: skip
        return
    wanted = set(selection["indices"])
    positions = [i for i, s in enumerate(snapshot.index) if int(s) in wanted]
    table = compute_sample_table(snapshot, positions)
    wrong = {v: int((table[f"pred_{v}"] != table["label"]).sum()) for v in views if f"pred_{v}" in table}
    summary = ", ".join(f"{v} {n}" for v, n in wrong.items())
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    c1.markdown(f"**{len(table)} samples selected** in panel {selection['view']!r} · wrong predictions: {summary}")
    c2.button("Clear selection", key="emb.clear", on_click=_clear_selection)
    st.dataframe(table, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(table)))
