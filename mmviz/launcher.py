"""Start, stop and fork trainer processes.

A run is its own OS process, ``python -m mmviz train --run-id ID --workspace DIR``, launched with an
argv list (never a shell). Everything is validated before the run row is created, so bad input starts
nothing and writes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmviz import __version__
from mmviz.errors import ConfigError, StoreError
from mmviz.store import pid_alive
from mmviz.training.build import check_run_config
from mmviz.training.checkpoint import check_checkpoint, checkpoint_path
from mmviz.training.config import RunConfig, build_run_config

ROOT = Path(__file__).resolve().parent.parent
_CHILDREN: list[subprocess.Popen] = []


def prepare_run(
    store: Any,
    cfg: RunConfig,
    *,
    name: str = "",
    parent_run_id: str | None = None,
    fork_epoch: int | None = None,
    tags: Iterable[str] = (),
    data: Any = None,
) -> str:
    """Validate ``cfg`` (and the fork point) and create a queued run; returns its id.

    ``data`` is the already loaded dataset when the caller validated ``cfg`` before opening the store.
    """
    if parent_run_id is not None:
        check_rerunnable(store.get_run(parent_run_id), "fork")
    data = check_run_config(cfg, data)
    if parent_run_id is not None:
        parent = store.get_run(parent_run_id)
        if fork_epoch is None:
            raise ConfigError("A fork needs --fork-epoch K (the parent's checkpoint epoch to start from).")
        if not checkpoint_path(store.run_dir(parent_run_id), fork_epoch).is_file():
            have = available_checkpoints(store, parent_run_id)
            raise ConfigError(
                f"Run {parent_run_id!r} has no checkpoint for epoch {fork_epoch!r}. "
                f"Available epochs: {', '.join(map(str, have)) or 'none'}."
            )
        check_checkpoint(checkpoint_path(store.run_dir(parent_run_id), fork_epoch))
        if parent["dataset"] != cfg.dataset or parent["config"].get("data") != cfg.to_dict()["data"]:
            raise ConfigError(
                f"A fork must keep the parent's dataset settings ({parent['dataset']!r}); "
                "use restart for a new dataset."
            )
        if parent["config"].get("model") != cfg.to_dict()["model"]:
            raise ConfigError(
                "A fork must keep the parent's model settings (it resumes the parent's weights); "
                "use restart to change the model."
            )
    return store.create_run(
        config=cfg.to_dict(),
        name=name or f"{cfg.dataset}-{cfg.method}",
        dataset=cfg.dataset,
        method=cfg.method,
        fusion=cfg.model.fusion,
        modalities=list(data.modality_names),
        parent_run_id=parent_run_id,
        fork_epoch=fork_epoch,
        tags=list(tags),
        device=cfg.train.device,
        version=__version__,
    )


def check_rerunnable(run: Mapping[str, Any], action: str) -> None:
    """Refuse to ``action`` ('fork' or 'restart') a run that the user's own code trained (mmviz.api, Lightning)."""
    origin = run.get("origin") or "trainer"
    if origin != "trainer":
        how = "a Lightning callback" if origin == "lightning" else "mmviz.api"
        raise ConfigError(
            f"Run {run['run_id']!r} was trained by your own code through {how}, so mmviz cannot {action} it; "
            "re-run your script with the settings shown for the run instead."
        )


def available_checkpoints(store: Any, run_id: str) -> list[int]:
    """Epochs for which ``run_id`` has a checkpoint on disk, ascending."""
    folder = store.run_dir(run_id) / "checkpoints"
    out = []
    for p in folder.glob("epoch_*.pt") if folder.is_dir() else []:
        try:
            out.append(int(p.stem.split("_")[1]))
        except (IndexError, ValueError):
            continue
    return sorted(out)


def trainer_argv(store: Any, run_id: str) -> list[str]:
    """The argv list of the trainer process for a prepared run."""
    return [sys.executable, "-m", "mmviz", "train", "--run-id", run_id, "--workspace", str(store.workspace)]


def spawn_run(store: Any, run_id: str) -> subprocess.Popen:
    """Start the trainer process for a prepared run (own session, output to the run's ``train.log``)."""
    reap()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = open(store.run_dir(run_id) / "train.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            trainer_argv(store, run_id),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
            env=env,
            start_new_session=True,
        )
    finally:
        log.close()
    store.update_run(run_id, pid=proc.pid)
    _CHILDREN.append(proc)
    return proc


def launch(
    store: Any,
    dataset: str | None = None,
    method: str | None = None,
    sets: Iterable[str] = (),
    *,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    name: str = "",
    parent_run_id: str | None = None,
    fork_epoch: int | None = None,
    tags: Iterable[str] = (),
) -> str:
    """Build, validate, create and start a run in the background; returns its id."""
    cfg = build_run_config(dataset, method, sets, base=base, overrides=overrides)
    run_id = prepare_run(store, cfg, name=name, parent_run_id=parent_run_id, fork_epoch=fork_epoch, tags=tags)
    spawn_run(store, run_id)
    return run_id


def fork(
    store: Any,
    parent_run_id: str,
    epoch: int,
    *,
    method: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "",
) -> str:
    """Start a child run from the parent's checkpoint at ``epoch`` with edited balancing settings."""
    parent = store.get_run(parent_run_id)
    return launch(
        store,
        None,
        method,
        base=parent["config"],
        overrides=overrides,
        name=name or f"{parent['name']}-fork{epoch}",
        parent_run_id=parent_run_id,
        fork_epoch=epoch,
    )


def restart(
    store: Any,
    run_id: str,
    *,
    dataset: str | None = None,
    method: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "",
) -> str:
    """Start a new run from scratch whose config is ``run_id``'s with edits."""
    old = store.get_run(run_id)
    check_rerunnable(old, "restart")
    return launch(
        store, dataset, method, base=old["config"], overrides=overrides, name=name or f"{old['name']}-restart"
    )


def reap() -> None:
    """Collect exited child trainer processes so they do not linger as zombies."""
    for proc in list(_CHILDREN):
        if proc.poll() is not None:
            _CHILDREN.remove(proc)


def stop(store: Any, run_id: str, *, grace: float = 20.0, wait: bool = False) -> None:
    """Ask a run to stop (store flag); escalate to SIGTERM after ``grace`` s and SIGKILL after 2x ``grace``.

    With ``wait=False`` the escalation runs in a background thread and this returns at once.
    """
    run = store.get_run(run_id)
    if run["status"] not in ("queued", "running"):
        raise StoreError(f"Run {run_id!r} is {run['status']!r}, not running; only running runs can be stopped.")
    store.request_stop(run_id)
    if (run.get("origin") or "trainer") != "trainer":
        return  # the user's own process: it sees the request (mmviz.api's ``should_stop``); never signal it
    pid = run.get("pid")

    def escalate() -> None:
        deadline = time.monotonic() + grace
        for sig in (signal.SIGTERM, signal.SIGKILL):
            while time.monotonic() < deadline:
                reap()
                if not pid_alive(pid) or store.get_run(run_id)["status"] not in ("queued", "running"):
                    return
                time.sleep(0.2)
            if pid_alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
            deadline = time.monotonic() + grace

    if wait:
        escalate()
    else:
        threading.Thread(target=escalate, daemon=True, name=f"mmviz-stop-{run_id}").start()
