"""The Sweeps page (a sweep's settings vs results, parallel coordinates, mean ± sd over seeds) and the
"sweep from this run" form of the Runs page.

Trials are ordinary runs tagged ``sweep:<id>``; everything here is read from the store through the cached
readers. Selecting a trial in the table opens it on the Live page.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

import pandas as pd
import streamlit as st

from mmviz.analysis.sweep_results import compute_sweep_table, group_over_seeds, result_keys
from mmviz.errors import ConfigError, MmvizError
from mmviz.sweep import sweep_ids_of
from mmviz.ui.frame import flash, get_store, page_path
from mmviz.ui.labels import ACTIVE, md
from mmviz.ui.readers import clear_runs, load_config, load_run_summaries, run_token, runs_by_id
from mmviz.viz.sweeps import plot_sweep_parallel

SWEEP_KEY = "sweeps.selected"
REFRESH_S = 3


def list_sweeps(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep in the workspace, newest first: id, name, trials, status counts, created."""
    rows: dict[str, dict] = {}
    columns = ["run_id", "name", "tags", "status", "effective_status", "created"]
    for run in runs[[c for c in columns if c in runs]].to_dict("records"):
        for sid in sweep_ids_of(run.get("tags")):
            row = rows.setdefault(sid, {"sweep": sid, "names": [], "trials": 0, "created": run.get("created")})
            row["trials"] += 1
            row["names"].append(run.get("name") or "")
            status = run.get("effective_status") or run.get("status")
            row[status] = row.get(status, 0) + 1
            row["created"] = min(row["created"] or 0, run.get("created") or 0) or row["created"]
    out = []
    for row in rows.values():
        prefix = os.path.commonprefix(row.pop("names")).rstrip("-0123456789") or "sweep"
        out.append({"name": prefix, **row})
    cols = ["sweep", "name", "trials", "finished", "running", "queued", "failed", "created"]
    frame = pd.DataFrame(out, columns=list(dict.fromkeys([*cols, *(k for r in out for k in r)])))
    return frame.sort_values("created", ascending=False).reset_index(drop=True) if not frame.empty else frame


def sweep_label(row: Mapping) -> str:
    """``name · 12 trials · 2026-01-01 12:00 (20260101-120000-ab12)``."""
    when = dt.datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M") if row.get("created") else ""
    return f"{row['name']} · {row['trials']} trials · {when} ({row['sweep']})"


@st.cache_data(show_spinner=False, max_entries=32)
def load_sweep_metrics(workspace: str, run_ids: tuple[str, ...], keys: tuple[str, ...], tokens: tuple) -> pd.DataFrame:
    """The result metrics of a sweep's trials (``tokens``: the trials' run tokens, so finished trials stay cached)."""
    return get_store(workspace).load_metrics(list(run_ids), keys=list(keys))


def render_sweep_view(workspace: str, sweep_id: str) -> None:
    """Progress, the settings-vs-results table (select a row to open the trial live), the parallel-coordinates
    chart and the grouping over seeds of one sweep (a fragment: refreshed while trials are active)."""
    runs = load_run_summaries(workspace)
    listed = runs[runs["tags"].map(lambda t: sweep_id in sweep_ids_of(t))]
    if listed.empty:
        st.info(f"Sweep {sweep_id} has no trials in this workspace any more.")
        return
    configs = [load_config(workspace, r, c) for r, c in zip(listed["run_id"], listed["created"], strict=True)]
    trials = listed.assign(config=configs).sort_values("name").reset_index(drop=True)  # settings: from configs
    tokens = tuple(run_token(r) for r in runs_by_id(trials).values())
    counts = trials["effective_status"].value_counts()
    st.markdown(" · ".join(f"**{n}** {s}" for s, n in counts.items()) + f" · of {len(trials)} trials")
    st.progress(float(counts.get("finished", 0)) / len(trials))
    modalities = sorted({m for ms in trials["modalities"] for m in (ms or [])})
    keys = tuple(result_keys(modalities))
    metrics = load_sweep_metrics(workspace, tuple(trials["run_id"]), keys, tokens)
    table, settings, results = compute_sweep_table(trials, metrics)
    if not settings:
        st.caption("All trials share the same settings.")
    pick = st.selectbox("Result", results, index=0, key=f"sweeps.{sweep_id}.result", help="Colours the chart.")
    st.plotly_chart(plot_sweep_parallel(table, settings, pick), key=f"sweeps.{sweep_id}.parcoords")
    st.markdown("**Trials** (select a row to watch it on the Live page)")
    event = st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"sweeps.{sweep_id}.table",
        column_config={r: st.column_config.NumberColumn(format="%.3f") for r in results},
        width="stretch",
    )
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows[0] < len(table):
        st.switch_page(page_path("live"), query_params={"run": table["run id"].iloc[rows[0]]})
    grouped = group_over_seeds(table, settings, results)
    st.markdown("**Over seeds** (finished trials: mean ± sd)")
    if grouped.empty:
        st.caption("No trial has finished yet.")
    else:
        shown = grouped[[c for c in grouped.columns if not c.endswith(" mean") and not c.endswith(" sd")]].copy()
        for r in results:
            shown[r] = [_mean_sd(m, s) for m, s in zip(grouped[f"{r} mean"], grouped[f"{r} sd"], strict=True)]
        st.dataframe(shown, hide_index=True, key=f"sweeps.{sweep_id}.grouped", width="stretch")


