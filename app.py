"""mmviz dashboard entry point: page config and navigation over the files in pages/.

Streamlit treats a ``pages/`` folder next to the entry script as a legacy multipage app until ``st.navigation`` has
run once in the server, so a deep link (``/runs``) opened first on a fresh server used to run the page file without
this script and show Streamlit's automatic page list (issue 11, defect 16). Every page starts with
:func:`mmviz.ui.frame.page_frame`, which then hands the request to this script's navigation (see
:func:`mmviz.ui.frame.ensure_app_navigation`).

Run with ``make run`` or ``python -m mmviz dashboard`` from anywhere; the server listens on 127.0.0.1 only
(:mod:`mmviz.ui.listen`: started any other way with another address, the app refuses to serve).
Pages that other work adds (embeddings, teach) appear here once their files exist.
"""

from pathlib import Path

import streamlit as st

from mmviz.ui.embeddings import start_projection_worker
from mmviz.ui.listen import check_listen_address

ROOT = Path(__file__).resolve().parent
PAGES = [
    ("pages/runs.py", "Runs", ":material/table_rows:"),
    ("pages/live.py", "Live", ":material/monitoring:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/sweeps.py", "Sweeps", ":material/grid_view:"),
    ("pages/embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("pages/teach.py", "Teach", ":material/school:"),
]

st.set_page_config(page_title="mmviz", page_icon=":material/biotech:", layout="wide")
check_listen_address()
start_projection_worker()  # the UMAP worker starts (and warms up) with the dashboard, not on the first visit
pages = [
    # the default page is served at "/" and Streamlit ignores its URL path (while reserving it): it gets one that
    # nothing links to, and "/runs" (a bookmark, a link in the docs) is a hidden page of the same file below
    st.Page(path, title=title, icon=icon, default=i == 0, url_path="home" if i == 0 else None)
    for i, (path, title, icon) in enumerate(PAGES)
    if (ROOT / path).is_file()
]
pages.append(st.Page(PAGES[0][0], title=PAGES[0][1], icon=PAGES[0][2], url_path="runs", visibility="hidden"))
st.navigation(pages).run()
