"""Start, stop and fork trainer processes.

A run is its own OS process, ``python -m mmviz train --run-id ID --workspace DIR``, launched with an
argv list (never a shell). The settings are validated before the run row is created, so bad input starts
nothing and writes nothing; the checks that need the data (a method's fit with the model, modality names in
settings, the device) run in the trainer, which ends the run ``failed`` with the same one-sentence message
(:func:`wait_until_checked` lets a caller show it). A fork starts from an epoch's checkpoint or from the point
where its parent was stopped (:data:`STOP_POINT`). Preparing a run imports no torch, but for a fork
(it checks its parent's checkpoint with :mod:`mmviz.training.checkpoint`).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmviz import __version__
from mmviz.data.registry import dataset_modalities
from mmviz.errors import ConfigError, StoreError, did_you_mean
from mmviz.store import child_workspace, pid_alive
from mmviz.store.contract import CHECKPOINT, RunReader, RunStoreProtocol
from mmviz.store.queue import BACKEND_NAMES, MAX_PARALLEL

if TYPE_CHECKING:
    from mmviz.training.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
_CHILDREN: list[subprocess.Popen] = []
STOP_POINT = "stopped"  # a fork point: the checkpoint its parent wrote when it was stopped (checkpoints/stopped.pt)
FORK_POINT_EVENT = "fork_point"  # the child's event that says its fork starts from the stop point


def _checkpoint_file(run_dir: Path, fork_epoch: int | str) -> Path:
    """The parent's checkpoint file for a fork point (an epoch, or :data:`STOP_POINT`)."""
    if fork_epoch == STOP_POINT:
        return run_dir / "checkpoints" / "stopped.pt"
    return run_dir / "checkpoints" / f"epoch_{int(fork_epoch):04d}.pt"


def fork_checkpoint(store: RunStoreProtocol, run: dict[str, Any]) -> Path:
    """The checkpoint file the fork ``run`` starts from (what :func:`prepare_run` checked)."""
    events = store.load_events(run["run_id"])
    stop_point = bool((events["kind"] == FORK_POINT_EVENT).any()) if len(events) else False
    return _checkpoint_file(store.run_dir(run["parent_run_id"]), STOP_POINT if stop_point else run["fork_epoch"])


def parse_fork_epoch(text: str | int) -> int | str:
    """A fork point from the command line or a form: an epoch number or ``'stopped'``."""
    if isinstance(text, int) or text == STOP_POINT:
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"The fork epoch must be a checkpoint's epoch number or {STOP_POINT!r} (where the parent was stopped). "
            f"Got {text!r} instead."
        ) from None


_CHILDREN_LOCK = threading.Lock()


def prepare_run(
    store: RunStoreProtocol,
    cfg: RunConfig,
    *,
    name: str = "",
    parent_run_id: str | None = None,
    fork_epoch: int | str | None = None,
    tags: Iterable[str] = (),
    data: Any = None,
) -> str:
    """Validate ``cfg``'s settings (and the fork point) and create a queued run; returns its id.

    The checks that need the data run in the trainer (:func:`mmviz.training.build.check_run_config`);
    ``data`` is the already loaded dataset when the caller ran them before opening the store (the CLI).
    ``fork_epoch`` is a parent's checkpoint epoch or :data:`STOP_POINT`.
    """
    if parent_run_id is not None:
        check_rerunnable(store.get_run(parent_run_id), "fork")
    if data is None and cfg.dataset == "arrays":
        # a user's own file: every problem it has is one sentence before a run exists (issue 12), so it is read
        # here (numpy, from its headers first) rather than only in the trainer
        from mmviz.data.arrays import load_arrays

        data = load_arrays(cfg.data)
    modalities = data.modality_names if data is not None else dataset_modalities(cfg.dataset, cfg.data)
    stop_step = None
    if parent_run_id is not None:
        fork_epoch, stop_step = _check_fork(store, cfg, parent_run_id, fork_epoch)
    run_id = store.create_run(
        config=cfg.to_dict(),
        name=name or f"{cfg.dataset}-{cfg.method}",
        dataset=cfg.dataset,
        method=cfg.method,
        fusion=cfg.model.fusion,
        modalities=list(modalities),
        parent_run_id=parent_run_id,
        fork_epoch=fork_epoch,
        tags=list(tags),
        device=cfg.train.device,
        version=__version__,
    )
    if stop_step is not None:
        store.log_events(run_id, [(stop_step, float(fork_epoch), time.time(), FORK_POINT_EVENT, {"step": stop_step})])
    return run_id


