"""The teach page's charts: each chart name of a lesson step -> a title, a figure from finished runs, a caption."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import streamlit as st

from mmviz.teach.embeddings import compute_class_separation, load_last_embedding
from mmviz.teach.results import RunResult, alone_accuracy
from mmviz.ui.charts import render_figure
from mmviz.ui.frame import get_store
from mmviz.ui.labels import md
from mmviz.viz.teach import COLORS, RUN_COLORS, Line, plot_bars, plot_embeddings, plot_lines

SMOOTH = 0.85  # per-step signals (gradient norms, score ratio) are noisy; the raw line stays faint
Results = Mapping[str, RunResult]


def _line(result: RunResult, key: str, name: str, color: str, dash: str = "solid", smoothing: float = 0.0) -> Line:
    rows = result.series(key)
    return Line(rows["epoch"].to_numpy(), rows["value"].to_numpy(), name, color, dash, smoothing)


def joint_curves(r: Results, workspace: str):
    j = r["joint"]
    lines = [_line(j, "val/acc/fused", "fused (a + b)", COLORS["fused"]),
             _line(j, "val/acc/a", "a inside the joint model (head split)", COLORS["a"]),
             _line(j, "val/acc/b", "b inside the joint model (head split)", COLORS["b"])]  # fmt: skip
    fig = plot_lines(lines, "validation accuracy", percent=True)
    return "Validation accuracy of the joint model, fused and per modality", fig, ""


def alone_bars(r: Results, workspace: str):
    j = r["joint"]
    series = {
        "inside the joint model: head split": [j.final("val/acc/a"), j.final("val/acc/b")],
        "inside the joint model: linear probe": [j.final("val/acc_probe/a"), j.final("val/acc_probe/b")],
        "trained alone": [alone_accuracy(r["alone_a"]), alone_accuracy(r["alone_b"])],
    }
    colors = dict(zip(series, ("#9ecae1", "#3182bd", "#636363"), strict=True))
    fig = plot_bars(["modality a", "modality b"], series, colors, patterns={"trained alone": "/"})
    return "Each modality inside the joint model vs trained alone (last epoch)", fig, ""


def grad_norms(r: Results, workspace: str):
    j = r["joint"]
    lines = [_line(j, "grad_norm_pre/a", "a's encoder", COLORS["a"], smoothing=SMOOTH),
             _line(j, "grad_norm_pre/b", "b's encoder", COLORS["b"], smoothing=SMOOTH)]  # fmt: skip
    fig = plot_lines(lines, "gradient L2 norm")
    return "Gradient norm of each encoder, per training step", fig, "Smoothed (EMA 0.85); the raw values are faint."


def score_ratio(r: Results, workspace: str):
    j = r["joint"]
    fig = plot_lines([_line(j, "ratio/a", "s_a / s_b", COLORS["a"], smoothing=SMOOTH)], "confidence ratio",
                     hlines=[(1.0, "1 = equally confident", "#7f7f7f")])  # fmt: skip
    return "Confidence ratio s_a / s_b on each training batch", fig, "Smoothed (EMA 0.85); the raw values are faint."


def balance_bars(r: Results, workspace: str):
    base, bal, alone = r["reference"], r["balanced"], alone_accuracy(r["alone_b"])
    groups = ["b: head split", "b: linear probe", "fused (a + b)"]
    keys = ["val/acc/b", "val/acc_probe/b", "val/acc/fused"]
    series = {
        "baseline": [base.final(k) for k in keys],
        bal.label: [bal.final(k) for k in keys],
        "b alone": [alone, alone, np.nan],
    }
    colors = {"baseline": RUN_COLORS[0], bal.label: RUN_COLORS[1], "b alone": "#636363"}
    fig = plot_bars(groups, series, colors, patterns={"b alone": "/"})
    return f"b and the fused model: baseline vs {bal.label} (last epoch)", fig, ""


def balance_curves(r: Results, workspace: str):
    base, bal = r["reference"], r["balanced"]
    lines = [_line(base, "val/acc/b", "baseline", RUN_COLORS[0]), _line(bal, "val/acc/b", bal.label, RUN_COLORS[1])]
    fig = plot_lines(lines, "b's head-split accuracy", percent=True,
                     hlines=[(alone_accuracy(r["alone_b"]), "b alone", "#636363")])  # fmt: skip
    return "b inside the joint model over training", fig, ""


def _target_line(result: RunResult, color: str) -> Line:
    key = "val/acc/fused" if result.role == "alone_a" else "val/acc_target"
    return _line(result, key, result.label, color, "dash" if result.role == "alone_a" else "solid")


def _target_accuracy(result: RunResult) -> float:
    return alone_accuracy(result) if result.role == "alone_a" else result.final("val/acc_target")


def colearn_bars(r: Results, workspace: str):
    runs = list(r.values())
    colors = {res.label: ("#636363" if res.role == "alone_a" else RUN_COLORS[i]) for i, res in enumerate(runs)}
    series = {res.label: [_target_accuracy(res)] for res in runs}
    fig = plot_bars(["tested on a only (b zeroed)"], series, colors, patterns={r["alone_a"].label: "/"})
    return "Target-only accuracy at the last epoch", fig, ""


def colearn_curves(r: Results, workspace: str):
    lines = [
        _target_line(res, "#636363" if res.role == "alone_a" else RUN_COLORS[i]) for i, res in enumerate(r.values())
    ]
    fig = plot_lines(lines, "target-only accuracy", percent=True)
    return "Target-only validation accuracy over training", fig, ""


@st.cache_data(show_spinner=False, max_entries=32)
def _embedding(workspace: str, run_id: str) -> pd.DataFrame | None:
    return load_last_embedding(get_store(workspace), run_id)  # a finished run's snapshot never changes


def embeddings(r: Results, workspace: str):
    panels, scores = {}, {}
    for res in (r["reference"], r["balanced"]):
        frame = _embedding(workspace, res.run_id)
        if frame is None:
            return "Embeddings", None, md(f"Run {res.run_id} has no snapshot (its snapshot probe was off).")
        panels[res.label] = frame
        for m in ("a", "b"):
            rows = frame[frame["modality"] == m]
            sep = compute_class_separation(rows[["x", "y"]].to_numpy(), rows["label"].to_numpy())
            scores[(res.label, m)] = f"probe {100 * res.final(f'val/acc_probe/{m}'):.0f}%, separation {sep:.2f}"
    fig = plot_embeddings(panels, scores=scores)
    caption = ("PCA of each encoder's features on a fixed set of validation samples, last epoch; each panel has its "
               "own axes. Probe = linear-probe accuracy; separation = between-class share of the 2-D variance "
               "(0 = classes overlap, 1 = tight, separate clusters).")  # fmt: skip
    return "Per-modality embeddings, baseline vs balanced (last epoch)", fig, caption


CHARTS: dict[str, Callable] = {f.__name__: f for f in (joint_curves, alone_bars, grad_norms, score_ratio,
                                                         balance_bars, balance_curves, colearn_bars, colearn_curves,
                                                         embeddings)}  # fmt: skip


def render_chart(name: str, workspace: str, results: Results) -> None:
    """Draw chart ``name`` of the step under a bold title, with its caption."""
    title, fig, caption = CHARTS[name](results, workspace)
    st.markdown(f"**{title}**")
    if fig is not None:
        render_figure(fig, key=f"teach.chart.{name}")
    if caption:
        st.caption(caption)
