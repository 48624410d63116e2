"""The compare page: overlay one metric across runs (one facet per modality) and a summary table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mmviz.analysis.summary import compute_compare_table, run_family
from mmviz.ui.charts import render_chart_controls, render_figure
from mmviz.ui.labels import chart_names, epoch_text, format_compare_table, md, run_method_label
from mmviz.ui.readers import (
    keys_matching,
    load_run_events,
    load_run_keys,
    load_run_metrics,
    load_run_summaries,
    metric_group_options,
    run_token,
    runs_by_id,
    with_config,
)
from mmviz.ui.run_select import filter_runs, render_run_filter
from mmviz.viz import plot_compare
from mmviz.viz.series import export_frame

RUNS_KEY = "compare.runs"
FAMILY_KEY = "compare.family"
METRIC_KEY = "compare.metric"
QP_KEY = "compare.query"
DEFAULT_METRIC = ("val", "acc")
REFRESH_S = 5


def lineage(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each restart's origin as its parent, so that a family holds a run's forks and restarts."""
    if runs.empty or "restart_of" not in runs:
        return runs
    parent = [p if isinstance(p, str) else r for p, r in zip(runs["parent_run_id"], runs["restart_of"], strict=True)]
    return runs.assign(parent_run_id=parent)


def family_roots(runs: pd.DataFrame) -> list[str]:
    """Runs that have forks and no parent in the workspace (roots of fork trees), newest first."""
    if runs.empty:
        return []
    ids = set(runs["run_id"])
    parents = {p for p in runs["parent_run_id"] if isinstance(p, str) and p in ids}
    roots = []
    for rid in runs["run_id"]:
        if rid in parents:
            fam = run_family(runs, rid)
            if fam[0] not in roots:
                roots.append(fam[0])
    return roots


def _apply_family(runs: pd.DataFrame) -> None:
    root = st.session_state.get(FAMILY_KEY)
    if root:
        st.session_state[RUNS_KEY] = run_family(runs, root)


def render_run_selection(runs: pd.DataFrame) -> list[str]:
    """Family shortcut, run filter and the run multiselect; ``?family=ID`` or ``?runs=a,b`` in the URL preselect.

    ``runs`` are all the workspace's runs; the filter (teaching runs hidden by default) narrows what is offered,
    but never drops a run already selected.
    """
    by_id = runs_by_id(runs)
    runs = lineage(runs)
    query = (st.query_params.get("family"), st.query_params.get("runs"))
    if query != st.session_state.get(QP_KEY):
        st.session_state[QP_KEY] = query
        if query[0] in by_id:
            st.session_state[RUNS_KEY] = run_family(runs, query[0])
        elif query[1]:
            st.session_state[RUNS_KEY] = [r for r in query[1].split(",") if r in by_id]
    offered = filter_runs(runs, teaching=False)
    if RUNS_KEY not in st.session_state:
        roots = family_roots(offered)
        st.session_state[RUNS_KEY] = run_family(runs, roots[0]) if roots else list(offered["run_id"])[:2]
    st.session_state[RUNS_KEY] = [r for r in st.session_state[RUNS_KEY] if r in by_id]
    offered = render_run_filter(runs, "compare", keep=tuple(st.session_state[RUNS_KEY]))
    shown = runs_by_id(offered)
    roots = family_roots(lineage(offered))
    c1, c2 = st.columns([1, 3])
    with c1:
        st.selectbox(
            "Select a run with its forks",
            [""] + roots,
            format_func=lambda r: "…" if not r else f"{by_id[r].get('name') or r} + forks and restarts",
            key=FAMILY_KEY,
            on_change=_apply_family,
            args=(runs,),
        )
    with c2:
        selected = st.multiselect("Runs", list(shown), format_func=lambda r: run_method_label(by_id[r]), key=RUNS_KEY)
    for rid in selected:
        run = by_id[rid]
        if run.get("parent_run_id") in by_id:
            parent = by_id[run["parent_run_id"]]
            st.caption(
                f"↳ {md(run.get('name'))} ({md(run.get('method'))}) forked from {md(parent.get('name'))} "
                f"({md(parent.get('method'))}) at epoch {epoch_text(run.get('fork_epoch'))}"
            )
        elif run.get("restart_of") in by_id:
            origin = by_id[run["restart_of"]]
            st.caption(
                f"↳ {md(run.get('name'))} ({md(run.get('method'))}) restarted from scratch with the settings of "
                f"{md(origin.get('name'))} ({md(origin.get('method'))}), edited"
            )
        if run.get("notes"):
            st.caption(f"{md(run.get('name'))}: {md(run['notes'])}")
    return selected


