"""The runs page: the runs table, and the actions on one run (stop, tag, delete, restart, fork) plus new runs."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

import pandas as pd
import streamlit as st

from mmviz.errors import MmvizError
from mmviz.ui.frame import flash, page_path, render_flash
from mmviz.ui.labels import ACTIVE, epoch_text, format_duration, format_value, md, run_method_label
from mmviz.ui.queue import queue_status_text, render_queue
from mmviz.ui.readers import clear_runs, load_run_summaries, runs_by_id, with_config
from mmviz.ui.run_select import filter_runs, render_run_filter, render_runs_watcher, runs_signature

SELECTED_KEY = "runs.selected"
TAB_KEY = "runs.tab"
QP_KEY = "runs.query"
FILTER_KEY = "runs"
TABLE_REFRESH_S = 5
PAGE_KEY = "runs.page"
PAGE_SIZE = 50  # runs a page of the table: the server builds and sends these only, however many runs there are
NEW_TAB, MANAGE_TAB, RESTART_TAB, FORK_TAB = "New run", "Stop · tag · notes · delete", "Restart", "Fork"
ACTION_TABS = {"fork": FORK_TAB, "restart": RESTART_TAB, "manage": MANAGE_TAB}


def accuracy_or_none(value) -> float | None:
    """An accuracy as stored, or None where there is none (not measured yet: stored as -1 by older runs, or NaN)."""
    if value is None or isinstance(value, str):
        return None
    value = float(value)
    return None if math.isnan(value) or value < 0 else value


def origin_text(run: Mapping, names: Mapping[str, str]) -> str:
    """``'NAME @ epoch 3'`` for a fork, ``'restart of NAME'`` for a restart, else empty."""
    parent, restart_of = run.get("parent_run_id"), run.get("restart_of")
    if isinstance(parent, str) and parent:
        return f"{names.get(parent, parent)} @ epoch {epoch_text(run.get('fork_epoch'))}"
    if isinstance(restart_of, str) and restart_of:
        return f"restart of {names.get(restart_of, restart_of)}"
    return ""


def build_runs_table(runs: pd.DataFrame, names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The runs table as shown: one row per run of ``runs`` (e.g. one page of :func:`load_run_summaries`), in its
    order; tolerant of runs written by older versions. ``names``: ``{run_id: name}`` of the runs a fork or restart
    can come from (default: ``runs``)."""
    if names is None:
        names = dict(zip(runs["run_id"], runs["name"], strict=True)) if not runs.empty else {}
    rows = []
    for run in runs_by_id(runs).values():
        status = queue_status_text(run.get("effective_status") or run.get("status") or "?", run.get("queue_position"))
        total = run.get("epochs_total")
        index = run.get("imbalance/index", run.get("imbalance_index"))
        rows.append(
            {
                "name": run.get("name") or run["run_id"],
                "status": status,
                "dataset": run.get("dataset"),
                "method": run.get("method"),
                "fusion": run.get("fusion"),
                "epochs": f"{run.get('epochs_done') or 0}/{total}" if total else str(run.get("epochs_done") or 0),
                "best val acc": accuracy_or_none(run.get("best_val_acc")),
                "imbalance index": format_value(
                    None if index is None or pd.isna(index) else index, run, "imbalance/index"
                ),
                "duration": format_duration(run.get("duration")),
                "created": dt.datetime.fromtimestamp(run["created"]) if run.get("created") else None,
                "parent": origin_text(run, names),
                "tags": ", ".join(run.get("tags") or []) if isinstance(run.get("tags"), list) else "",
                "notes": run.get("notes") or "",
                "error": run.get("error") or "",
                "run id": run["run_id"],
            }
        )
    table = pd.DataFrame(rows)
    for column in ("notes", "error"):
        if not table.empty and not table[column].astype(bool).any():
            table = table.drop(columns=column)
    return table


def page_of(runs: pd.DataFrame, page: int, size: int = PAGE_SIZE) -> pd.DataFrame:
    """The rows of 1-based ``page`` when ``runs`` are shown ``size`` a page (the last page may be shorter)."""
    return runs.iloc[(page - 1) * size : page * size]


