"""Chart controls shared by the live and compare pages, and drawing a figure in place."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from mmviz.viz import X_AXES, ChartOptions

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def render_chart_controls(key: str) -> ChartOptions:
    """Smoothing (debiased EMA, raw line kept faint), x axis, log-y and points per line; returns the choice."""
    c1, c2, c3, c4 = st.columns([3, 3, 1, 2])
    smoothing = c1.slider(
        "Smoothing",
        0.0,
        0.99,
        0.6,
        0.01,
        key=f"{key}.smoothing",
        help="Debiased exponential moving average, as in TensorBoard (0 = raw). The raw line stays visible, faint. "
        "Series of 10 points or fewer are drawn raw.",
    )
    x_axis = c2.radio("x axis", X_AXES, horizontal=True, key=f"{key}.x_axis")
    log_y = c3.toggle("log y", key=f"{key}.log_y")
    max_points = c4.number_input(
        "Points per line",
        min_value=100,
        max_value=100_000,
        value=1000,
        step=100,
        key=f"{key}.max_points",
        help="Longer series are down-sampled deterministically: equal buckets of points each keep their minimum "
        "and maximum, plus the first and last point. The CSV download has every raw point.",
    )
    return ChartOptions(x_axis=x_axis, smoothing=float(smoothing), log_y=bool(log_y), max_points=int(max_points))


def render_figure(fig: go.Figure, key: str) -> None:
    """Draw a plotly figure full width; a stable ``key`` makes live refreshes update the chart in place."""
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, width="stretch")
