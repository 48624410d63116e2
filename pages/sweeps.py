"""Sweeps: a sweep's trials, settings vs results, parallel coordinates and mean ± sd over seeds."""

from mmviz.ui.frame import page_frame
from mmviz.ui.sweeps import render_sweeps_page

store, workspace = page_frame("Sweeps", "Many runs over methods, settings and seeds. Select a trial to watch it live.")
render_sweeps_page(store, workspace)
