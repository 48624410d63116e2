"""Teach: guided lessons on modality imbalance, every step a real, fast training run."""

from mmviz.ui.frame import page_frame
from mmviz.ui.teach import render_teach_page

store, workspace = page_frame(
    "Teach", "Short lessons on modality imbalance: predict, run (a few seconds on a CPU), and see what happened."
)
render_teach_page(store, workspace)
