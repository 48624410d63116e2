"""The sweep's parallel-coordinates chart: one axis per swept setting, the chosen result last and as colour."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from mmviz.viz.text import plotly_text


def _axis(label: str, values: pd.Series) -> dict:
    """A parcoords dimension: numbers as they are, anything else as evenly spaced categories.

    Axis labels pass through :func:`plotly_text`; tick labels do not need it (parcoords draws them as plain text).
    """
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
        return {"label": plotly_text(label), "values": numeric.tolist()}
    text = values.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    cats = sorted(text.unique())
    codes = {c: i for i, c in enumerate(cats)}
    return {
        "label": plotly_text(label),
        "values": [codes[t] for t in text],
        "tickvals": list(range(len(cats))),
        "ticktext": cats,
        "range": [-0.5, len(cats) - 0.5] if len(cats) > 1 else [-1, 1],
    }


def plot_sweep_parallel(table: pd.DataFrame, settings: list[str], result: str) -> go.Figure:
    """Parallel coordinates of ``settings`` vs ``result`` over the trials that have a value for it."""
    rows = table[pd.to_numeric(table[result], errors="coerce").notna()] if result in table else table.iloc[0:0]
    fig = go.Figure()
    if rows.empty:
        fig.add_annotation(text=f"No trial has a value for {result!r} yet.", showarrow=False, x=0.5, y=0.5)
        fig.update_layout(height=360, xaxis_visible=False, yaxis_visible=False)
        return fig
    score = pd.to_numeric(rows[result]).tolist()
    dims = [_axis(s, rows[s]) for s in settings] + [{"label": plotly_text(result), "values": score}]
    fig.add_trace(
        go.Parcoords(
            line={
                "color": score,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": plotly_text(result)}},
            },
            dimensions=dims,
        )
    )
    fig.update_layout(height=420, margin={"l": 60, "r": 60, "t": 60, "b": 30})
    return fig
