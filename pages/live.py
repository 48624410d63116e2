"""Live: one run's per-modality diagnostics, refreshed in place while it trains."""

from mmviz.ui.frame import page_frame
from mmviz.ui.live import render_live_page

store, workspace = page_frame("Live", "Watch modality imbalance develop while a run trains.")
render_live_page(store, workspace)
