"""Launch, restart and fork forms: every widget comes from the registered config dataclasses.

Dataset and method are picked outside the form (their settings depend on them); everything else sits in one
``st.form`` so typing does not rerun the page. Submitting validates through the same code as the CLI
(:func:`mmviz.training.config.build_run_config` and :func:`mmviz.training.build.check_run_config`) and shows
its one-sentence error in the form when the combination is invalid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import streamlit as st

from mmviz.balancing import METHODS
from mmviz.data import DATASETS
from mmviz.errors import ConfigError, MmvizError
from mmviz.probes import PROBES
from mmviz.recipes import recipe_summary
from mmviz.training.config import ModelConfig, OptimConfig, TrainConfig
from mmviz.ui.forms import changed_fields, cli_command, defaults_of, render_config
from mmviz.ui.frame import flash
from mmviz.ui.labels import md
from mmviz.ui.readers import load_runs
from models.fusion import FUSIONS

SECTIONS = ("data", "model", "method", "optim", "train", "probes")
TAB_TITLES = {
    "data": "Data",
    "model": "Model",
    "method": "Method",
    "optim": "Optimizer",
    "train": "Training",
    "probes": "Diagnostics",
}
DEMO = {"dataset": "mfeat", "method": "baseline", "name": "demo-mfeat", "tags": ["demo"]}


def render_registry_picker(
    label: str, registry, key: str, current: str | None = None, names: list[str] | None = None
) -> str:
    """A select box over a registry's names (or the subset ``names``), with each entry's description as its help."""
    names = list(names) if names is not None else registry.names()
    index = names.index(current) if current in names else 0
    help_text = "\n\n".join(f"**{e.name}**: {e.summary}" for e in registry if e.name in names)
    return st.selectbox(label, names, index=index, key=key, help=help_text)


def _fusion_fits(method: str, fusion: str) -> bool:
    cls = METHODS.get(method).factory
    restricted = getattr(cls, "fusions", None)
    needs_split = "unimodal_logits" in getattr(cls, "requires", frozenset())
    return (restricted is None or fusion in restricted) and (not needs_split or FUSIONS[fusion][0].has_unimodal)


def fusions_for(method: str) -> list[str]:
    """The fusions ``method`` works with (from its declared ``fusions`` and ``requires``), in registry order."""
    return [f for f in FUSIONS if _fusion_fits(method, f)]


def methods_for(fusion: str) -> list[str]:
    """The balancing methods that work with ``fusion`` (what a fork of a run with that fusion may use)."""
    return [m for m in METHODS.names() if _fusion_fits(m, fusion)]


def render_run_form(
    key: str,
    dataset: str,
    method: str,
    base: Mapping[str, Any] | None = None,
    sections: tuple = SECTIONS,
    skip: Mapping[str, tuple] | None = None,
) -> dict[str, dict]:
    """Tabs of widgets for the run-config ``sections`` (call inside ``st.form``); returns the overrides: every
    field changed from ``base``'s values (else the defaults). ``skip`` names fields per section not to show.

    The fusion offers only those the method works with; when ``base``'s fusion is not one of them, the form shows
    the first that is (and says so), and it becomes an override.
    """
    base = dict(base or {})
    me = METHODS.get(method)
    ds = DATASETS.get(dataset) if "data" in sections else None
    initial = {
        "data": base.get("data") if base.get("dataset") == dataset else None,
        "model": base.get("model"),
        "method": base.get("method_params") if base.get("method") == method else None,
        "optim": base.get("optim"),
        "train": base.get("train"),
    }
    classes = {
        "data": ds.config_cls if ds else None,
        "model": ModelConfig,
        "method": me.config_cls,
        "optim": OptimConfig,
        "train": TrainConfig,
    }
    overrides: dict[str, dict] = {}
    tabs = st.tabs([TAB_TITLES[s] for s in sections])
    for tab, section in zip(tabs, sections, strict=True):
        with tab:
            if section == "probes":
                probes = _render_probes(key, base.get("probes") or {})
                if probes:
                    overrides["probes"] = probes
                continue
            cls = classes[section]
            if section == "method":
                first, _, rest = (me.description or me.name).strip().partition("\n\n")
                st.markdown(first)
                if rest.strip():
                    with st.expander(f"More about {me.name}"):
                        st.markdown(rest)
                summary = recipe_summary(me.factory)
                if summary:  # what recipe=paper implies, shown before launch (as text, not markdown)
                    st.text(summary)
            elif section == "data":
                st.caption(ds.summary)
            shown = {**defaults_of(cls), **(initial[section] or {})}
            display, choices = dict(shown), None
            if section == "model":
                allowed = fusions_for(method)
                choices = {"fusion": tuple(allowed)}
                if shown.get("fusion") not in allowed:
                    display["fusion"] = allowed[0]
                    st.info(
                        f"Method '{method}' does not work with fusion '{shown.get('fusion')}': switched to "
                        f"'{allowed[0]}'. The fusions it works with: {', '.join(allowed)}."
                    )
                elif len(allowed) < len(FUSIONS):
                    st.caption(f"Method '{method}' works with these fusions only: {', '.join(allowed)}.")
            suffix = {"data": f".{dataset}", "method": f".{method}"}.get(section, "")  # new widgets when it changes
            values = render_config(
                cls, f"{key}.{section}{suffix}", display, columns=3, skip=(skip or {}).get(section, ()), choices=choices
            )
            changed = changed_fields(values, shown)
            if changed:
                overrides[section] = changed
    return overrides


def _render_probes(key: str, base: Mapping[str, Any]) -> dict[str, dict]:
    out = {}
    for entry in PROBES:
        shown = {**defaults_of(entry.config_cls), **(base.get(entry.name) or {})}
        st.markdown(f"**{entry.name}**: {entry.summary}")
        values = render_config(entry.config_cls, f"{key}.probes.{entry.name}", shown, columns=4)
        changed = changed_fields(values, shown)
        if changed:
            out[entry.name] = changed
    return out


def _started(run_id: str, verb: str, parent: str | None = None, compare: str = "Compare parent and child") -> None:
    load_runs.clear()
    links = [("live", "Watch it on the Live page", ":material/monitoring:", {"run": run_id})]
    if parent:
        links.append(("compare", compare, ":material/compare_arrows:", {"family": parent}))
    flash(f"{verb} run {run_id}.", links)


def start_run(
    store, dataset: str, method: str, overrides: Mapping, name: str = "", tags: list[str] | None = None
) -> str:
    """Validate like the CLI, then queue the run (it starts now when a slot is free); returns the run id (raises
    ``MmvizError``)."""
    from mmviz import launcher

    return launcher.launch(store, dataset, method, overrides=overrides, name=name, tags=tags or [], queue=True)


def render_demo_button(store) -> None:
    """A button that starts the default demo run (mfeat, baseline)."""
    if st.button(
        "Start demo run (mfeat)",
        icon=":material/play_arrow:",
        key="demo",
        help="Baseline training on the bundled mfeat digits (~1 min on a CPU).",
    ):
        try:
            run_id = start_run(store, DEMO["dataset"], DEMO["method"], {}, name=DEMO["name"], tags=DEMO["tags"])
        except MmvizError as exc:
            st.error(md(exc))
        else:
            _started(run_id, "Started demo")


def render_launch_form(store) -> None:
    """Dataset and method pickers, the settings form, and the launch button."""
    c1, c2 = st.columns(2)
    with c1:
        dataset = render_registry_picker("Dataset", DATASETS, "launch.dataset", "mfeat")
    with c2:
        method = render_registry_picker("Balancing method", METHODS, "launch.method", "baseline")
    with st.form("launch.form"):
        overrides = render_run_form("launch", dataset, method)
        c1, c2 = st.columns(2)
        name = c1.text_input("Run name", key="launch.name", placeholder=f"{dataset}-{method}")
        tags = c2.text_input("Tags", key="launch.tags", help="Comma-separated.")
        submitted = st.form_submit_button("Launch run", type="primary")
    if submitted:
        st.caption("Equivalent command:")
        st.code(cli_command(dataset, method, overrides, name.strip(), tuple(_tags(tags))), language="bash")
        try:
            run_id = start_run(store, dataset, method, overrides, name=name.strip(), tags=_tags(tags))
        except MmvizError as exc:
            st.error(md(exc))
        else:
            _started(run_id, "Started")


def render_own_code_settings(run: Mapping, done: str) -> bool:
    """For a run the user's own code trained: say it cannot be ``done`` here and show its exact settings (True)."""
    origin = run.get("origin") or "trainer"
    if origin == "trainer":
        return False
    how = "a PyTorch Lightning callback" if origin == "lightning" else "the mmviz.api calls in your own training loop"
    st.info(
        f"This run was trained by your own code through {how}, so it cannot be {done} from the dashboard: "
        "re-run your script with these settings (or edited ones) instead.",
        icon=":material/code:",
    )
    st.code(json.dumps(run.get("config") or {}, indent=2, sort_keys=True), language="json")
    return True