def _check_fork(store: RunStoreProtocol, cfg: RunConfig, parent_run_id: str, fork_epoch: Any) -> tuple[int, int | None]:
    """Refuse a fork that cannot start; return its epoch and, for the stop point, the step it was stopped at."""
    from mmviz.training.checkpoint import TRAINING_KEYS, check_checkpoint

    parent = store.get_run(parent_run_id)
    if fork_epoch is None:
        raise ConfigError("A fork needs --fork-epoch K (the parent's checkpoint epoch to start from).")
    fork_epoch = parse_fork_epoch(fork_epoch)
    parent_dir = store.run_dir(parent_run_id)
    path = _checkpoint_file(parent_dir, fork_epoch)
    if not path.is_file():
        have = ", ".join(map(str, available_checkpoints(store, parent_run_id))) or "none"
        what = (
            "no stop checkpoint (it was not stopped)"
            if fork_epoch == STOP_POINT
            else f"no checkpoint for epoch {fork_epoch!r}"
        )
        raise ConfigError(f"Run {parent_run_id!r} has {what}. Available epochs: {have}.")
    state = check_checkpoint(path, TRAINING_KEYS)
    epoch, step = state["epoch"], state["step"]
    if type(epoch) is not int or type(step) is not int or epoch < 0 or step < 0:
        raise StoreError(
            f"The checkpoint {str(path)!r} is damaged (epoch {epoch!r}, step {step!r}); fork from another epoch."
        )
    if (parent_dir / "init.pt").is_file():
        check_checkpoint(parent_dir / "init.pt", ())
    if parent["dataset"] != cfg.dataset or parent["config"].get("data") != cfg.to_dict()["data"]:
        raise ConfigError(
            f"A fork must keep the parent's dataset settings ({parent['dataset']!r}); use restart for a new dataset."
        )
    if parent["config"].get("model") != cfg.to_dict()["model"]:
        raise ConfigError(
            "A fork must keep the parent's model settings (it resumes the parent's weights); "
            "use restart to change the model."
        )
    if cfg.train.epochs <= epoch:
        raise ConfigError(
            f"Nothing to train: the fork starts after epoch {epoch} and 'epochs' ({cfg.train.epochs}) is the total "
            f"counting the parent's; set epochs above {epoch} (e.g. --epochs {epoch + max(1, cfg.train.epochs)})."
        )
    return epoch, (step if fork_epoch == STOP_POINT else None)


def stop_checkpoint(store: RunStoreProtocol, run_id: str) -> tuple[int, int] | None:
    """``(epoch, step)`` of the checkpoint ``run_id`` wrote when it was stopped, or None; for fork pickers.

    Read from the store's record of that checkpoint (its last ``checkpoint_stop`` artifact), not from the file, so
    the dashboard's fork form does not import torch.
    """
    path = _checkpoint_file(store.run_dir(run_id), STOP_POINT)
    if not path.is_file():
        return None
    arts = store.load_artifacts(run_id, "checkpoint_stop")
    if len(arts) == 0:
        return None
    last = arts.iloc[-1]
    try:
        return int(last["epoch"]), int((last["meta"] or {})["step"])
    except (KeyError, TypeError, ValueError):
        return None


def check_rerunnable(run: Mapping[str, Any], action: str) -> None:
    """Refuse to ``action`` ('fork' or 'restart') a run that the user's own code trained (mmviz.api, Lightning)."""
    origin = run.get("origin") or "trainer"
    if origin != "trainer":
        how = "a Lightning callback" if origin == "lightning" else "mmviz.api"
        raise ConfigError(
            f"Run {run['run_id']!r} was trained by your own code through {how}, so mmviz cannot {action} it; "
            "re-run your script with the settings shown for the run instead."
        )


