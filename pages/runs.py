"""Runs: every run in the workspace, launching new runs, and stop / restart / fork / tag / delete."""

from mmviz.ui.frame import page_frame, user_errors
from mmviz.ui.runs import render_runs_page

store, workspace = page_frame(
    "Runs", "Every run in this workspace. Select one to stop, restart, fork, tag or delete it."
)
with user_errors():  # e.g. a run store with damaged pages: one sentence naming the file, not a traceback
    render_runs_page(store, workspace)
