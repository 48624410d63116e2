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
from mmviz.analysis.summary import (
    BANNER_KEY_PREFIXES,
    compute_imbalance_banner,
    find_reference_runs,
    reference_keys,
)
from mmviz.errors import MmvizError, RunNotFoundError
from mmviz.store.keys import parse_key, pid_alive
from mmviz.ui.charts import render_chart_controls, render_figure, render_view_keeper
from mmviz.ui.frame import page_path
from mmviz.ui.labels import (
    ACTIVE,
    NOT_APPLICABLE,
    STATUS_COLORS,
    applies,
    epoch_text,
    md,
    run_method_label,
    trained_modalities,
)
from mmviz.ui.readers import (
    LiveBuffer,
    clear_runs,
    fork_buffer,
    live_buffer,
    load_run_metrics,
    load_runs,
    run_token,
    runs_by_id,
)
from mmviz.ui.references import references_going, render_reference_runs
from mmviz.ui.run_select import render_run_filter, render_runs_watcher, runs_signature
from mmviz.viz import ChartOptions, assign_panels, panel_by_name
from mmviz.viz.figures import plot_panel_series
from mmviz.viz.series import export_frame

RUN_KEY = "live.run"
DEFAULT_INTERVAL_S = 2
QP_KEY = "live.query_run"


def default_run(runs: pd.DataFrame) -> str:
    """The newest running (or queued) run, else the newest run."""
    active = runs[runs["effective_status"].isin(ACTIVE)]
    return str((active if not active.empty else runs)["run_id"].iloc[0])


def render_run_picker(runs: pd.DataFrame) -> str | None:
    """Filter and select box over the runs; ``?run=ID`` in the URL selects a run, and the URL follows the selection.
    None when the filter leaves no run."""
    wanted = st.query_params.get("run")
    by_id = runs_by_id(render_run_filter(runs, "live", keep=(wanted,) if wanted else ()))
    if not by_id:
        return None
    if wanted in by_id and st.session_state.get(QP_KEY) != wanted:
        st.session_state[RUN_KEY] = wanted
    if st.session_state.get(RUN_KEY) not in by_id:
        st.session_state[RUN_KEY] = default_run(runs[runs["run_id"].isin(list(by_id))])
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
        f" · fork of {md(run['parent_run_id'])} @ epoch {epoch_text(run.get('fork_epoch'))}"
        if run.get("parent_run_id")
        else (f" · restart of {md(run['restart_of'])}" if run.get("restart_of") else "")
    )
    mods = md(", ".join(run.get("modalities") or []))
    st.caption(
        f"**{md(run.get('dataset'))}** ({mods}) · method **{md(run.get('method'))}** · fusion {md(run.get('fusion'))} · "
        f"seed {md((cfg.get('train') or {}).get('seed'))}{parent}"
    )
    c1, c2, c3, _ = st.columns([1, 1, 1, 3])
    with c1:
        # a lost run (its process gone) has nothing to stop, though its stored status may still read 'running'
        gone = run.get("effective_status", run.get("status")) not in ACTIVE
        if st.button("Stop run", icon=":material/stop:", key="live.stop", disabled=gone):
            try:
                launcher.stop(store, run["run_id"])
            except MmvizError as exc:
                st.error(md(exc))
            else:
                st.toast("Stop requested: the run finishes its step, checkpoints and ends as 'stopped'.")
    with c2:
        st.page_link(
            page_path("runs"),
            label="Fork / restart…",
            icon=":material/call_split:",
            query_params={"run": run["run_id"], "action": "fork"},  # the Runs page opens this run's fork form
        )
    with c3:
        st.page_link(
            page_path("compare"),
            label="Compare family",
            icon=":material/compare_arrows:",
            query_params={"family": run["run_id"]},
        )


def render_status(run: Mapping, buf: LiveBuffer) -> None:
    """One status line: status, epochs, latest step, points held and the time of this refresh."""
    status = run.get("effective_status") or run.get("status")
    total = ((run.get("config") or {}).get("train") or {}).get("epochs", "?")
    st.markdown(
        f"**:{STATUS_COLORS.get(status, 'gray')}[{status}]** · epoch {run.get('epochs_done') or 0}/{total} · "
        f"latest step {buf.last_step} · {buf.points:,} points · updated {time.strftime('%H:%M:%S')}"
    )
    if run.get("error"):
        st.error(md(f"Run {status}: {run['error']}"))


