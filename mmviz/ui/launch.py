"""Launch, restart and fork forms: every widget comes from the registered config dataclasses.

Each form is a fragment: a change reruns only the form (not the page), so fields that do not apply (momentum under
Adam, the fusions a method cannot use) come and go as the user edits. Submitting validates the settings through the
same code as the CLI (:func:`mmviz.training.config.build_run_config`) and shows its one-sentence error in the form.
The checks that need the data (:func:`mmviz.training.build.check_run_config`) run in the trainer process, never
here: the form waits a few seconds for the trainer's verdict and shows the failed run's one-sentence message from the
store. Nothing here imports torch (the registries hold torch-free declarations).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import streamlit as st

from mmviz.balancing import METHODS
from mmviz.data import DATASETS, create_dataset
from mmviz.errors import ConfigError, MmvizError
from mmviz.probes import PROBES
from mmviz.recipes import recipe_summary
from mmviz.training.config import ModelConfig, OptimConfig, TrainConfig
from mmviz.ui.forms import changed_fields, cli_command, defaults_of, modality_choices, render_config
from mmviz.ui.frame import flash
from mmviz.ui.labels import format_duration, md
from mmviz.ui.readers import clear_runs, load_run_summaries, runs_by_id
from models.catalog import FUSION_NAMES as FUSIONS
from models.catalog import fusions_with

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


def fusions_for(method: str) -> list[str]:
    """The fusions whose network has every capability ``method`` declares it requires (the launch's own check), in
    order."""
    return fusions_with(METHODS.get(method).flags.get("requires", frozenset()))


def methods_for(fusion: str) -> list[str]:
    """The balancing methods that work with ``fusion`` (what a fork of a run with that fusion may use)."""
    return [m for m in METHODS.names() if fusion in fusions_for(m)]


def render_run_form(
    key: str,
    dataset: str,
    method: str,
    base: Mapping[str, Any] | None = None,
    sections: tuple = SECTIONS,
    skip: Mapping[str, tuple] | None = None,
    modalities: list[str] | None = None,
) -> dict[str, dict]:
    """Tabs of widgets for the run-config ``sections`` (inside a form container); returns the overrides: every
    field changed from ``base``'s values (else the defaults). ``skip`` names fields per section not to show;
    ``modalities`` are the data set's modality names when known (else they are read from the data set), offered in
    the fields that name modalities.

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
                summary = recipe_summary(me)
                if summary:  # what recipe=paper implies, shown before launch (as text, not markdown)
                    st.text(summary)
            elif section == "data":
                st.caption(ds.summary)
            shown = {**defaults_of(cls), **(initial[section] or {})}
            display, choices = dict(shown), None
            if section == "method" and any(s.modalities for s in cls.field_specs()):
                data_json = json.dumps(overrides.get("data") or {}, sort_keys=True)
                choices = modality_choices(cls, modalities or dataset_modalities(dataset, data_json))
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


@st.cache_data(show_spinner="Reading the data set's modalities…", max_entries=32)
def dataset_modalities(dataset: str, data_overrides: str) -> list[str] | None:
    """The modality names of ``dataset`` with the form's data settings (JSON), or None when it cannot be loaded."""
    from mmviz.training.config import build_run_config

    try:
        cfg = build_run_config(dataset, "baseline", overrides={"data": json.loads(data_overrides)})
        return list(create_dataset(dataset, cfg.data).modality_names)
    except (MmvizError, OSError, ValueError):
        return None


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
    clear_runs()
    links = [("live", "Watch it on the Live page", ":material/monitoring:", {"run": run_id})]
    if parent:
        links.append(("compare", compare, ":material/compare_arrows:", {"family": parent}))
    flash(f"{verb} run {run_id}.", links)


def start_run(
    store,
    dataset: str,
    method: str,
    overrides: Mapping,
    name: str = "",
    tags: list[str] | None = None,
    backend: str = "local",
) -> str:
    """Validate the settings like the CLI, queue the run for ``backend`` (it starts now when a slot is free) and wait
    for its trainer's checks; returns the run id.

    Raises ``MmvizError`` for bad settings, and ``RunRefused`` (with the trainer's one sentence) when the trainer
    ended the run ``failed`` at its checks that need the data.
    """
    from mmviz import launcher

    run_id = launcher.launch(
        store, dataset, method, overrides=overrides, name=name, tags=tags or [], queue=True, backend=backend
    )
    return _checked(store, run_id)


class RunRefused(MmvizError):
    """The trainer refused the run at its checks (the message is its one sentence)."""


def _checked(store, run_id: str) -> str:
    """Wait for the trainer's checks (spinner); raise :class:`RunRefused` when it ended the run failed."""
    from mmviz import launcher

    with st.spinner("Checking the settings against the data…"):
        run = launcher.wait_until_checked(store, run_id)
    if run["status"] == "failed":
        clear_runs()
        raise RunRefused(run.get("error") or f"Run {run_id} failed at its start; see its log.")
    return run_id


def render_backend_picker(where, key: str) -> str:
    """Where a run trains: 'local' (a process on this machine) or 'ray' (a Ray task; see mmviz.ray_backend)."""
    from mmviz.store.queue import BACKEND_NAMES

    return where.selectbox(
        "Backend",
        BACKEND_NAMES,
        key=key,
        help="local: a trainer process on this machine. ray: a Ray task with the run's CPU/GPU request, on the "
        "cluster at MMVIZ_RAY_ADDRESS (or a local Ray).",
    )


def render_demo_button(store) -> None:
    """A button that starts the default demo run (mfeat, baseline)."""
    if st.button(
        "Start demo run (mfeat)",
        icon=":material/play_arrow:",
        key="demo",
        help="Baseline training on the bundled mfeat digits (about 10 s on a CPU, start-up included).",
    ):
        try:
            run_id = start_run(store, DEMO["dataset"], DEMO["method"], {}, name=DEMO["name"], tags=DEMO["tags"])
        except MmvizError as exc:
            st.error(md(exc))
        else:
            _started(run_id, "Started demo")


# Seconds per epoch on 2 CPU cores with the default settings, for a data set this workspace has not trained yet
# (a run's stored duration over its epochs; mfeat: the demo's 30 epochs train in ~3.5 s, bench/demo_run.py prints
# this prior beside what it measured; avdigits with its CNN encoders: 4.4 s an epoch, `mmviz train --dataset avdigits
# --epochs 4` took 17.5 s).
PRIOR_EPOCH_S = {"mfeat": 0.12, "avdigits": 4.4}


def store_workspace(store) -> str:
    """The workspace path of ``store`` as the cached readers key it."""
    return str(store.workspace)


def estimate_epoch_seconds(runs, dataset: str, encoder: str) -> tuple[float | None, str]:
    """Seconds per epoch for ``dataset`` with ``encoder``: the median of this workspace's finished runs of that data
    set and encoder (``runs``: :func:`load_run_summaries`' frame), else a prior measured on 2 CPU cores
    (:data:`PRIOR_EPOCH_S`); returns ``(seconds, source)``."""
    rates = []
    for run in runs_by_id(runs[runs["dataset"] == dataset]).values() if not runs.empty else []:
        done, took, used = run.get("epochs_done") or 0, run.get("duration"), run.get("encoder")
        if (used if isinstance(used, str) and used else "auto") != encoder:
            continue
        if run.get("status") == "finished" and done and took and took == took and not run.get("parent_run_id"):
            rates.append(float(took) / float(done))
    if rates:
        rates.sort()
        return rates[len(rates) // 2], f"median of {len(rates)} finished {dataset} run(s) in this workspace"
    if dataset in PRIOR_EPOCH_S and encoder == "auto":
        return PRIOR_EPOCH_S[dataset], "measured on 2 CPU cores"
    return None, ""


def estimate_text(runs, dataset: str, overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: how long the run the form describes will take (or that there is nothing to estimate from yet)."""
    epochs = int((overrides.get("train") or {}).get("epochs", defaults_of(TrainConfig)["epochs"]))
    encoder = str((overrides.get("model") or {}).get("encoder", defaults_of(ModelConfig)["encoder"]))
    per_epoch, source = estimate_epoch_seconds(runs, dataset, encoder)
    if per_epoch is None:
        return f"Expected time: no finished {dataset} run with encoder '{encoder}' here to estimate from yet."
    per = format_duration(per_epoch) if per_epoch >= 10 else f"{per_epoch:.2g} s"  # not '1.2e+02 s'
    return (
        f"Expected time: about {format_duration(max(per_epoch * epochs, 1.0))} for {epochs} epochs "
        f"(~{per} per epoch, {source}; plus a few seconds to start; more data, larger encoders or a busy "
        "machine take longer)."
    )


@st.fragment
def render_launch_form(store) -> None:
    """Dataset and method pickers, the settings form, and the launch button."""
    c1, c2 = st.columns(2)
    with c1:
        dataset = render_registry_picker("Dataset", DATASETS, "launch.dataset", "mfeat")
    with c2:
        method = render_registry_picker("Balancing method", METHODS, "launch.method", "baseline")
    with st.container(border=True, key="launch.form"):
        overrides = render_run_form("launch", dataset, method)
        c1, c2, c3 = st.columns([2, 2, 1])
        name = c1.text_input("Run name", key="launch.name", placeholder=f"{dataset}-{method}")
        tags = c2.text_input("Tags", key="launch.tags", help="Comma-separated.")
        backend = render_backend_picker(c3, "launch.backend")
        st.caption(estimate_text(load_run_summaries(store_workspace(store)), dataset, overrides))
        submitted = st.button("Launch run", type="primary", key="launch.submit")
    if submitted:
        st.caption("Equivalent command:")
        st.code(cli_command(dataset, method, overrides, name.strip(), tuple(_tags(tags))), language="bash")
        try:
            run_id = start_run(store, dataset, method, overrides, name=name.strip(), tags=_tags(tags), backend=backend)
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


@st.fragment
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
    with st.container(border=True, key=f"restart.{rid}.form"):
        mods = run.get("modalities") if dataset == base.get("dataset") else None
        overrides = render_run_form(f"restart.{rid}", dataset, method, base, modalities=mods)
        name = st.text_input("Run name", key=f"restart.{rid}.name", value=f"{run.get('name') or rid}-restart")
        submitted = st.button("Restart with these settings", type="primary", key=f"restart.{rid}.submit")
    if submitted:
        try:
            new_id = _checked(
                store,
                launcher.restart(
                    store, rid, dataset=dataset, method=method, overrides=overrides, name=name.strip(), queue=True
                ),
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


@st.fragment
def render_fork_form(store, run: Mapping) -> None:
    """Fork ``run`` from one of its checkpoints with edited balancing settings (the child resumes its weights)."""
    from mmviz import launcher

    if render_own_code_settings(run, "forked"):
        return
    rid = run["run_id"]
    base = run.get("config") or {}
    epochs: list[int | str] = list(launcher.available_checkpoints(store, rid))
    stop_point = launcher.stop_checkpoint(store, rid)
    if stop_point is not None:
        epochs.append(launcher.STOP_POINT)
    if not epochs:
        st.info("This run has no checkpoint yet: a fork starts from a checkpoint written at the end of an epoch.")
        return

    def label(e: int | str) -> str:
        if e == launcher.STOP_POINT and stop_point is not None:
            return f"where it was stopped (after epoch {stop_point[0]}, step {stop_point[1]})"
        return str(e)

    fusion = (base.get("model") or {}).get("fusion") or run.get("fusion") or "concat"
    methods = methods_for(fusion) if fusion in FUSIONS else METHODS.names()
    last = epochs[-1] if not isinstance(epochs[-1], str) else stop_point[0]
    parent_epochs = int((base.get("train") or {}).get("epochs") or last)
    c1, c2, c3 = st.columns(3)
    with c1:
        epoch = st.selectbox(
            "From checkpoint epoch", epochs, index=len(epochs) - 1, key=f"fork.{rid}.epoch", format_func=label
        )
    with c2:
        method = render_registry_picker(
            "Balancing method", METHODS, f"fork.{rid}.method", base.get("method"), names=methods
        )
    start = stop_point[0] if epoch == launcher.STOP_POINT and stop_point is not None else int(epoch)
    with c3:
        further = st.number_input(
            "Further epochs to train",
            min_value=1,
            max_value=100000,
            value=default_further_epochs(parent_epochs, start),
            step=1,
            key=f"fork.{rid}.further.{epoch}",
            help="Epochs the fork trains after the checkpoint; the child's 'epochs' setting (a total) is the "
            "checkpoint epoch plus this.",
        )
    total = start + int(further)
    skipped = len(methods) < len(METHODS.names())
    st.caption(
        f"The fork resumes the weights of {'epoch ' + str(epoch) if start == epoch else label(epoch)} and trains "
        f"epochs {start + 1}–{total} "
        f"({int(further)} more; {total} in total)."
        + (f" Only methods that work with the parent's fusion '{fusion}' are offered." if skipped else "")
    )
    _follow_default(f"fork.{rid}.name", f"{run.get('name') or rid}-{method}-e{epoch}")
    name = st.text_input("Run name", key=f"fork.{rid}.name", help="Defaults to parent-method-epoch until you type one.")
    with st.container(border=True, key=f"fork.{rid}.form"):
        overrides = render_run_form(
            f"fork.{rid}",
            base.get("dataset") or "mfeat",
            method,
            base,
            ("method", "train"),
            skip={"train": ("epochs",)},
            modalities=run.get("modalities"),
        )
        submitted = st.button("Fork", type="primary", key=f"fork.{rid}.submit")
    if submitted:
        overrides = {**overrides, "train": {**overrides.get("train", {}), "epochs": total}}
        try:
            check_fork_trains(start, total)
            child = _checked(
                store,
                launcher.fork(store, rid, epoch, method=method, overrides=overrides, name=name.strip(), queue=True),
            )
        except MmvizError as exc:
            st.error(md(exc))
        else:
            _started(child, "Forked as", parent=rid)


def _tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]
