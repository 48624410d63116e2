"""Scatter plots of per-modality embeddings: tidy rows (see ``compute_embedding_frame``) in, ``go.Figure`` out.

One panel per view (each modality, then fused), coloured by class, by whether a prediction is correct (the fused
one or the panel's own), by fused confidence, or by whether the sample was in a dropped batch. A selection (sample
indices) dims every other point in every panel, so the same samples can be followed across modalities. Points
carry their sample index as ``customdata[0]``: that is how a lasso in one panel finds them in the others.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

COLOR_MODES = {
    "class": "Class",
    "correct_fused": "Correct (fused prediction)",
    "correct": "Correct (this panel's prediction)",
    "confidence": "Fused confidence",
    "dropped": "In a dropped batch",
}
CLASS_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
# Two-way colourings use the Okabe-Ito blue and orange, which people with any common colour-vision deficiency tell
# apart (red and green they often cannot); "wrong" and "dropped" points are also drawn as crosses.
CORRECT, WRONG = "#0072B2", "#E69F00"
BINARY = {  # colour mode -> ((value, name, colour, symbol), ...)
    "correct_fused": ((1.0, "correct", CORRECT, "circle"), (0.0, "wrong", WRONG, "x")),
    "correct": ((1.0, "correct", CORRECT, "circle"), (0.0, "wrong", WRONG, "x")),
    "dropped": ((False, "kept", "#9aa5b1", "circle"), (True, "dropped", WRONG, "x")),
}
PANEL_HEIGHT = 420
_HOVER = (
    "sample %{customdata[0]}<br>label %{customdata[1]}<br>prediction %{customdata[2]}"
    "<br>fused prediction %{customdata[3]}<br>confidence %{customdata[4]:.2f}<extra></extra>"
)


def available_color_modes(frame: pd.DataFrame) -> list[str]:
    """The colour modes the data supports (no 'dropped' unless some sample was dropped, ...)."""
    modes = ["class"]
    if (frame["pred_fused"] >= 0).any():
        modes.append("correct_fused")
    if frame["correct"].notna().any():
        modes.append("correct")
    if frame["confidence"].notna().any():
        modes.append("confidence")
    if frame["dropped"].any():
        modes.append("dropped")
    return modes


def compute_axis_ranges(coords: Sequence[np.ndarray], pad: float = 0.05) -> tuple[list[float], list[float]]:
    """x and y ranges covering every ``(N, 2)`` array (e.g. all epochs, so the axes stay put while playing)."""
    stacked = np.concatenate([np.asarray(c, dtype=np.float64) for c in coords if len(c)])
    stacked = stacked[np.isfinite(stacked).all(axis=1)]
    if not len(stacked):
        return [-1.0, 1.0], [-1.0, 1.0]
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    return [float(lo[0] - pad * span[0]), float(hi[0] + pad * span[0])], [
        float(lo[1] - pad * span[1]),
        float(hi[1] + pad * span[1]),
    ]


def _scatter(rows: pd.DataFrame, name: str, marker: dict, selected: Collection[int] | None, **kw) -> go.Scatter:
    custom = np.column_stack(
        [rows["index"], rows["label"], rows["pred"], rows["pred_fused"], rows["confidence"].fillna(np.nan)]
    )
    trace = go.Scatter(
        x=rows["x"],
        y=rows["y"],
        mode="markers",
        name=name,
        customdata=custom,
        hovertemplate=_HOVER,
        marker={"size": 6, "line": {"width": 0}, **marker},
        **kw,
    )
    if selected is not None:
        positions = np.flatnonzero(rows["index"].isin(list(selected)).to_numpy())
        trace.update(
            selectedpoints=positions.tolist(),
            selected={"marker": {"opacity": 1.0}},
            unselected={"marker": {"opacity": 0.12}},
        )
    return trace


def embedding_traces(
    rows: pd.DataFrame, color_by: str, selected: Collection[int] | None = None, showlegend: bool = True
) -> list[go.Scatter]:
    """The traces of one view's panel (one per class or category; one with a colour bar for confidence)."""
    if color_by == "class":
        traces = []
        for label in sorted(rows["label"].unique()):
            part = rows[rows["label"] == label]
            colour = CLASS_COLORS[int(label) % len(CLASS_COLORS)]
            traces.append(
                _scatter(
                    part, f"class {label}", {"color": colour}, selected, legendgroup=f"c{label}", showlegend=showlegend
                )
            )
        return traces
    if color_by in BINARY:
        column = color_by
        traces = []
        for value, name, colour, symbol in BINARY[color_by]:
            part = rows[rows[column] == value]
            marker = {"color": colour, "symbol": symbol}
            traces.append(_scatter(part, name, marker, selected, legendgroup=name, showlegend=showlegend))
        missing = rows[rows[column].isna()] if rows[column].dtype.kind == "f" else rows.iloc[:0]
        if len(missing):
            traces.append(_scatter(missing, "no prediction", {"color": "#c7c7c7"}, selected, showlegend=showlegend))
        return traces
    if color_by == "confidence":
        marker = {
            "color": rows["confidence"],
            "colorscale": "Viridis",
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "conf."}, "thickness": 10, "len": 0.8},
        }
        return [_scatter(rows, "confidence", marker, selected, showlegend=False)]
    raise ValueError(f"Unknown colour mode {color_by!r}; choose one of {', '.join(COLOR_MODES)}.")