def render_restart_form(store, run: Mapping) -> None:
    """Restart ``run`` from scratch with edited settings (a new run; the old one is kept)."""
    from mmviz import launcher

    if render_own_code_settings(run, "restarted"):
        return
    base = run.get("config") or {}
    rid = run["run_id"]
    c1, c2 = st.columns(2)
    with c1:
        dataset = render_registry_picker("Dataset", DATASETS, f"restart.{rid}.dataset", base.get("dataset"))
    with c2:
        method = render_registry_picker("Balancing method", METHODS, f"restart.{rid}.method", base.get("method"))
    with st.form(f"restart.{rid}.form"):
        overrides = render_run_form(f"restart.{rid}", dataset, method, base)
        name = st.text_input("Run name", key=f"restart.{rid}.name", value=f"{run.get('name') or rid}-restart")
        submitted = st.form_submit_button("Restart with these settings", type="primary")
    if submitted:
        try:
            new_id = launcher.restart(
                store, rid, dataset=dataset, method=method, overrides=overrides, name=name.strip(), queue=True
            )
        except MmvizError as exc:
            st.error(md(exc))
        else:
            _started(new_id, "Restarted as", parent=rid, compare="Compare it with the original")


def check_fork_trains(fork_epoch: int, epochs: int) -> None:
    """Refuse a fork that would train nothing: ``epochs`` is the total count, so it must exceed ``fork_epoch``."""
    if epochs <= fork_epoch:
        raise ConfigError(
            f"A fork from epoch {fork_epoch} with 'epochs' {epochs} in total has nothing to train; "
            f"'epochs' counts from the start, so set it to at least {fork_epoch + 1}."
        )