def render_banner(store, workspace: str, run: Mapping, frame: pd.DataFrame) -> None:
    """The imbalance banner, with a button that launches the missing unimodal reference runs."""
    refs = find_reference_runs(load_runs(workspace), run)
    ref_frames = {  # the same measures on each reference's encoder, for a like-with-like comparison
        m: load_run_metrics(workspace, ref["run_id"], tuple(reference_keys(m)), run_token(ref))
        for m, ref in refs.items()
    }
    banner = compute_imbalance_banner(run, frame, refs, ref_frames)
    show = st.warning if banner.level == "warning" else st.info
    show("  \n".join(md(line) for line in banner.lines), icon=":material/balance:")
    render_reference_runs(store, workspace, run, banner.missing_references)


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
    hidden: tuple[str, ...] = (),
    history: tuple[str, float, int] | None = None,
) -> go.Figure:
    """One live chart of a run, built once per (options, newest row of its keys, events) for all sessions: a panel
    whose keys got no new rows since the last refresh (per-epoch signals between evaluations) is not rebuilt. Its
    series come down-sampled from the run's live buffer, which keeps them up to date as rows arrive.

    ``history`` = ``(parent run id, fork epoch, parent rows held)`` draws a fork's parent before the fork point too.
    """
    buf = live_buffer(workspace, run_id)
    opts = ChartOptions(*options)
    if history is None:
        series = buf.chart_series(opts, list(groups), t0, hidden)
    else:
        parent, fork_epoch, _ = history
        fork = fork_buffer(workspace, run_id, parent, fork_epoch)
        series = fork.chart_series(live_buffer(workspace, parent), buf, opts, list(groups), t0, hidden)
    return plot_panel_series(
        series, panel_by_name(name), list(groups), list(mods), opts, buf.events, {run_id: t0}, hidden=hidden
    )


def not_applicable_keys(run: Mapping, groups: Mapping[tuple, list[str]]) -> tuple[str, ...]:
    """The keys of ``groups`` that mean nothing for ``run`` (see :func:`mmviz.ui.labels.applies`), sorted."""
    mods = list(run.get("modalities") or [])
    return tuple(
        sorted(
            k
            for (_, quantity), keys in groups.items()
            for k in keys
            if not applies(run, quantity, parse_key(k, mods)[2])
        )
    )


def render_panels(buf: LiveBuffer, run: Mapping, options: ChartOptions, parent: LiveBuffer | None = None) -> list:
    """Every panel that has data, each in a section that can be collapsed; single-facet panels go two to a row.

    ``parent``: the fork's parent's buffer, whose rows up to the fork epoch are drawn before the fork's own.
    Returns the shown ``(split, quantity)``.
    """
    mods = tuple(run.get("modalities") or [])
    groups_held = dict(buf.groups)
    history = None
    if parent is not None:
        history = (parent.run_id, float(run["fork_epoch"]), parent.after_id)
        for group, keys in parent.groups.items():
            groups_held[group] = sorted(set(groups_held.get(group, [])) | set(keys))
    hidden = not_applicable_keys(run, groups_held)
    panels = assign_panels([g for g, keys in groups_held.items() if not set(keys) <= set(hidden)])
    if hidden:
        st.caption(
            f"{NOT_APPLICABLE} Not charted, as they do not apply to a run that trains only "
            f"{', '.join(trained_modalities(run))}: {', '.join(sorted(hidden))}."
        )
    t0 = run.get("started") or buf.first_wall_time()
    opts = (options.x_axis, options.smoothing, options.log_y, options.max_points)
    n_events = 0 if buf.events is None else len(buf.events)
    shown: list = []
    pending: list = []

    def draw(name: str, groups: list) -> None:
        panel = panel_by_name(name)
        with st.expander(panel.title, expanded=True, key=f"live.section.{name}"):  # click the title to collapse
            st.caption(panel.help)
            version = buf.version(groups)
            fig = panel_figure(
                buf.workspace, buf.run_id, name, tuple(groups), mods, opts, version, n_events, t0, hidden, history
            )
            render_figure(fig, key=f"live.chart.{name}")

    for name, groups in panels.items():
        shown.extend(groups)
        panel = panel_by_name(name)
        facets = {"split": len({g[0] for g in groups}), "quantity": len({g[1] for g in groups}), "measure": len(groups)}
        facets = facets.get(panel.facet, 1)
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


def analysing(run_id: str) -> bool:
    """Whether an analysis process this session started for ``run_id`` (:func:`render_pending_analysis`) runs."""
    pid = st.session_state.get(f"live.analysis.{run_id}")
    return pid is not None and pid_alive(pid)


