"""The page frame every page starts with: workspace choice, the shared store, and user-caused errors.

Each page calls :func:`page_frame` itself (rather than relying on ``app.py``) so that a page script run on its own
(AppTest, a bench) still gets its frame; in the server every page runs through ``app.py``'s navigation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from mmviz.errors import MmvizError
from mmviz.store import RunStore, default_workspace, open_store
from mmviz.ui.labels import md

WORKSPACE_KEY = "mmviz_workspace"  # not a widget key: widget state does not survive a page switch
PAGES = {
    "runs": "app_pages/runs.py",
    "live": "app_pages/live.py",
    "compare": "app_pages/compare.py",
    "embeddings": "app_pages/embeddings.py",
    "teach": "app_pages/teach.py",
}


@st.cache_resource(show_spinner=False, max_entries=8)
def get_store(workspace: str) -> RunStore:
    """The run store of ``workspace``, opened once per server process and shared by every session."""
    return open_store(workspace)


def current_workspace() -> str:
    """This session's workspace folder (``MMVIZ_WORKSPACE`` or ``./mmviz-runs`` until the user picks another)."""
    if WORKSPACE_KEY not in st.session_state:
        st.session_state[WORKSPACE_KEY] = str(default_workspace().expanduser().absolute())
    return st.session_state[WORKSPACE_KEY]


def _workspace_changed() -> None:
    text = (st.session_state.get("_mmviz_workspace_input") or "").strip()
    if text:
        st.session_state[WORKSPACE_KEY] = str(Path(text).expanduser().absolute())


def page_frame(title: str, caption: str = "") -> tuple[RunStore, str]:
    """Draw the title and the sidebar workspace picker; return ``(store, workspace)``.

    A workspace that cannot be opened (not writable, not an mmviz store, newer schema) stops the page with the
    store's one-sentence error instead of a traceback.
    """
    workspace = current_workspace()
    with st.sidebar:
        st.text_input(
            "Workspace",
            value=workspace,
            key="_mmviz_workspace_input",
            on_change=_workspace_changed,
            help="Folder with the run store (mmviz.db) and one folder per run. Defaults to $MMVIZ_WORKSPACE, "
            "else ./mmviz-runs.",
        )
    st.title(title)
    if caption:
        st.caption(caption)
    try:
        return get_store(workspace), workspace
    except MmvizError as exc:
        st.error(md(exc))
        st.stop()
        raise  # unreachable: st.stop() raises


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
    """The page file for a page name, e.g. ``'live'`` -> ``'app_pages/live.py'``."""
    return PAGES[name]


FLASH_KEY = "mmviz_flash"


def flash(text: str, links: list[tuple[str, str, str, dict]] | None = None) -> None:
    """Rerun the page and show ``text`` literally (with page links ``(page, label, icon, query_params)``) at the next run.

    After an action changed the store, the rerun redraws everything (e.g. the runs table) from the new state.
    """
    st.session_state[FLASH_KEY] = {"text": text, "links": links or []}
    st.rerun()


def render_flash() -> None:
    """Show (once) the message left by :func:`flash`."""
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(md(message["text"]))
        for page, label, icon, query in message["links"]:
            st.page_link(page_path(page), label=label, icon=icon, query_params=query)
