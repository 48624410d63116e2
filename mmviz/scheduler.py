"""The workspace scheduler: a process of its own that starts queued runs while fewer than N run.

``python -m mmviz scheduler`` (started by :func:`mmviz.launcher.ensure_scheduler` whenever a run is queued or
a dashboard shows a non-empty queue) polls the store and starts what :func:`mmviz.launcher.start_claimed`
claims. It is not a thread of the Streamlit server, so page reloads and server restarts do not touch it, and
trainer processes it starts live in their own sessions. One scheduler per workspace and host holds
``scheduler.lock``; correctness does not depend on that lock: claims are atomic in the store, so two
schedulers (two dashboards, two machines) still start each run once and never more than N together.
It exits after ``idle_exit`` seconds with an empty queue and none of the Ray runs it submitted still active (a
local Ray started by this process ends with it); the next queued run starts a new scheduler.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

LOCK_NAME = "scheduler.lock"
POLL_S = 0.5
IDLE_EXIT_S = 60.0


def _lock_path(store: Any) -> Path:
    return Path(store.artifact_root) / LOCK_NAME


def take_lock(store: Any) -> int | None:
    """Open and lock this workspace's scheduler lock without waiting; returns the locked fd, or None when held.

    The lock belongs to the open file, so a child process that inherits the fd holds it after the parent closes
    its copy: :func:`mmviz.launcher.ensure_scheduler` takes it and hands it to the scheduler it starts, so two
    callers at the same moment cannot both start one.
    """
    fd = os.open(_lock_path(store), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def scheduler_pid(store: Any) -> int | None:
    """The process id of the scheduler holding this workspace's lock on this host, or None when none runs."""
    if not scheduler_running(store):
        return None
    try:
        return int(_lock_path(store).read_text().strip())
    except (OSError, ValueError):
        return None


def scheduler_running(store: Any) -> bool:
    """Whether a scheduler process holds this workspace's lock on this host."""
    fd = take_lock(store)
    if fd is not None:
        os.close(fd)
    return fd is None


def _still_active(store: Any, run_ids: set[str]) -> set[str]:
    """The runs of ``run_ids`` that are still queued or running (a deleted run is not)."""
    from mmviz.errors import RunNotFoundError

    out = set()
    for run_id in run_ids:
        try:
            if store.get_run(run_id)["effective_status"] in ("queued", "running"):
                out.add(run_id)
        except RunNotFoundError:
            pass
    return out


def run_scheduler(
    store: Any, *, poll: float = POLL_S, idle_exit: float = IDLE_EXIT_S, lock_fd: int | None = None
) -> int:
    """Start queued runs until the queue has been empty for ``idle_exit`` s (0: forever); returns runs started.

    ``lock_fd``: the scheduler lock, already held (handed over by the process that started this one). Without
    it the lock is taken here; when another scheduler of this workspace holds it, this returns at once (0).
    """
    from mmviz.launcher import reap, start_claimed

    started = 0
    on_ray: set[str] = set()  # runs this process submitted to Ray: a local Ray lives as long as this process
    fd = lock_fd if lock_fd is not None else take_lock(store)
    while fd is not None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds the lock, for people and tests
        try:
            idle_since = time.monotonic()
            while True:
                reap()
                try:
                    new = start_claimed(store)
                    on_ray |= {r for r, backend in new if backend == "ray"}
                    on_ray = _still_active(store, on_ray)
                    waiting = bool(store.list_queue()) or bool(on_ray)
                except Exception:  # noqa: BLE001 - a store hiccup must not end the scheduler; logged, retried
                    traceback.print_exc()
                    new, waiting = [], True
                for run_id, backend in new:
                    print(f"{time.strftime('%H:%M:%S')} started {run_id} ({backend})", flush=True)
                started += len(new)
                if new or waiting:
                    idle_since = time.monotonic()
                elif idle_exit and time.monotonic() - idle_since > idle_exit:
                    break
                time.sleep(poll)
        finally:
            os.close(fd)  # releases the lock
        # A run queued before this check is seen here; one queued after it finds no scheduler holding the lock,
        # so its submitter starts a new one: no queued run is ever left without a scheduler.
        if not store.list_queue():
            break
        print("queue refilled while exiting; going on", file=sys.stderr, flush=True)
        fd = take_lock(store)
    return started