def render_pending_analysis(store, run: Mapping, pending: list[int]) -> None:
    """Which epochs were measured but are not analysed yet. While the run trains its analysis process is on them;
    a run that ended without one (killed together with it, or its machine stopped) gets a button that starts one."""
    if not pending:
        return
    run_id = run["run_id"]
    epochs = ", ".join(map(str, pending[:5])) + (" ..." if len(pending) > 5 else "")
    plural = "s" if len(pending) > 1 else ""
    values = "separability, prototypes, probe accuracies, Shapley values and the imbalance index"
    if run.get("effective_status") in ACTIVE:
        st.caption(f"Analysis pending for epoch{plural} {epochs}: {values} appear when the analysis process is done.")
        return
    if analysing(run_id):
        st.caption(f"Analysing epoch{plural} {epochs}: {values} appear as each epoch is done.")
        return
    st.caption(
        f"Epoch{plural} {epochs} {'were' if plural else 'was'} measured but not analysed: the run ended while no "
        f"analysis process was running (killed together with its trainer, or its machine stopped). The {values} of "
        f"{'these epochs' if plural else 'this epoch'} can still be computed from the stored measurements."
    )
    if st.button("Analyse them now", icon=":material/analytics:", key=f"live.analyse.{run_id}"):
        from mmviz import launcher

        st.session_state[f"live.analysis.{run_id}"] = launcher.start_analysis(store, run_id).pid
        st.rerun()  # the whole page: it polls while the analysis runs


def live_view(
    store, workspace: str, run_id: str, options: ChartOptions, polling: bool, shown_status: str, with_parent=False
) -> None:
    """The fragment body: read new rows, then status, banner, charts and the CSV download.

    ``shown_status`` is the run's status when the page was drawn; when it changes, the whole page reruns.
    ``with_parent``: a fork's charts start with its parent's history before the fork point.
    """
    try:
        run = store.get_run(run_id)
    except RunNotFoundError:
        st.warning(md(f"Run {run_id} is no longer in this workspace (deleted from another tab?)."))
        return
    buf = live_buffer(workspace, run_id)
    buf.update(store)
    parent = None
    if with_parent and run.get("parent_run_id") and run.get("fork_epoch") is not None:
        try:
            parent = live_buffer(workspace, run["parent_run_id"])
            parent.update(store)
        except RunNotFoundError:
            st.caption(f"The parent run {run['parent_run_id']} is no longer in this workspace.")
            parent = None
    render_status(run, buf)
    render_pending_analysis(store, run, analysis_pending(store, run_id))
    render_banner(store, workspace, run, buf.frame_of(k for k in buf.seen if k.startswith(BANNER_KEY_PREFIXES)))
    if not buf.points and parent is None:
        st.info("No metrics logged yet; the charts appear with the first logged step.")
    else:
        shown = render_panels(buf, run, options, parent)
        t0 = {run_id: run.get("started")}
        st.download_button(
            "Download CSV of the shown series",
            icon=":material/download:",
            data=lambda: export_frame(buf.frame, shown, options, t0).to_csv(index=False),
            file_name=f"{run_id}-metrics.csv",
            mime="text/csv",
            on_click="ignore",
            key="live.csv",
            help="Every raw point of the charted series (not down-sampled), with x and the smoothed value.",
        )
    if polling and run.get("effective_status") != shown_status:
        clear_runs()
        st.rerun()  # the run started or ended: rerun the whole page (run picker, stop button; the timer stops)


def render_live_page(store, workspace: str) -> None:
    """The whole live page below the frame."""
    runs = load_runs(workspace)
    seconds, paused = render_refresh_controls()
    if not paused:  # a run started elsewhere (e.g. the CLI) appears in the picker within the refresh interval
        render_runs_watcher(workspace, runs_signature(runs, with_status=False), "live", seconds, with_status=False)
    if runs.empty:
        st.info("No runs yet in this workspace.")
        st.page_link(page_path("runs"), label="Start one on the Runs page", icon=":material/table_rows:")
        return
    run_id = render_run_picker(runs)
    if run_id is None:
        return
    run = runs_by_id(runs)[run_id]
    render_header(store, run)
    options = render_chart_controls("live")
    render_view_keeper()  # zoom and legend choices survive the refreshes
    with_parent = False
    if run.get("parent_run_id") and run.get("fork_epoch") is not None:
        with_parent = st.toggle(
            f"Show the parent's history before the fork (epochs 1–{epoch_text(run.get('fork_epoch'))})",
            key="live.with_parent",
            help="Draw the parent run's curves up to the fork point, continued by this fork's own.",
        )
    going = run.get("effective_status") in ACTIVE or bool(references_going(runs, run)) or analysing(run_id)
    polling = not paused and going
    fragment = st.fragment(run_every=seconds if polling else None)(live_view)
    fragment(store, workspace, run_id, options, polling, run.get("effective_status"), bool(with_parent))
