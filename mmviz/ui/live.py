"""The live page: one run's charts refreshed in place by a fragment, the imbalance banner and CSV export.

Only the fragment reruns on the timer; it asks the store for rows newer than the largest id it holds (a
:class:`~mmviz.ui.readers.LiveBuffer` in session state) and redraws the charts under stable keys, so the
browser updates them in place. The timer stops by itself once the run has ended.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mmviz.analysis.follower import analysis_pending
from mmviz.analysis.summary import compute_imbalance_banner, find_reference_runs, reference_keys
from mmviz.errors import MmvizError, RunNotFoundError
from mmviz.ui.charts import render_chart_controls, render_figure
from mmviz.ui.frame import page_path
from mmviz.ui.labels import ACTIVE, STATUS_COLORS, epoch_text, run_method_label
from mmviz.ui.readers import LiveBuffer, live_buffer, load_run_metrics, load_runs, run_token, runs_by_id
from mmviz.viz import ChartOptions, assign_panels, panel_by_name, plot_panel
from mmviz.viz.series import export_frame

RUN_KEY = "live.run"
DEFAULT_INTERVAL_S = 2
QP_KEY = "live.query_run"


def default_run(runs: pd.DataFrame) -> str:
    """The newest running (or queued) run, else the newest run."""
    active = runs[runs["effective_status"].isin(ACTIVE)]
    return str((active if not active.empty else runs)["run_id"].iloc[0])


def render_run_picker(runs: pd.DataFrame) -> str:
    """Select box over the runs; ``?run=ID`` in the URL selects a run, and the URL follows the selection."""
    by_id = runs_by_id(runs)
    wanted = st.query_params.get("run")
    if wanted in by_id and st.session_state.get(QP_KEY) != wanted:
        st.session_state[RUN_KEY] = wanted
    if st.session_state.get(RUN_KEY) not in by_id:
        st.session_state[RUN_KEY] = default_run(runs)
    run_id = st.selectbox("Run", list(by_id), format_func=lambda r: run_method_label(by_id[r]), key=RUN_KEY)
    st.query_params["run"] = run_id
    st.session_state[QP_KEY] = run_id
    return run_id


def render_refresh_controls() -> tuple[int, bool]:
    """Sidebar: refresh interval (1-10 s) and pause; returns ``(seconds, paused)``."""
    with st.sidebar:
        st.subheader("Live updates")
        seconds = st.slider(
            "Refresh every (s)",
            1,
            10,
            DEFAULT_INTERVAL_S,
            key="live.interval",
            help="How often the charts read new rows from the store.",
        )
        paused = st.toggle("Pause live updates", key="live.paused")
    return int(seconds), bool(paused)


def render_header(store, run: Mapping) -> None:
    """Run identity, links and the stop button (outside the fragment: clicking reruns the page)."""
    from mmviz import launcher

    cfg = run.get("config") if isinstance(run.get("config"), dict) else {}
    parent = (
        f" · fork of {run['parent_run_id']} @ epoch {epoch_text(run.get('fork_epoch'))}"
        if run.get("parent_run_id")
        else ""
    )
    mods = ", ".join(run.get("modalities") or [])
    st.caption(
        f"**{run.get('dataset')}** ({mods}) · method **{run.get('method')}** · fusion {run.get('fusion')} · "
        f"seed {(cfg.get('train') or {}).get('seed')}{parent}"
    )
    c1, c2, c3, _ = st.columns([1, 1, 1, 3])
    with c1:
        if st.button("Stop run", icon=":material/stop:", key="live.stop", disabled=run.get("status") not in ACTIVE):
            try:
                launcher.stop(store, run["run_id"])
            except MmvizError as exc:
                st.error(str(exc))
            else:
                st.toast("Stop requested: the run finishes its step, checkpoints and ends as 'stopped'.")
    with c2:
        st.page_link(page_path("runs"), label="Fork / restart…", icon=":material/call_split:")
    with c3:
        st.page_link(
            page_path("compare"),
            label="Compare family",
            icon=":material/compare_arrows:",
            query_params={"family": run["run_id"]},
        )


def render_status(run: Mapping, frame: pd.DataFrame) -> None:
    """One status line: status, epochs, latest step, points held and the time of this refresh."""
    status = run.get("effective_status") or run.get("status")
    total = ((run.get("config") or {}).get("train") or {}).get("epochs", "?")
    step = int(frame["step"].max()) if not frame.empty else 0
    st.markdown(
        f"**:{STATUS_COLORS.get(status, 'gray')}[{status}]** · epoch {run.get('epochs_done') or 0}/{total} · "
        f"latest step {step} · {len(frame):,} points · updated {time.strftime('%H:%M:%S')}"
    )
    if run.get("error"):
        st.error(f"Run {status}: {run['error']}")


def render_banner(store, workspace: str, run: Mapping, frame: pd.DataFrame) -> None:
    """The imbalance banner, with a button that launches the missing unimodal reference runs."""
    refs = find_reference_runs(load_runs(workspace), run)
    ref_frames = {  # the same measures on each reference's encoder, for a like-with-like comparison
        m: load_run_metrics(workspace, ref["run_id"], tuple(reference_keys(m)), run_token(ref))
        for m, ref in refs.items()
    }
    banner = compute_imbalance_banner(run, frame, refs, ref_frames)
    show = st.warning if banner.level == "warning" else st.info
    show("  \n".join(banner.lines), icon=":material/balance:")
    if banner.missing_references and run.get("config") and (run.get("origin") or "trainer") == "trainer":
        label = f"Launch unimodal reference runs ({', '.join(banner.missing_references)})"
        if st.button(label, key="live.references", help="One 'unimodal' run per modality, same data and model."):
            from mmviz import launcher

            try:
                for m in banner.missing_references:
                    launcher.launch(
                        store,
                        None,
                        "unimodal",
                        base=run["config"],
                        overrides={"method": {"modality": m}},
                        name=f"{run.get('name') or run['run_id']}-alone-{m}",
                        tags=["reference"],
                        queue=True,
                    )
            except MmvizError as exc:
                st.error(str(exc))
            else:
                load_runs.clear()
                st.toast("Started the unimodal reference runs.")


@st.cache_resource(show_spinner=False, max_entries=256)
def panel_figure(
    workspace: str,
    run_id: str,
    name: str,
    groups: tuple,
    mods: tuple,
    options: tuple,
    version: int,
    n_events: int,
    t0: float,
) -> go.Figure:
    """One live chart of a run, built once per (options, newest row of its keys, events) for all sessions: a panel
    whose keys got no new rows since the last refresh (per-epoch signals between evaluations) is not rebuilt."""
    buf = live_buffer(workspace, run_id)
    opts = ChartOptions(*options)
    return plot_panel(buf.frame, panel_by_name(name), list(groups), list(mods), opts, buf.events, {run_id: t0})


def render_panels(buf: LiveBuffer, run: Mapping, options: ChartOptions) -> list:
    """Every panel that has data; single-facet panels go two to a row. Returns the shown ``(split, quantity)``."""
    frame = buf.frame
    panels = assign_panels(list(buf.groups))
    mods = tuple(run.get("modalities") or [])
    t0 = run.get("started") or (float(frame["wall_time"].min()) if not frame.empty else 0.0)
    opts = (options.x_axis, options.smoothing, options.log_y, options.max_points)
    n_events = 0 if buf.events is None else len(buf.events)
    shown: list = []
    pending: list = []

    def draw(name: str, groups: list) -> None:
        panel = panel_by_name(name)
        st.markdown(f"**{panel.title}**", help=panel.help)
        version = buf.version(groups)
        fig = panel_figure(buf.workspace, buf.run_id, name, tuple(groups), mods, opts, version, n_events, t0)
        render_figure(fig, key=f"live.chart.{name}")

    for name, groups in panels.items():
        shown.extend(groups)
        panel = panel_by_name(name)
        facets = {"split": len({g[0] for g in groups}), "quantity": len({g[1] for g in groups})}.get(panel.facet, 1)
        if facets > 1:
            draw(name, groups)
            continue
        pending.append((name, groups))
        if len(pending) == 2:
            for col, (n, g) in zip(st.columns(2), pending, strict=True):
                with col:
                    draw(n, g)
            pending = []
    if pending:
        with st.columns(2)[0]:
            draw(*pending[0])
    return shown


def live_view(store, workspace: str, run_id: str, options: ChartOptions, polling: bool, shown_status: str) -> None:
    """The fragment body: read new rows, then status, banner, charts and the CSV download.

    ``shown_status`` is the run's status when the page was drawn; when it changes, the whole page reruns.
    """
    try:
        run = store.get_run(run_id)
    except RunNotFoundError:
        st.warning(f"Run {run_id} is no longer in this workspace (deleted from another tab?).")
        return
    buf = live_buffer(workspace, run_id)
    buf.update(store)
    render_status(run, buf.frame)
    pending = analysis_pending(store, run_id)
    if pending:
        epochs = ", ".join(map(str, pending[:5])) + (" ..." if len(pending) > 5 else "")
        st.caption(
            f"Analysis pending for epoch{'s' if len(pending) > 1 else ''} {epochs}: separability, prototypes, "
            "probe accuracies, Shapley values and the imbalance index appear when the analysis process is done."
        )
    render_banner(store, workspace, run, buf.frame)
    if buf.frame.empty:
        st.info("No metrics logged yet; the charts appear with the first logged step.")
    else:
        shown = render_panels(buf, run, options)
        frame, t0 = buf.frame, {run_id: run.get("started")}
        st.download_button(
            "Download CSV of the shown series",
            icon=":material/download:",
            data=lambda: export_frame(frame, shown, options, t0).to_csv(index=False),
            file_name=f"{run_id}-metrics.csv",
            mime="text/csv",
            on_click="ignore",
            key="live.csv",
            help="Every raw point of the charted series (not down-sampled), with x and the smoothed value.",
        )
    if polling and run.get("effective_status") != shown_status:
        load_runs.clear()
        st.rerun()  # the run started or ended: rerun the whole page (run picker, stop button; the timer stops)


def render_live_page(store, workspace: str) -> None:
    """The whole live page below the frame."""
    runs = load_runs(workspace)
    if runs.empty:
        st.info("No runs yet in this workspace.")
        st.page_link(page_path("runs"), label="Start one on the Runs page", icon=":material/table_rows:")
        return
    seconds, paused = render_refresh_controls()
    run_id = render_run_picker(runs)
    run = runs_by_id(runs)[run_id]
    render_header(store, run)
    options = render_chart_controls("live")
    polling = not paused and run.get("effective_status") in ACTIVE
    fragment = st.fragment(run_every=seconds if polling else None)(live_view)
    fragment(store, workspace, run_id, options, polling, run.get("effective_status"))
