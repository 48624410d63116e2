"""Embeddings: each modality's features of the fixed probe set, side by side and aligned across epochs."""

from mmviz.ui.embeddings import render_embeddings_page, start_projection_worker
from mmviz.ui.frame import page_frame, user_errors

start_projection_worker()  # before anything else: UMAP warms up while the page draws PCA
store, workspace = page_frame(
    "Embeddings",
    "Watch each modality's clusters form epoch by epoch; select samples to compare them across modalities.",
)
with user_errors():  # e.g. a snapshot file that was moved or is damaged: one sentence, not a traceback
    render_embeddings_page(store, workspace)