def _load(workspace: str, runs: list[dict], select) -> pd.DataFrame:
    frames = []
    for run in runs:
        token = run_token(run)
        keys = tuple(select(load_run_keys(workspace, run["run_id"], token), list(run.get("modalities") or [])))
        if keys:
            frames.append(load_run_metrics(workspace, run["run_id"], keys, token))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def render_compare_page(store, workspace: str) -> None:
    """The whole compare page below the frame."""
    runs = load_run_summaries(workspace)
    if runs.empty:
        st.info("No runs yet in this workspace.")
        return
    by_id = runs_by_id(runs)
    selected = render_run_selection(runs)
    if not selected:
        st.info("Select one or more runs.")
        return
    chosen = [by_id[r] for r in selected]
    groups = sorted(
        {
            g
            for run in chosen
            for g in metric_group_options(
                load_run_keys(workspace, run["run_id"], run_token(run)), list(run.get("modalities") or [])
            )
        },
        key=lambda g: (g[0] or "", g[1]),
    )
    if not groups:
        st.info("The selected runs have no metrics yet.")
        return
    labels = {g: f"{g[0]}/{g[1]}" if g[0] else g[1] for g in groups}
    if st.session_state.get(METRIC_KEY) not in groups:
        st.session_state[METRIC_KEY] = DEFAULT_METRIC if DEFAULT_METRIC in groups else groups[0]
    split, quantity = st.selectbox(
        "Metric", groups, format_func=labels.get, key=METRIC_KEY, help="Every logged metric; one facet per modality."
    )
    options = render_chart_controls("compare")
    active = any(r.get("effective_status") in ("running", "queued") for r in chosen)
    every = REFRESH_S if active and st.toggle("Refresh while runs train", value=True, key="compare.live") else None
    st.fragment(run_every=every)(render_comparison)(workspace, selected, (split, quantity), labels, options)


def summary_table(chosen: list[dict], frame: pd.DataFrame) -> pd.DataFrame:
    """The compare table as shown: restarts name their origin, notes follow the name, and an accuracy that was
    never measured (stored as -1) is missing (shown "—"), never -100%."""
    table = compute_compare_table(chosen, frame)
    if table.empty:
        return table
    by_id = {r["run_id"]: r for r in chosen}
    names = {r["run_id"]: r.get("name") or r["run_id"] for r in chosen}
    if "parent" in table:
        origin = [
            p if isinstance(p, str) and p else _restart_text(by_id[rid], names)
            for p, rid in zip(table["parent"], table["run_id"], strict=True)
        ]
        table["parent"] = origin
    notes = [by_id[rid].get("notes") or "" for rid in table["run_id"]]
    if any(notes):
        table.insert(1, "notes", notes)
    for column in table.attrs.get("percent_columns", []):
        table[column] = pd.to_numeric(table[column], errors="coerce").where(lambda v: v >= 0)
    return table


def _restart_text(run: dict, names: dict) -> str | None:
    origin = run.get("restart_of")
    return f"restart of {names.get(origin, origin)}" if origin else None


def render_comparison(workspace: str, selected: list[str], metric: tuple, labels: dict, options) -> None:
    """Chart, summary table and CSV exports (a fragment: refreshed on a timer while a selected run trains)."""
    by_id = runs_by_id(load_run_summaries(workspace))
    # the listing has no configs; the table's differing settings need them (each run's is read once)
    chosen = [with_config(workspace, by_id[r]) for r in selected if r in by_id]
    split, quantity = metric
    frame = _load(workspace, chosen, lambda keys, mods: keys_matching(keys, mods, split, quantity))
    tokens = tuple(run_token(r) for r in chosen)
    events = load_run_events(workspace, tuple(selected), tokens)
    t0 = {r["run_id"]: r.get("started") for r in chosen if r.get("started")}
    names = chart_names(chosen)  # unique per run, with its method: two forks may share a name
    labelled = [{**run, "name": names[run["run_id"]]} for run in chosen]
    render_figure(plot_compare(frame, split, quantity, labelled, options, events, t0), key="compare.chart")

    st.subheader("Summary")
    summary_frame = _load(
        workspace, chosen, lambda keys, mods: [k for k in keys if k.startswith("val/acc") or k == "imbalance/index"]
    )
    table = summary_table(chosen, summary_frame)  # numbers (the CSV); shown as text with "—" where n/a
    st.dataframe(format_compare_table(table, chosen), hide_index=True, width="stretch", key="compare.summary")
    st.caption(
        "Best epoch = highest val fused accuracy; per-modality accuracies are at that epoch, by each measure "
        "that was logged. The last columns are the settings that differ between the selected runs."
    )
    c1, c2 = st.columns(2)
    shown = [(split, quantity)]
    c1.download_button(
        "CSV of the chart's series",
        icon=":material/download:",
        data=lambda: export_frame(frame, shown, options, t0).to_csv(index=False),
        file_name=f"compare-{labels[(split, quantity)].replace('/', '_')}.csv",
        mime="text/csv",
        on_click="ignore",
        key="compare.csv",
    )
    c2.download_button(
        "CSV of the summary table",
        icon=":material/download:",
        data=lambda: table.to_csv(index=False),
        file_name="compare-summary.csv",
        mime="text/csv",
        on_click="ignore",
        key="compare.summary_csv",
    )
