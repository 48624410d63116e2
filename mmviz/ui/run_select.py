"""What every run selector shares: a filter by name / tag / id / method, teaching runs hidden by default, and a
watcher that reruns the page when runs appear, disappear or change status (e.g. a run started from the CLI)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mmviz.teach.runs import TEACH_TAG
from mmviz.ui.readers import load_run_summaries

WATCH_S = 3  # how often an idle page looks for new runs


def teaching_mask(runs: pd.DataFrame) -> pd.Series:
    """Which rows of ``runs`` are runs of the Teach page (its lesson runs carry the ``teach`` tag)."""
    return runs["tags"].map(lambda tags: isinstance(tags, (list, tuple)) and TEACH_TAG in tags).astype(bool)


def filter_runs(runs: pd.DataFrame, text: str = "", teaching: bool = False, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """The rows of ``runs`` that match ``text`` and, unless ``teaching``, are not Teach-page runs.

    ``text`` is matched case-insensitively against the name, the tags, the run id and the method; several words
    must all match. Runs in ``keep`` (e.g. one named in the URL) are always kept.
    """
    if runs.empty:
        return runs
    words = [w for w in (text or "").lower().split() if w]
    mask = pd.Series(True, index=runs.index) if teaching else ~teaching_mask(runs)
    if words:
        tags = runs["tags"].map(lambda t: " ".join(map(str, t)) if isinstance(t, (list, tuple)) else "")
        names = runs["name"].map(lambda n: str(n or ""))
        methods = runs["method"].map(lambda m: str(m or ""))
        haystack = (names + " " + runs["run_id"].astype(str) + " " + methods + " " + tags).str.lower()
        for word in words:
            mask &= haystack.str.contains(word, regex=False)
    return runs[mask | runs["run_id"].isin(keep)]


def render_run_filter(runs: pd.DataFrame, key: str, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """A filter field and a "teaching runs" toggle (off) above a run selector; returns the runs to offer."""
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    text = c1.text_input(
        "Filter runs",
        key=f"{key}.filter",
        placeholder="name, tag, method or id",
        help="Only runs whose name, tags, method or id contain every word typed here.",
    )
    n_teach = int(teaching_mask(runs).sum()) if not runs.empty else 0
    teaching = c2.toggle(
        f"Teaching runs ({n_teach})",
        key=f"{key}.teaching",
        help="Runs made by the Teach page's lessons; hidden unless this is on.",
    )
    shown = filter_runs(runs, text, teaching, keep)
    if not runs.empty and shown.empty:
        st.info("No run matches the filter." if text else "Every run here is a teaching run: turn on the toggle.")
    return shown


def runs_signature(runs: pd.DataFrame, with_status: bool = True) -> tuple:
    """The runs' ids (and statuses): when it changes, selectors and buttons drawn from it are stale."""
    if runs.empty:
        return ()
    if not with_status:
        return tuple(runs["run_id"])
    return tuple(zip(runs["run_id"], runs["effective_status"], strict=True))


def render_runs_watcher(workspace: str, shown: tuple, key: str, every: float = WATCH_S, with_status: bool = True):
    """A fragment that reruns the whole page when the workspace's runs differ from ``shown`` (their
    :func:`runs_signature` when the page was drawn): a run started elsewhere appears within ``every`` seconds."""

    @st.fragment(run_every=every)
    def watch() -> None:
        if runs_signature(load_run_summaries(workspace), with_status) != shown:
            st.rerun(scope="app")

    with st.container(key=f"{key}.watcher"):
        watch()
