"""Start, stop and fork trainer processes.

A run is its own OS process, ``python -m mmviz train --run-id ID --workspace DIR``, launched with an
argv list (never a shell). Everything is validated before the run row is created, so bad input starts
nothing and writes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mmviz import __version__
from mmviz.errors import ConfigError, StoreError, did_you_mean
from mmviz.store import pid_alive
from mmviz.store.queue import BACKEND_NAMES, MAX_PARALLEL
from mmviz.training.build import check_run_config, resolve_device
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


def submit(
    store: Any,
    cfg: RunConfig,
    *,
    name: str = "",
    parent_run_id: str | None = None,
    fork_epoch: int | None = None,
    tags: Iterable[str] = (),
    data: Any = None,
    backend: str | Callable[[Any, str], Any] | None = "local",
    queue: bool = False,
    schedule_now: bool = True,
) -> str:
    """The one way a run starts: validate once, create the run, hand it to a backend; returns the run id.

    Args:
        backend: ``'local'`` (a trainer process here), ``'ray'`` (a Ray task), a callable ``(store, run_id)``
            that starts it, or None to only create it (the caller trains it in this process).
        queue: put the run in the workspace's queue instead; it starts now when a slot is free, else when the
            scheduler (a process of its own, started here when none runs) finds one.
        schedule_now: with ``queue``, call :func:`schedule` (False: the caller does, once after queueing many).
    """
    if isinstance(backend, str) or backend is None:
        check_backend(backend or "local")
    if queue and not isinstance(backend, str):
        raise ConfigError("Only the 'local' and 'ray' backends can take runs from the queue.")
    resolve_device(cfg.train.device)
    run_id = prepare_run(
        store, cfg, name=name, parent_run_id=parent_run_id, fork_epoch=fork_epoch, tags=tags, data=data
    )
    if queue:
        store.enqueue(run_id, backend=backend)
        if schedule_now:
            schedule(store)
    elif callable(backend):
        backend(store, run_id)
    elif backend is not None:
        start_backend(store, run_id, backend)
    return run_id


def check_backend(name: str) -> str:
    """Return ``name`` when it is a known backend, else raise ``ConfigError`` naming the valid ones."""
    if name not in BACKEND_NAMES:
        raise ConfigError(
            f"Unknown backend {name!r}.{did_you_mean(name, BACKEND_NAMES)} Valid: {', '.join(BACKEND_NAMES)}."
        )
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("The 'ray' backend needs the ray package (pip install ray); use the 'local' backend.")
    return name


def start_backend(store: Any, run_id: str, backend: str = "local") -> None:
    """Start a created run on ``backend``: a trainer process here, or a Ray task."""
    if check_backend(backend) == "ray":
        from mmviz.ray_backend import start_ray_run

        start_ray_run(store, run_id)
    else:
        spawn_run(store, run_id)


def start_claimed(store: Any) -> list[str]:
    """Claim as many queued runs as there are free slots (atomically, see the store) and start them."""
    started = []
    for run_id, backend in store.claim_queued(store.get_setting(MAX_PARALLEL)):
        try:
            start_backend(store, run_id, backend)
        except Exception as exc:  # noqa: BLE001 - a run that cannot start fails; the queue goes on
            store.set_status(run_id, "failed", error=f"Could not start on backend {backend!r}: {exc}")
        else:
            started.append(run_id)
    return started


def ensure_scheduler(store: Any) -> bool:
    """Start the workspace's scheduler process unless one runs; returns whether one was started.

    The scheduler lock is taken here and inherited by the new process, so concurrent callers start one.
    """
    from mmviz.scheduler import take_lock

    fd = take_lock(store)
    if fd is None:
        return False
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    argv = [sys.executable, "-m", "mmviz", "scheduler", "--workspace", str(store.workspace), "--lock-fd", str(fd)]
    try:
        with open(Path(store.artifact_root) / "scheduler.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(ROOT),
                env=env,
                start_new_session=True,
                pass_fds=(fd,),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{proc.pid}\n".encode(), 0)  # the lock file names its holder (see scheduler_pid)
    finally:
        os.close(fd)  # the child holds the lock now (or nobody does, when it could not start)
    _CHILDREN.append(proc)
    return True


def schedule(store: Any) -> None:
    """Start what the queue allows now, and make sure a scheduler runs for the rest."""
    start_claimed(store)
    ensure_scheduler(store)


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
    backend: str = "local",
    queue: bool = False,
) -> str:
    """Build the config from names, ``--set`` strings and overrides, then :func:`submit` it; returns the run id."""
    cfg = build_run_config(dataset, method, sets, base=base, overrides=overrides)
    return submit(
        store,
        cfg,
        name=name,
        parent_run_id=parent_run_id,
        fork_epoch=fork_epoch,
        tags=tags,
        backend=backend,
        queue=queue,
    )


def fork(
    store: Any,
    parent_run_id: str,
    epoch: int,
    *,
    method: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "",
    **start: Any,
) -> str:
    """Start a child run from the parent's checkpoint at ``epoch`` with edited balancing settings.

    ``start``: ``backend`` / ``queue`` as for :func:`submit`.
    """
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
        **start,
    )


def restart(
    store: Any,
    run_id: str,
    *,
    dataset: str | None = None,
    method: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "",
    **start: Any,
) -> str:
    """Start a new run from scratch whose config is ``run_id``'s with edits (``start`` as for :func:`fork`)."""
    old = store.get_run(run_id)
    return launch(
        store,
        dataset,
        method,
        base=old["config"],
        overrides=overrides,
        name=name or f"{old['name']}-restart",
        **start,
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
    if run["status"] == "queued" and run_id in {q["run_id"] for q in store.list_queue()}:
        try:
            store.cancel_queued(run_id)  # never started: nothing to wait for
            return
        except StoreError:
            run = store.get_run(run_id)  # a scheduler claimed it just now: stop it like a started run
    if run["status"] not in ("queued", "running"):
        raise StoreError(f"Run {run_id!r} is {run['status']!r}, not running; only running runs can be stopped.")
    store.request_stop(run_id)
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
