"""Runs: every run in the workspace, launching new runs, and stop / restart / fork / tag / delete."""

from mmviz.ui.frame import page_frame
from mmviz.ui.runs import render_runs_page

store, workspace = page_frame(
    "Runs", "Every run in this workspace. Select one to stop, restart, fork, tag or delete it."
)
render_runs_page(store, workspace)
