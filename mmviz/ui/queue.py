"""The run queue on the Runs page: how many run at once, the queued runs in order, and move / cancel.

Drawing the panel with a non-empty queue makes sure the workspace's scheduler process runs
(:func:`mmviz.launcher.ensure_scheduler`): a queue whose scheduler died with its machine resumes as soon as a
dashboard looks at it. The scheduler itself is never a thread of this server.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import streamlit as st

from mmviz.errors import MmvizError
from mmviz.store.queue import MAX_PARALLEL
from mmviz.ui.frame import flash
from mmviz.ui.labels import md
from mmviz.ui.readers import clear_runs


def queue_status_text(status: str, position: int | None) -> str:
    """The status cell of a run: ``queued #3`` for a run waiting in the queue, else the status."""
    return (
        f"{status} #{int(position)}" if status == "queued" and position is not None and position == position else status
    )


def build_queue_table(queue: list[dict], runs_by_id: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per queued run in start order: position, name, method, dataset, backend and run id."""
    rows = []
    for item in queue:
        run = runs_by_id.get(item["run_id"], {})
        rows.append(
            {
                "position": item["position"],
                "name": run.get("name") or item["run_id"],
                "method": run.get("method"),
                "dataset": run.get("dataset"),
                "backend": item["backend"],
                "run id": item["run_id"],
            }
        )
    return pd.DataFrame(rows, columns=["position", "name", "method", "dataset", "backend", "run id"])


def _move(store, run_id: str, position: int, verb: str) -> None:
    try:
        store.move_queued(run_id, position)
    except MmvizError as exc:
        st.error(md(exc))
    else:
        clear_runs()
        flash(f"{verb} run {run_id}.")


def render_queue(store, runs_by_id: Mapping[str, Mapping]) -> None:
    """The queue panel: the parallel limit, the queued runs in order, and actions on one of them."""
    from mmviz.launcher import ensure_scheduler

    queue = store.list_queue()
    limit = store.get_setting(MAX_PARALLEL)
    if queue:
        ensure_scheduler(store)
    title = (
        f"Queue: {len(queue)} waiting, at most {limit} at once" if queue else f"Queue: empty, at most {limit} at once"
    )
    with st.expander(title, icon=":material/queue:", expanded=bool(queue)):
        c1, c2 = st.columns([1, 3])
        with c1:
            new_limit = st.number_input(
                "Runs at once",
                min_value=1,
                max_value=256,
                value=int(limit),
                step=1,
                key="queue.max_parallel",
                help="How many runs of this workspace train at the same time; the rest wait in the queue. "
                "Default: one per GPU, else half the CPU cores.",
            )
            if int(new_limit) != int(limit) and st.button("Save", key="queue.save_limit"):
                store.set_setting(MAX_PARALLEL, int(new_limit))
                flash(f"At most {int(new_limit)} runs now train at once.")
        with c2:
            if not queue:
                st.caption("No run is waiting. Runs launched here wait in the queue while the limit is reached.")
                return
            st.dataframe(build_queue_table(queue, runs_by_id), hide_index=True, key="queue.table", width="stretch")
            ids = [q["run_id"] for q in queue]
            names = {r: (runs_by_id.get(r) or {}).get("name") or r for r in ids}
            rid = st.selectbox(
                "Queued run", ids, format_func=lambda r: f"#{ids.index(r) + 1} {names[r]}", key="queue.pick"
            )
            pos = ids.index(rid) + 1
            b1, b2, b3, b4 = st.columns(4)
            if b1.button("To front", key="queue.front", disabled=pos == 1, icon=":material/vertical_align_top:"):
                _move(store, rid, 1, "Moved to the front:")
            if b2.button("Move up", key="queue.up", disabled=pos == 1, icon=":material/arrow_upward:"):
                _move(store, rid, pos - 1, "Moved up:")
            if b3.button("Move down", key="queue.down", disabled=pos == len(ids), icon=":material/arrow_downward:"):
                _move(store, rid, pos + 1, "Moved down:")
            if b4.button("Cancel", key="queue.cancel", icon=":material/cancel:"):
                try:
                    store.cancel_queued(rid)
                except MmvizError as exc:
                    st.error(md(exc))
                else:
                    clear_runs()
                    flash(f"Cancelled queued run {rid}.")