def available_checkpoints(store: RunReader, run_id: str) -> list[int]:
    """Epochs with a checkpoint of ``run_id``, ascending: the checkpoint artifacts the store recorded whose file
    is there (the stop point: :func:`stop_checkpoint`)."""
    folder = store.run_dir(run_id)
    arts = store.load_artifacts(run_id, CHECKPOINT)
    return sorted(
        {int(e) for e, p in zip(arts["epoch"], arts["path"], strict=True) if e == e and (folder / p).is_file()}
    )


def wait_until_checked(store: Any, run_id: str, timeout: float = 20.0, poll: float = 0.2, slot: float = 3.0) -> dict:
    """Wait while the run is ``queued`` and its trainer checks the settings against the data; return the run.

    A run that fails its checks is ``failed`` with the one-sentence message in ``error``. One still ``queued``
    after ``timeout`` seconds (a slow start), or with no trainer process after ``slot`` seconds (waiting in the
    queue for a free slot: its checks run when it starts), is returned as it is.
    """
    start = time.monotonic()
    run = store.get_run(run_id)
    while run["status"] == "queued" and time.monotonic() - start < timeout:
        if run.get("pid") is None and time.monotonic() - start > slot:
            break
        time.sleep(poll)
        run = store.get_run(run_id)
    return run


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment for a child mmviz process: the project on ``PYTHONPATH``, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def trainer_argv(store: RunStoreProtocol, run_id: str) -> tuple[list[str], dict[str, str]]:
    """The argv list of the trainer process for a prepared run, and what its environment needs on top
    (:func:`mmviz.store.child_workspace`: a workspace URL, which may carry a password, is not put on a command line)."""
    args, env = child_workspace(store.workspace)
    return [sys.executable, "-m", "mmviz", "train", "--run-id", run_id, *args], env


