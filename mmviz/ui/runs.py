"""The runs page: the runs table, and the actions on one run (stop, tag, delete, restart, fork) plus new runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pandas as pd
import streamlit as st

from mmviz.errors import MmvizError
from mmviz.ui.frame import flash, page_path, render_flash
from mmviz.ui.labels import ACTIVE, epoch_text, format_duration, run_method_label
from mmviz.ui.queue import queue_status_text, render_queue
from mmviz.ui.readers import load_last_values, load_runs, runs_by_id

SELECTED_KEY = "runs.selected"
TABLE_REFRESH_S = 5


def build_runs_table(runs: pd.DataFrame, imbalance: Mapping[str, float]) -> pd.DataFrame:
    """The runs table as shown: one row per run, newest first; tolerant of runs written by older versions."""
    names = dict(zip(runs["run_id"], runs["name"], strict=True)) if not runs.empty else {}
    rows = []
    for run in runs.to_dict("records"):
        status = queue_status_text(run.get("effective_status") or run.get("status") or "?", run.get("queue_position"))
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        total = (config.get("train") or {}).get("epochs")
        parent = run.get("parent_run_id")
        index = imbalance.get(run["run_id"], run.get("imbalance_index"))
        rows.append(
            {
                "name": run.get("name") or run["run_id"],
                "status": status,
                "dataset": run.get("dataset"),
                "method": run.get("method"),
                "fusion": run.get("fusion"),
                "epochs": f"{run.get('epochs_done') or 0}/{total}" if total else str(run.get("epochs_done") or 0),
                "best val acc": run.get("best_val_acc"),
                "imbalance index": None if index is None or pd.isna(index) else float(index),
                "duration": format_duration(run.get("duration")),
                "created": dt.datetime.fromtimestamp(run["created"]) if run.get("created") else None,
                "parent": ""
                if not parent
                else f"{names.get(parent, parent)} @ epoch {epoch_text(run.get('fork_epoch'))}",
                "tags": ", ".join(run.get("tags") or []) if isinstance(run.get("tags"), list) else "",
                "error": run.get("error") or "",
                "run id": run["run_id"],
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty and not table["error"].astype(bool).any():
        table = table.drop(columns="error")
    return table


COLUMN_CONFIG = {
    "best val acc": st.column_config.NumberColumn(
        format="percent", help="Best validation accuracy of the fused model."
    ),
    "imbalance index": st.column_config.NumberColumn(
        format="%.2f", help="Last logged imbalance/index (0 = balanced, 1 = one modality carries all the accuracy)."
    ),
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    "error": st.column_config.TextColumn(help="Why a failed or diverged run ended.", width="medium"),
    "epochs": st.column_config.TextColumn(help="Epochs done / planned."),
}


def render_runs_table(workspace: str) -> None:
    """The runs table (a fragment: re-read every few seconds while a run is active); selecting a row selects
    that run for the actions below."""
    runs = load_runs(workspace)
    imbalance = load_last_values(workspace, runs.to_dict("records"), "imbalance/index")
    table = build_runs_table(runs, imbalance)
    event = st.dataframe(
        table,
        hide_index=True,
        column_config=COLUMN_CONFIG,
        on_select="rerun",
        selection_mode="single-row",
        key="runs.table",
        width="stretch",
    )
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    picked = table["run id"].iloc[rows[0]] if rows and rows[0] < len(table) else None
    changed = picked is not None and picked != st.session_state.get("runs.table.last")
    st.session_state["runs.table.last"] = picked
    if changed and picked != st.session_state.get(SELECTED_KEY):
        st.session_state[SELECTED_KEY] = picked
        st.rerun()  # redraw the actions for the picked run


def render_manage(store, run: Mapping) -> None:
    """Stop, tag and delete the selected run, and links to its live view and comparison."""
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
                st.error(str(exc))
            else:
                load_runs.clear()
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
                st.error(str(exc))
            else:
                load_runs.clear()
                flash(f"Saved the tags of run {rid}.")
    with c3:
        sure = st.checkbox(
            f"Yes, delete {run.get('name') or rid} and its files",
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
                st.error(str(exc))
            else:
                load_runs.clear()
                st.session_state.pop(SELECTED_KEY, None)
                flash(f"Deleted run {rid} and its files.")
        if status in ACTIVE:
            st.caption("Stop the run before deleting it.")
    if run.get("error"):
        st.error(f"Run {status}: {run['error']}")


def render_runs_page(store, workspace: str) -> None:
    """The whole runs page below the frame."""
    c1, c2, _ = st.columns([2, 1, 4])
    with c2:
        if st.button("Refresh", icon=":material/refresh:", key="runs.refresh"):
            load_runs.clear()
    runs = load_runs(workspace)
    if runs.empty:
        st.info("No runs yet in this workspace. Start the demo run, or launch one below.")
    else:
        active = runs["effective_status"].isin(ACTIVE).any()
        st.fragment(run_every=TABLE_REFRESH_S if active else None)(render_runs_table)(workspace)
    # The forms need the dataset / method / probe registries, which import torch (~1 s once per server): imported
    # here, after the table is on screen, so the first view after a server start shows the runs at once.
    from mmviz.ui.launch import render_demo_button, render_fork_form, render_launch_form, render_restart_form
    from mmviz.ui.sweeps import render_sweep_form

    with c1:
        render_demo_button(store)
    by_id = runs_by_id(runs)
    render_queue(store, by_id)
    tab_names = ["New run"] + (["Stop · tag · delete", "Restart", "Fork", "Sweep from this run"] if by_id else [])
    run = None
    if by_id:
        if st.session_state.get(SELECTED_KEY) not in by_id:
            st.session_state[SELECTED_KEY] = next(iter(by_id))
        rid = st.selectbox(
            "Selected run", list(by_id), format_func=lambda r: run_method_label(by_id[r]), key=SELECTED_KEY
        )
        run = by_id[rid]
    with st.container():  # always drawn, so the tabs below keep their place (and their selected tab)
        render_flash()
    tabs = st.tabs(tab_names)
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