def default_further_epochs(parent_epochs: int, fork_epoch: int) -> int:
    """How many epochs a fork trains by default: what the parent had left after ``fork_epoch``, else 10 more."""
    return parent_epochs - fork_epoch if parent_epochs > fork_epoch else 10


def _follow_default(key: str, default: str) -> None:
    """Set text widget ``key`` to ``default`` unless the user has typed something else than the previous default."""
    ss = st.session_state
    if ss.get(key) in (None, ss.get(f"{key}.default")):
        ss[key] = default
    ss[f"{key}.default"] = default


def render_fork_form(store, run: Mapping) -> None:
    """Fork ``run`` from one of its checkpoints with edited balancing settings (the child resumes its weights)."""
    from mmviz import launcher

    if render_own_code_settings(run, "forked"):
        return
    rid = run["run_id"]
    base = run.get("config") or {}
    epochs = launcher.available_checkpoints(store, rid)
    if not epochs:
        st.info("This run has no checkpoint yet: a fork starts from a checkpoint written at the end of an epoch.")
        return
    fusion = (base.get("model") or {}).get("fusion") or run.get("fusion") or "concat"
    methods = methods_for(fusion) if fusion in FUSIONS else METHODS.names()
    parent_epochs = int((base.get("train") or {}).get("epochs") or epochs[-1])
    c1, c2, c3 = st.columns(3)
    with c1:
        epoch = st.selectbox("From checkpoint epoch", epochs, index=len(epochs) - 1, key=f"fork.{rid}.epoch")
    with c2:
        method = render_registry_picker(
            "Balancing method", METHODS, f"fork.{rid}.method", base.get("method"), names=methods
        )
    with c3:
        further = st.number_input(
            "Further epochs to train",
            min_value=1,
            max_value=100000,
            value=default_further_epochs(parent_epochs, int(epoch)),
            step=1,
            key=f"fork.{rid}.further.{epoch}",
            help="Epochs the fork trains after the checkpoint; the child's 'epochs' setting (a total) is the "
            "checkpoint epoch plus this.",
        )
    total = int(epoch) + int(further)
    skipped = len(methods) < len(METHODS.names())
    st.caption(
        f"The fork resumes the weights of epoch {epoch} and trains epochs {int(epoch) + 1}–{total} "
        f"({int(further)} more; {total} in total)."
        + (f" Only methods that work with the parent's fusion '{fusion}' are offered." if skipped else "")
    )
    _follow_default(f"fork.{rid}.name", f"{run.get('name') or rid}-{method}-e{epoch}")
    with st.form(f"fork.{rid}.form"):
        overrides = render_run_form(
            f"fork.{rid}",
            base.get("dataset") or "mfeat",
            method,
            base,
            ("method", "train"),
            skip={"train": ("epochs",)},
        )
        name = st.text_input("Run name", key=f"fork.{rid}.name")
        submitted = st.form_submit_button("Fork", type="primary")
    if submitted:
        overrides = {**overrides, "train": {**overrides.get("train", {}), "epochs": total}}
        try:
            check_fork_trains(int(epoch), total)
            child = launcher.fork(
                store, rid, int(epoch), method=method, overrides=overrides, name=name.strip(), queue=True
            )
        except MmvizError as exc:
            st.error(md(exc))
        else:
            _started(child, "Forked as", parent=rid)


def _tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]
