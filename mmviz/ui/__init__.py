"""Streamlit helpers for the dashboard pages: the page frame, cached readers, forms and ``render_*`` functions.

This is the only package that imports streamlit. Pages import the submodules they need.
"""
