"""Compare: overlay any metric across runs (a parent and its forks together), one facet per modality."""

from mmviz.ui.compare import render_compare_page
from mmviz.ui.frame import page_frame

store, workspace = page_frame(
    "Compare", "Overlay a metric across runs, one facet per modality, and compare where each run peaked."
)
render_compare_page(store, workspace)