def spawn_run(store: RunStoreProtocol, run_id: str) -> subprocess.Popen:
    """Start the trainer process for a prepared run (own session, output to the run's ``train.log``)."""
    reap()
    argv, extra = trainer_argv(store, run_id)
    env = child_env(extra)
    log = open(store.run_dir(run_id) / "train.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            argv,
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
    with _CHILDREN_LOCK:
        _CHILDREN.append(proc)
    # A waiter per child collects its exit status the moment it ends: a long-lived parent (the dashboard) keeps no
    # <defunct> trainer around until its next launch.
    threading.Thread(target=_wait_and_forget, args=(proc,), daemon=True, name=f"mmviz-reap-{proc.pid}").start()
    return proc


def _wait_and_forget(proc: subprocess.Popen) -> None:
    proc.wait()
    with _CHILDREN_LOCK:
        if proc in _CHILDREN:
            _CHILDREN.remove(proc)


def submit(
    store: RunStoreProtocol,
    cfg: RunConfig,
    *,
    name: str = "",
    parent_run_id: str | None = None,
    fork_epoch: int | str | None = None,
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
    run_id = prepare_run(  # the device and the data are checked by the trainer (a failed run with one sentence)
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


def start_backend(store: RunStoreProtocol, run_id: str, backend: str = "local") -> None:
    """Start a created run on ``backend``: a trainer process here, or a Ray task."""
    if check_backend(backend) == "ray":
        from mmviz.ray_backend import start_ray_run

        start_ray_run(store, run_id)
    else:
        spawn_run(store, run_id)


def start_claimed(store: RunStoreProtocol, backends: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """Claim as many queued runs as there are free slots (atomically, see the store) and start them (only runs
    queued for ``backends`` when given); returns ``[(run_id, backend), ...]`` started."""
    started = []
    for run_id, backend in store.claim_queued(store.get_setting(MAX_PARALLEL), backends):
        try:
            start_backend(store, run_id, backend)
        except Exception as exc:  # noqa: BLE001 - a run that cannot start fails; the queue goes on
            store.set_status(run_id, "failed", error=f"Could not start on backend {backend!r}: {exc}")
        else:
            started.append((run_id, backend))
    return started


def start_analysis(store: RunStoreProtocol, run_id: str) -> subprocess.Popen:
    """Start an analysis process for a run whose trainer has ended without one (both killed, or the machine
    stopped): it analyses the epochs measured but not analysed, then ends (own session, output to ``train.log``).
    A second one while one is at work ends at once (:func:`mmviz.analysis.follower.hold_lock`)."""
    from mmviz.analysis.follower import follower_command

    reap()
    argv, extra = follower_command(store.workspace, run_id)
    with open(store.run_dir(run_id) / "train.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT), env=child_env(extra),
            start_new_session=True,
        )  # fmt: skip
    with _CHILDREN_LOCK:
        _CHILDREN.append(proc)
    return proc


def ensure_scheduler(store: RunStoreProtocol) -> bool:
    """Start the workspace's scheduler process unless one runs; returns whether one was started.

    The scheduler lock is taken here and inherited by the new process, so concurrent callers start one.
    """
    from mmviz.scheduler import take_lock

    fd = take_lock(store)
    if fd is None:
        return False
    args, extra = child_workspace(store.workspace)
    env = child_env(extra)
    argv = [sys.executable, "-m", "mmviz", "scheduler", *args, "--lock-fd", str(fd)]
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


def schedule(store: RunStoreProtocol) -> None:
    """Start what the queue allows now (local runs: a Ray run is submitted by the scheduler, whose Ray connection
    outlives a page view), and make sure a scheduler runs for the rest."""
    start_claimed(store, ("local",))
    ensure_scheduler(store)


def launch(
    store: RunStoreProtocol,
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
    from mmviz.training.config import build_run_config

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
    store: RunStoreProtocol,
    parent_run_id: str,
    epoch: int | str,
    *,
    method: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "",
    **start: Any,
) -> str:
    """Start a child run from the parent's checkpoint at ``epoch`` (or :data:`STOP_POINT`) with edited settings.

    ``start``: ``backend`` / ``queue`` as for :func:`submit`.
    """
    parent = store.get_run(parent_run_id)
    check_rerunnable(parent, "fork")
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
    store: RunStoreProtocol,
    run_id: str,
    *,
    dataset: str | None = None,
    method: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "",
    **start: Any,
) -> str:
    """Start a new run from scratch whose config is ``run_id``'s with edits; it records ``run_id`` as its origin
    (``restart_of``), so it belongs to ``run_id``'s family (``start`` as for :func:`fork`)."""
    old = store.get_run(run_id)
    check_rerunnable(old, "restart")
    new_id = launch(
        store,
        dataset,
        method,
        base=old["config"],
        overrides=overrides,
        name=name or f"{old['name']}-restart",
        **start,
    )
    store.update_run(new_id, restart_of=run_id)
    return new_id


def reap() -> None:
    """Collect exited child trainer processes so they do not linger as zombies."""
    with _CHILDREN_LOCK:
        for proc in list(_CHILDREN):
            if proc.poll() is not None:
                _CHILDREN.remove(proc)


def stop(store: RunStoreProtocol, run_id: str, *, grace: float = 20.0, wait: bool = False) -> None:
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
    status = run["effective_status"]  # a run whose process is gone is 'lost': nothing would ever see the request
    if status == "lost":
        raise StoreError(
            f"Run {run_id!r} is 'lost' (its process is gone, last sign of life too old); there is nothing to stop."
        )
    if status not in ("queued", "running"):
        raise StoreError(f"Run {run_id!r} is {status!r}, not running; only running runs can be stopped.")
    store.request_stop(run_id)
    if (run.get("origin") or "trainer") != "trainer":
        return  # the user's own process: it sees the request (mmviz.api's ``should_stop``); never signal it
    if run.get("backend") == "ray" or (run.get("host") and run["host"] != socket.gethostname()):
        return  # a Ray worker, or another machine: the request is all that reaches it (never a signal)
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
