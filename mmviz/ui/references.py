"""Unimodal reference runs of a run (one ``unimodal`` run per modality, same data and model): their progress while
they train, and a button that launches the missing ones, never twice."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from mmviz.analysis.summary import find_reference_runs
from mmviz.errors import MmvizError
from mmviz.ui.labels import ACTIVE, md
from mmviz.ui.readers import clear_runs, load_runs

GOING_KEY = "references.going"


def references_going(runs, run: Mapping) -> dict[str, dict]:
    """``{modality: reference run}`` of ``run``'s reference runs that are still queued or training."""
    refs = find_reference_runs(runs, run)
    return {m: r for m, r in refs.items() if (r.get("effective_status") or r.get("status")) in ACTIVE}


def launch_missing_references(store, run: Mapping) -> list[str]:
    """Launch a reference run for each of ``run``'s modalities that has none (read fresh from the store, so a second
    click, or another tab, finds the runs the first one started); returns the new run ids."""
    from mmviz import launcher

    fresh = find_reference_runs(store.list_runs(), run)
    started = []
    for m in [m for m in (run.get("modalities") or []) if m not in fresh]:
        started.append(
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
        )
    return started


def render_reference_runs(store, workspace: str, run: Mapping, missing: list[str]) -> None:
    """Progress bars of the reference runs in training, and the launch button for the ``missing`` modalities.

    Call it where the page refreshes on a timer while references train (see :func:`references_going`); when the
    last one ends, the whole page reruns so the banner can use them.
    """
    rid = run["run_id"]
    going = references_going(load_runs(workspace), run)
    before = st.session_state.setdefault(GOING_KEY, {}).get(rid, set())
    st.session_state[GOING_KEY][rid] = {r["run_id"] for r in going.values()}
    if before - st.session_state[GOING_KEY][rid]:
        clear_runs()
        st.rerun(scope="app")  # a reference run ended: redraw the banner with it (and stop polling for it)
    for m, ref in going.items():
        total = ((ref.get("config") or {}).get("train") or {}).get("epochs") or 0
        done = int(ref.get("epochs_done") or 0)
        status = ref.get("effective_status") or ref.get("status")
        st.progress(
            min(done / total, 1.0) if total else 0.0,
            text=md(f"Reference run {ref.get('name')} ({m} alone): {status}, epoch {done}/{total or '?'}"),
        )
    if missing and run.get("config") and (run.get("origin") or "trainer") == "trainer":
        label = f"Launch unimodal reference runs ({', '.join(missing)})"
        if st.button(md(label), key="live.references", help="One 'unimodal' run per modality, same data and model."):
            try:
                launch_missing_references(store, run)
            except MmvizError as exc:
                st.error(md(exc))
            else:
                clear_runs()
                st.rerun(scope="app")  # the button gives way to their progress bars
