"""Analyses of stored runs: imbalance summaries (``summary``) and feature projections.

Keep this file free of heavy imports (UMAP, numba): the dashboard imports ``mmviz.analysis.summary`` on every page.
"""
