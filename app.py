"""mmviz dashboard entry point: page config and navigation over the files in app_pages/.

The folder is deliberately not called ``pages/``: Streamlit treats a ``pages/`` folder next to the entry script as a
legacy multipage app until ``st.navigation`` has run once in the server, so a deep link (``/runs``) opened first on a
fresh server ran the page without this script and showed Streamlit's automatic page list (issue 11, defect 16).

Run with ``make run`` (or ``streamlit run app.py``); the server listens on 127.0.0.1 (see .streamlit/config.toml).
Pages that other work adds (embeddings, teach) appear here once their files exist.
"""

from pathlib import Path

import streamlit as st

from mmviz.ui.embeddings import start_projection_worker

ROOT = Path(__file__).resolve().parent
PAGES = [
    ("app_pages/runs.py", "Runs", ":material/table_rows:"),
    ("app_pages/live.py", "Live", ":material/monitoring:"),
    ("app_pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("app_pages/embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("app_pages/teach.py", "Teach", ":material/school:"),
]

st.set_page_config(page_title="mmviz", page_icon=":material/biotech:", layout="wide")
start_projection_worker()  # the UMAP worker starts (and warms up) with the dashboard, not on the first visit
pages = [
    st.Page(path, title=title, icon=icon, default=i == 0)
    for i, (path, title, icon) in enumerate(PAGES)
    if (ROOT / path).is_file()
]
st.navigation(pages).run()
