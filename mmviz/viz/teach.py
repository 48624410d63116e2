"""Figure builders of the teach page: lesson numbers and series in, ``go.Figure`` out (no Streamlit here).

Colours follow the rest of the dashboard: modality a blue, b orange, fused dark grey; a run compared with the
baseline is green, a reference ("... alone") is drawn dashed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mmviz.viz.embeddings import CLASS_COLORS  # one class palette for every embedding picture
from mmviz.viz.panels import FUSED_COLOR, PALETTE
from mmviz.viz.series import compute_debiased_ema

COLORS = {"a": PALETTE[0], "b": PALETTE[1], "fused": FUSED_COLOR}
RUN_COLORS = ("#7f7f7f", "#2ca02c", "#9467bd", "#d62728")  # baseline grey, then the runs compared with it
HEIGHT = 340


@dataclasses.dataclass(frozen=True)
class Line:
    """One curve: x and y values, a name, a colour, a dash style, and the EMA smoothing weight (0 = raw)."""

    x: Sequence[float]
    y: Sequence[float]
    name: str
    color: str
    dash: str = "solid"
    smoothing: float = 0.0


def _layout(fig: go.Figure, y_title: str, x_title: str = "", percent: bool = False) -> go.Figure:
    fig.update_layout(
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hovermode="x unified",
        template="plotly_white",
    )
    fig.update_yaxes(title_text=y_title, tickformat=".0%" if percent else None)
    if x_title:
        fig.update_xaxes(title_text=x_title)
    return fig


def plot_lines(
    lines: Sequence[Line],
    y_title: str,
    x_title: str = "epoch",
    percent: bool = False,
    hlines: Sequence[tuple[float, str, str]] = (),
) -> go.Figure:
    """Curves over training (smoothed ones keep their raw line faint), plus labelled horizontal reference lines.

    Args:
        lines: the curves.
        y_title, x_title: axis titles.
        percent: format the y axis as percentages.
        hlines: ``(y, label, colour)`` dashed horizontal lines (e.g. "b alone", or 1 for a ratio).
    """
    fig = go.Figure()
    for line in lines:
        y = np.asarray(line.y, dtype=np.float64)
        if line.smoothing > 0 and y.size > 10:
            fig.add_scatter(
                x=list(line.x),
                y=y,
                mode="lines",
                line={"color": line.color, "width": 1},
                opacity=0.2,
                showlegend=False,
                hoverinfo="skip",
                legendgroup=line.name,
            )
            y = compute_debiased_ema(y, line.smoothing)
        fig.add_scatter(
            x=list(line.x),
            y=y,
            name=line.name,
            mode="lines+markers" if y.size <= 30 else "lines",
            line={"color": line.color, "dash": line.dash, "width": 2},
            legendgroup=line.name,
        )
    for y, label, color in hlines:
        if np.isfinite(y):
            fig.add_hline(
                y=y, line_dash="dash", line_color=color, annotation_text=label, annotation_position="top left"
            )
    return _layout(fig, y_title, x_title, percent)


def plot_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    colors: Mapping[str, str] | None = None,
    y_title: str = "validation accuracy",
    patterns: Mapping[str, str] | None = None,
) -> go.Figure:
    """Grouped bars: one group per entry of ``groups``, one bar per series, the value printed on each bar.

    Args:
        groups: x-axis categories, e.g. ``["a", "b"]``.
        series: ``{bar name: one value per group}`` (NaN = no bar).
        colors: ``{bar name: colour}``.
        y_title: y-axis title (values are accuracies shown as percentages).
        patterns: ``{bar name: plotly pattern shape}`` (e.g. ``"/"`` for reference bars).
    """
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        vals = [float(v) for v in values]
        fig.add_bar(
            x=list(groups),
            y=vals,
            name=name,
            marker_color=(colors or {}).get(name, RUN_COLORS[i % len(RUN_COLORS)]),
            marker_pattern_shape=(patterns or {}).get(name, ""),
            text=[f"{100 * v:.0f}%" if np.isfinite(v) else "" for v in vals],
            textposition="outside",
        )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(range=[0, 1.12])
    fig = _layout(fig, y_title, percent=True)
    fig.update_layout(hovermode="closest")
    return fig


def plot_embeddings(
    panels: Mapping[str, pd.DataFrame], modalities: Sequence[str] = ("a", "b"), scores: Mapping | None = None
) -> go.Figure:
    """A grid of 2-D embeddings: one row per modality, one column per run, points coloured by class.

    Args:
        panels: ``{run label: rows modality, x, y, label}`` (e.g. from PCA of a snapshot).
        modalities: row order.
        scores: optional ``{(run label, modality): text}`` appended to each panel's title.
    """
    runs = list(panels)
    titles = [
        f"{m} · {run}" + (f" · {scores[(run, m)]}" if scores and (run, m) in scores else "")
        for m in modalities
        for run in runs
    ]
    fig = make_subplots(
        rows=len(modalities),
        cols=max(1, len(runs)),
        subplot_titles=titles,
        horizontal_spacing=0.05,
        vertical_spacing=0.09,
    )
    shown: set[int] = set()
    for c, run in enumerate(runs, start=1):
        frame = panels[run]
        for r, m in enumerate(modalities, start=1):
            rows = frame[frame["modality"] == m]
            for label in sorted(rows["label"].unique()):
                pts = rows[rows["label"] == label]
                fig.add_scatter(
                    x=pts["x"],
                    y=pts["y"],
                    mode="markers",
                    name=f"class {label}",
                    legendgroup=f"class {label}",
                    showlegend=int(label) not in shown,
                    row=r,
                    col=c,
                    marker={"size": 4, "opacity": 0.75, "color": CLASS_COLORS[int(label) % len(CLASS_COLORS)]},
                )
                shown.add(int(label))
    fig.update_xaxes(showticklabels=False, title_text="")
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(
        height=330 * len(modalities),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        template="plotly_white",
        legend={"itemsizing": "constant"},
    )
    return fig