def legend_entries(frame: pd.DataFrame, color_by: str) -> list[tuple[str, str]]:
    """``(name, colour)`` per category of ``color_by`` in ``frame`` (one legend shared by every panel)."""
    if color_by == "class":
        return [(f"class {k}", CLASS_COLORS[int(k) % len(CLASS_COLORS)]) for k in sorted(frame["label"].unique())]
    if color_by in BINARY:
        return [(name, colour) for _, name, colour, _ in BINARY[color_by]]
    return []


def _accuracy(rows: pd.DataFrame) -> str:
    acc = rows["correct"].mean()
    return "" if not np.isfinite(acc) else f" · acc {acc:.2f}"


def plot_embedding(
    rows: pd.DataFrame,
    color_by: str = "class",
    *,
    title: str = "",
    selected: Collection[int] | None = None,
    ranges: tuple[Sequence[float], Sequence[float]] | None = None,
    axis_title: str = "",
    dragmode: str = "lasso",
    showlegend: bool = False,
    height: int = PANEL_HEIGHT,
) -> go.Figure:
    """One view's scatter (``rows``: that view's rows of the tidy frame).

    Args:
        rows: one view's rows (``view, x, y, index, label, pred, correct, ...``).
        color_by: a key of :data:`COLOR_MODES`.
        title: panel title (the view's accuracy is appended when it has predictions).
        selected: sample indices to highlight (others are dimmed); ``None`` or empty highlights nothing.
        ranges: fixed ``(x_range, y_range)``, e.g. from :func:`compute_axis_ranges` over every epoch.
        axis_title: e.g. ``'PCA'`` or ``'UMAP'`` (axes are named ``<axis_title> 1`` and ``<axis_title> 2``).
        dragmode: ``'lasso'``, ``'select'`` (box), ``'zoom'`` or ``'pan'``.
        showlegend: draw the legend (off for side-by-side panels, which share one: :func:`legend_entries`).
    """
    fig = go.Figure(embedding_traces(rows, color_by, selected or None, showlegend))
    x_axis = {"title": {"text": f"{axis_title} 1" if axis_title else ""}, "zeroline": False, "showticklabels": False}
    y_axis = {"title": {"text": f"{axis_title} 2" if axis_title else ""}, "zeroline": False, "showticklabels": False}
    if ranges is not None:
        x_axis["range"], y_axis["range"] = list(ranges[0]), list(ranges[1])
    fig.update_layout(
        title={"text": f"{title}{_accuracy(rows)}" if title else "", "x": 0.02, "font": {"size": 14}},
        xaxis=x_axis,
        yaxis=y_axis,
        height=height,
        margin={"l": 10, "r": 10, "t": 40 if title else 28, "b": 10},
        dragmode=dragmode,
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "font": {"size": 10}, "itemsizing": "constant"},
        hovermode="closest",
        showlegend=showlegend,
        uirevision=title,  # keep zoom while the same panel is redrawn
    )
    return fig


def plot_embedding_grid(
    frame: pd.DataFrame,
    views: Sequence[str],
    color_by: str = "class",
    *,
    titles: Mapping[str, str] | None = None,
    selected: Collection[int] | None = None,
    axis_title: str = "",
    title: str = "",
) -> go.Figure:
    """Every view side by side in one figure (for export): one panel per view, one legend."""
    views = [v for v in views if (frame["view"] == v).any()]
    n = max(1, len(views))
    gap = 0.04
    width = (1 - gap * (n - 1)) / n
    fig = go.Figure()
    layout: dict = {"annotations": []}
    for i, view in enumerate(views):
        rows = frame[frame["view"] == view]
        suffix = "" if i == 0 else str(i + 1)
        for trace in embedding_traces(rows, color_by, selected or None, showlegend=i == 0):
            trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
            if color_by == "confidence" and i < n - 1:
                trace.marker.showscale = False
            fig.add_trace(trace)
        x0 = i * (width + gap)
        layout[f"xaxis{suffix}"] = {
            "domain": [x0, x0 + width],
            "anchor": f"y{suffix}",
            "showticklabels": False,
            "title": {"text": f"{axis_title} 1"},
            "zeroline": False,
        }
        layout[f"yaxis{suffix}"] = {
            "anchor": f"x{suffix}",
            "showticklabels": False,
            "zeroline": False,
            "title": {"text": f"{axis_title} 2"},
        }
        text = (titles or {}).get(view, view) + _accuracy(rows)
        layout["annotations"].append(
            {
                "text": text,
                "x": x0 + width / 2,
                "y": 1.0,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
            }
        )
    fig.update_layout(
        **layout,
        title={"text": title},
        height=PANEL_HEIGHT + 60,
        width=max(480, 440 * n),
        margin={"l": 20, "r": 20, "t": 80, "b": 20},
        legend={"orientation": "h", "y": -0.05},
    )
    return fig