def _mean_sd(mean: float, sd: float) -> str:
    if mean != mean:
        return "–"
    return f"{mean:.3f}" if sd != sd else f"{mean:.3f} ± {sd:.3f}"


def render_sweeps_page(store, workspace: str) -> None:
    """The whole Sweeps page below the frame."""
    runs = load_run_summaries(workspace)
    sweeps = list_sweeps(runs)
    if sweeps.empty:
        st.info(
            "No sweeps in this workspace yet. Start one with 'Sweep from this run' on the Runs page, or "
            "`python -m mmviz sweep --method baseline,ogm_ge --set optim.lr=0.01,0.05 --seeds 0,1`."
        )
        return
    ids = list(sweeps["sweep"])
    wanted = st.query_params.get("sweep")
    if wanted in ids and st.session_state.get(SWEEP_KEY) is None:
        st.session_state[SWEEP_KEY] = wanted
    if st.session_state.get(SWEEP_KEY) not in ids:
        st.session_state[SWEEP_KEY] = ids[0]
    by_id = {r["sweep"]: r for r in sweeps.to_dict("records")}
    sid = st.selectbox("Sweep", ids, format_func=lambda s: sweep_label(by_id[s]), key=SWEEP_KEY)
    st.query_params["sweep"] = sid
    active = bool(runs[runs["tags"].map(lambda t: sid in sweep_ids_of(t))]["effective_status"].isin(ACTIVE).any())
    st.fragment(run_every=REFRESH_S if active else None)(render_sweep_view)(workspace, sid)


def _sets_from_text(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def render_sweep_form(store, run: Mapping) -> None:
    """ "Sweep from this run": methods, swept ``--set`` values and seeds, every trial starting from the run's
    settings; all trials are validated before any is queued."""
    from mmviz.balancing import METHODS
    from mmviz.store.queue import MAX_PARALLEL
    from mmviz.sweep import SweepSpec, parse_sets, start_sweep
    from mmviz.ui.launch import render_backend_picker

    rid = run["run_id"]
    base = run.get("config") or {}
    with st.form(f"sweep.{rid}.form"):
        methods = st.multiselect(
            "Methods", METHODS.names(), default=[base.get("method") or "baseline"], key=f"sweep.{rid}.methods"
        )
        text = st.text_area(
            "Settings to sweep (one per line)",
            key=f"sweep.{rid}.sets",
            placeholder="optim.lr=0.01,0.05\nmethod.alpha=0.1..0.9:3",
            help="key=a,b,c for a list; lo..hi for a range (':log' for a log scale, ':N' for N grid points); "
            "list-valued fields separate alternatives with ';'. One value fixes the setting for all trials.",
        )
        c1, c2, c3, c4, c5 = st.columns(5)
        seeds = c1.text_input("Seeds", value="0,1", key=f"sweep.{rid}.seeds", help="Comma-separated.")
        samples = c2.number_input(
            "Random samples", 0, 1000, 0, key=f"sweep.{rid}.samples", help="0: the full grid; N: N random draws."
        )
        limit = c3.number_input("Runs at once", 1, 256, int(store.get_setting(MAX_PARALLEL)), key=f"sweep.{rid}.limit")
        name = c4.text_input("Sweep name", value=f"{run.get('name') or rid}-sweep", key=f"sweep.{rid}.name")
        backend = render_backend_picker(c5, f"sweep.{rid}.backend")
        submitted = st.form_submit_button("Start sweep", type="primary")
    if not submitted:
        return
    try:
        try:
            seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
        except ValueError:
            raise ConfigError(f"Seeds must be whole numbers separated by commas. Got {seeds!r} instead.") from None
        chosen = tuple(methods) or (base.get("method") or "baseline",)
        params, fixed = parse_sets(_sets_from_text(text), base.get("dataset"), chosen)
        spec = SweepSpec(
            methods=chosen,
            params=params,
            seeds=seed_list,
            mode="random" if samples else "grid",
            samples=int(samples),
            dataset=base.get("dataset"),
            fixed=fixed,
            base=base,
        )
        sweep_id, run_ids = start_sweep(store, spec, name=name.strip(), backend=backend, max_parallel=int(limit))
    except MmvizError as exc:
        st.error(md(exc))
    else:
        clear_runs()
        flash(
            f"Queued sweep {sweep_id}: {len(run_ids)} trials, at most {int(limit)} at once.",
            [("sweeps", "Open the sweep", ":material/grid_view:", {"sweep": sweep_id})],
        )
