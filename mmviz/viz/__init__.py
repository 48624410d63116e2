"""Plotly figure builders for the dashboard: tidy metric DataFrames in, ``go.Figure`` out (no Streamlit here)."""

from mmviz.viz.figures import plot_compare, plot_panel
from mmviz.viz.panels import PANELS, PanelSpec, assign_panels, metric_groups, panel_by_name
from mmviz.viz.series import X_AXES, ChartOptions, compute_debiased_ema, compute_minmax_indices, prepare_series

__all__ = [
    "PANELS",
    "X_AXES",
    "ChartOptions",
    "PanelSpec",
    "assign_panels",
    "compute_debiased_ema",
    "compute_minmax_indices",
    "metric_groups",
    "panel_by_name",
    "plot_compare",
    "plot_panel",
    "prepare_series",
]
