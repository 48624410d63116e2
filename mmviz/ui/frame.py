"""The page frame every page starts with: workspace choice, the shared store, and user-caused errors.

Each page calls :func:`page_frame` itself (rather than relying on ``app.py``) so that a page script run on its own
(AppTest, a bench) still gets its frame; in the server every page runs through ``app.py``'s navigation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st

from mmviz.errors import MmvizError
from mmviz.store import RunStore, default_workspace, is_store_url, open_store, shown_workspace, workspace_text
from mmviz.ui.labels import md

WORKSPACE_KEY = "mmviz_workspace"  # not a widget key: widget state does not survive a page switch
PAGES = {
    "runs": "pages/runs.py",
    "live": "pages/live.py",
    "compare": "pages/compare.py",
    "sweeps": "pages/sweeps.py",
    "embeddings": "pages/embeddings.py",
    "teach": "pages/teach.py",
}


@st.cache_resource(show_spinner=False, max_entries=8)
def get_store(workspace: str) -> RunStore:
    """The run store of ``workspace``, opened once per server process and shared by every session."""
    return open_store(workspace)


def current_workspace() -> str:
    """This session's workspace folder (``MMVIZ_WORKSPACE`` or ``./mmviz-runs`` until the user picks another)."""
    if WORKSPACE_KEY not in st.session_state:
        st.session_state[WORKSPACE_KEY] = workspace_text(default_workspace())
    return st.session_state[WORKSPACE_KEY]


def entered_workspace(text: str, current: str) -> str:
    """The workspace a user typed in the sidebar: a URL whose password is still ``***`` keeps the current
    workspace's password (the field showed it so)."""
    text = workspace_text(text)
    if is_store_url(text) and is_store_url(current):
        typed, now = urlsplit(text), urlsplit(current)
        if typed.password == "***" and now.password:
            text = text.replace(":***@", f":{now.password}@", 1)
    return text


def _workspace_changed() -> None:
    text = (st.session_state.get("_mmviz_workspace_input") or "").strip()
    if text:
        st.session_state[WORKSPACE_KEY] = entered_workspace(text, current_workspace())


def ensure_app_navigation() -> None:
    """Hand a page that Streamlit's legacy ``pages/`` routing ran on its own over to ``app.py``'s navigation.

    Streamlit treats a ``pages/`` folder beside the entry script as a legacy multipage app until ``st.navigation``
    has run once in the server process. A deep link (``/runs``) opened first on a fresh server therefore ran
    ``pages/runs.py`` alone: Streamlit's automatic page list in the sidebar and none of ``app.py``'s set-up (page
    config, projection worker). Here the server is switched to ``st.navigation`` mode and ``app.py`` is run in
    place, in this same script run (so widget events such as a button click are kept): its navigation replaces the
    automatic one and runs the same page (the page hash is its URL path in both modes); then this legacy run
    stops. A no-op once ``app.py``'s navigation has run (issue 11, defect 16).
    """
    import runpy

    from streamlit.runtime.pages_manager import PagesManager

    if not PagesManager.uses_pages_directory:
        return
    PagesManager.uses_pages_directory = False
    runpy.run_path(str(Path(__file__).resolve().parents[2] / "app.py"), run_name="__main__")
    st.stop()


def page_frame(title: str, caption: str = "") -> tuple[RunStore, str]:
    """Draw the title and the sidebar workspace picker; return ``(store, workspace)``.

    A workspace that cannot be opened (not writable, not an mmviz store, newer schema) stops the page with the
    store's one-sentence error instead of a traceback. A page opened by Streamlit's legacy ``pages/`` routing is
    handed to ``app.py`` first (:func:`ensure_app_navigation`).
    """
    ensure_app_navigation()
    workspace = current_workspace()
    with st.sidebar:
        st.text_input(
            "Workspace",
            value=shown_workspace(workspace),  # every visitor sees this field: a URL's password as ***
            key="_mmviz_workspace_input",
            on_change=_workspace_changed,
            help="Folder with the run store (mmviz.db) and one folder per run, or a postgresql:// URL (its password "
            "is shown as ***). Defaults to $MMVIZ_WORKSPACE, else ./mmviz-runs.",
        )
    st.title(title)
    if caption:
        st.caption(caption)
    try:
        return get_store(workspace), workspace
    except MmvizError as exc:
        st.error(md(sidebar_wording(str(exc))))
        st.stop()
        raise  # unreachable: st.stop() raises


def sidebar_wording(message: str) -> str:
    """A store error as the dashboard says it: its workspace comes from the sidebar field, not from the CLI's
    ``--workspace`` option."""
    return message.replace("with --workspace or MMVIZ_WORKSPACE", "in the sidebar's 'Workspace' field").replace(
        "--workspace", "the sidebar's 'Workspace' field"
    )


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show an ``MmvizError`` raised inside the block with ``st.error`` (one sentence, no traceback).

    Anything else is a bug and propagates with its traceback.
    """
    try:
        yield
    except MmvizError as exc:
        st.error(md(exc))


def page_path(name: str) -> str:
    """The page file for a page name, e.g. ``'live'`` -> ``'pages/live.py'``."""
    return PAGES[name]


FLASH_KEY = "mmviz_flash"
FLASH_S = 30.0  # how long an action's message stays: the page also reruns by itself (new runs, status changes)


def flash(text: str, links: list[tuple[str, str, str, dict]] | None = None) -> None:
    """Rerun the page and show ``text`` literally (with page links ``(page, label, icon, query_params)``) at the next run.

    After an action changed the store, the rerun redraws everything (e.g. the runs table) from the new state.
    """
    st.session_state[FLASH_KEY] = {"text": text, "links": links or [], "until": time.monotonic() + FLASH_S}
    st.rerun()


def render_flash() -> None:
    """Show the message left by :func:`flash` on every run of the next :data:`FLASH_S` seconds (a rerun the page
    makes by itself, e.g. when the new run starts, keeps the message and its links)."""
    message = st.session_state.get(FLASH_KEY)
    if message and time.monotonic() > message.get("until", 0.0):
        st.session_state.pop(FLASH_KEY, None)
        message = None
    if message:
        st.success(md(message["text"]))
        for page, label, icon, query in message["links"]:
            st.page_link(page_path(page), label=label, icon=icon, query_params=query)