COLUMN_CONFIG = {
    "best val acc": st.column_config.NumberColumn(
        format="percent", help="Best validation accuracy of the fused model."
    ),
    "imbalance index": st.column_config.TextColumn(
        help="Last logged imbalance/index (0 = balanced, 0.5 = one modality carries all the accuracy, 1 = the weakest "
        "takes away as much as the strongest adds); — for a unimodal run, which has no imbalance."
    ),
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    "error": st.column_config.TextColumn(help="Why a failed or diverged run ended.", width="medium"),
    "epochs": st.column_config.TextColumn(help="Epochs done / planned."),
    "parent": st.column_config.TextColumn(help="The run it was forked (at that epoch) or restarted from."),
    "notes": st.column_config.TextColumn(
        help="The run's description (edit it under 'Stop · tag · notes · delete').", width="medium"
    ),
}


def render_runs_table(workspace: str, keep: tuple[str, ...] = ()) -> None:
    """The runs table (a fragment: re-read every few seconds while a run is active), filtered like the selector and
    shown :data:`PAGE_SIZE` runs a page, newest first.

    The table only shows; the "Selected run" box below is the one way to pick the run the actions work on.
    """
    all_runs = load_run_summaries(workspace)
    runs = filter_runs(all_runs, *_filter_state(), keep=keep)
    pages = max(1, -(-len(runs) // PAGE_SIZE))
    page = 1
    if pages > 1:
        if not 1 <= st.session_state.get(PAGE_KEY, 1) <= pages:  # fewer pages since (a filter, deleted runs)
            st.session_state[PAGE_KEY] = 1
        c1, c2 = st.columns([1, 5], vertical_alignment="bottom")
        page = int(c1.number_input("Page", min_value=1, max_value=pages, step=1, key=PAGE_KEY,
                                   help=f"{PAGE_SIZE} runs a page, newest first."))  # fmt: skip
        first = (page - 1) * PAGE_SIZE + 1
        c2.caption(f"Runs {first}–{min(page * PAGE_SIZE, len(runs))} of {len(runs)} (page {page} of {pages}).")
    names = dict(zip(all_runs["run_id"], all_runs["name"], strict=True))
    table = build_runs_table(page_of(runs, page), names)
    st.dataframe(table, hide_index=True, column_config=COLUMN_CONFIG, key="runs.table", width="stretch",
                 placeholder="—")  # fmt: skip


def _filter_state() -> tuple[str, bool]:
    return st.session_state.get(f"{FILTER_KEY}.filter", ""), bool(st.session_state.get(f"{FILTER_KEY}.teaching"))


def render_manage(store, run: Mapping) -> None:
    """Stop, tag, describe and delete the selected run, and links to its live view and comparison."""
    from mmviz import launcher

    rid = run["run_id"]
    status = run.get("effective_status") or run.get("status")
    c1, c2, c3 = st.columns(3)
    with c1:
        st.page_link(
            page_path("live"), label="Open on the Live page", icon=":material/monitoring:", query_params={"run": rid}
        )
        st.page_link(
            page_path("compare"),
            label="Compare with its family",
            icon=":material/compare_arrows:",
            query_params={"family": rid},
        )
        if st.button(
            "Stop run",
            icon=":material/stop:",
            key=f"manage.{rid}.stop",
            disabled=run.get("status") not in ACTIVE,
            help="Finishes the current step, writes a checkpoint and ends as 'stopped'.",
        ):
            try:
                launcher.stop(store, rid)
            except MmvizError as exc:
                st.error(md(exc))
            else:
                clear_runs()
                flash(f"Asked run {rid} to stop: it finishes its step, writes a checkpoint and ends as 'stopped'.")
    with c2:
        tags = st.text_input(
            "Tags",
            value=", ".join(run.get("tags") or []),
            key=f"manage.{rid}.tags",
            help="Comma-separated; replaces the run's tags.",
        )
        if st.button("Save tags", key=f"manage.{rid}.save_tags"):
            try:
                store.set_tags(rid, [t.strip() for t in tags.split(",") if t.strip()])
            except MmvizError as exc:
                st.error(md(exc))
            else:
                clear_runs()
                flash(f"Saved the tags of run {rid}.")
        notes = st.text_area(
            "Notes",
            value=run.get("notes") or "",
            key=f"manage.{rid}.notes",
            height=90,
            help="A description of the run (what it tries, what you saw); shown in the runs table and on Compare.",
        )
        if st.button("Save notes", key=f"manage.{rid}.save_notes"):
            try:
                store.set_notes(rid, notes)
            except MmvizError as exc:
                st.error(md(exc))
            else:
                clear_runs()
                flash(f"Saved the notes of run {rid}.")
    with c3:
        sure = st.checkbox(
            f"Yes, delete {md(run.get('name') or rid)} and its files",
            key=f"manage.{rid}.sure",
            help="Removes the run's metrics, events, checkpoints and snapshots. This cannot be undone.",
        )
        if st.button(
            "Delete run",
            icon=":material/delete:",
            key=f"manage.{rid}.delete",
            disabled=not sure or status in ACTIVE,
            type="primary",
        ):
            try:
                store.delete_run(rid)
            except MmvizError as exc:
                st.error(md(exc))
            else:
                clear_runs()
                st.session_state.pop(SELECTED_KEY, None)
                flash(f"Deleted run {rid} and its files.")
        if status in ACTIVE:
            st.caption("Stop the run before deleting it.")
    if run.get("error"):
        st.error(md(f"Run {status}: {run['error']}"))


def apply_query(by_id: Mapping[str, dict]) -> None:
    """``?run=ID`` selects that run and ``&action=fork`` / ``restart`` / ``manage`` opens its tab (once per link)."""
    query = (st.query_params.get("run"), st.query_params.get("action"))
    if query == st.session_state.get(QP_KEY):
        return
    st.session_state[QP_KEY] = query
    run_id, action = query
    if run_id in by_id:
        st.session_state[SELECTED_KEY] = run_id
        if action in ACTION_TABS:
            st.session_state[TAB_KEY] = ACTION_TABS[action]


def render_runs_page(store, workspace: str) -> None:
    """The whole runs page below the frame."""
    c1, c2, _ = st.columns([2, 1, 4])
    with c2:
        if st.button("Refresh", icon=":material/refresh:", key="runs.refresh"):
            clear_runs()
    all_runs = load_run_summaries(workspace)
    linked = st.query_params.get("run")
    keep = (linked,) if linked else ()
    if all_runs.empty:
        st.info("No runs yet in this workspace. Start the demo run, or launch one below.")
        runs = all_runs
    else:
        runs = render_run_filter(all_runs, FILTER_KEY, keep=keep)
        active = all_runs["effective_status"].isin(ACTIVE).any()
        st.fragment(run_every=TABLE_REFRESH_S if active else None)(render_runs_table)(workspace, keep)
    # A run started elsewhere (the CLI, another tab) or a status change redraws the page within a few seconds.
    render_runs_watcher(workspace, runs_signature(all_runs), "runs")
    # The forms need the dataset / method / probe registries, which import torch (~1 s once per server): imported
    # here, after the table is on screen, so the first view after a server start shows the runs at once.
    from mmviz.ui.launch import render_demo_button, render_fork_form, render_launch_form, render_restart_form
    from mmviz.ui.sweeps import render_sweep_form

    with c1:
        render_demo_button(store)
    by_id = runs_by_id(runs)
    render_queue(store, by_id)
    apply_query(runs_by_id(all_runs))
    tab_names = [NEW_TAB] + ([MANAGE_TAB, RESTART_TAB, FORK_TAB, "Sweep from this run"] if by_id else [])
    run = None
    if by_id:
        if st.session_state.get(SELECTED_KEY) not in by_id:
            st.session_state[SELECTED_KEY] = next(iter(by_id))
        rid = st.selectbox(
            "Selected run",
            list(by_id),
            format_func=lambda r: run_method_label(by_id[r]),
            key=SELECTED_KEY,
            help="The run the tabs below act on (the filter above narrows this list too).",
        )
        run = with_config(workspace, by_id[rid])  # the listing has no configs: the forms below need this one
    with st.container():  # always drawn, so the tabs below keep their place (and their selected tab)
        render_flash()
    if st.session_state.get(TAB_KEY) not in tab_names:
        st.session_state[TAB_KEY] = NEW_TAB
    tabs = st.tabs(tab_names, key=TAB_KEY, on_change="rerun")
    with tabs[0]:
        render_launch_form(store)
    if run is not None:
        with tabs[1]:
            render_manage(store, run)
        with tabs[2]:
            render_restart_form(store, run)
        with tabs[3]:
            render_fork_form(store, run)
        with tabs[4]:
            render_sweep_form(store, run)
