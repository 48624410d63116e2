"""The run queue and workspace settings: what every store implements on top of runs (the rules, not the SQL).

A queued run waits in the ``queue`` table in ``position`` order. A scheduler *claims* runs with
:meth:`claim_queued`: in one write transaction it counts the runs that hold a slot, and takes as many runs off
the head of the queue as there are free slots, stamping each as claimed. Two schedulers (two dashboards, two
machines) therefore never start the same run twice and never exceed the limit together.

A run *holds a slot* while it is active: its process is alive (on this host; elsewhere: its heartbeat is
fresh), or it was claimed (taken off the queue, no process yet) less than :data:`LOST_AFTER_S` ago.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmviz.store.keys import pid_alive
from mmviz.store.schema import LOST_AFTER_S, effective_status

MAX_PARALLEL = "max_parallel"
SETTINGS = {MAX_PARALLEL: "How many runs of this workspace may run at once (at least 1)."}
BACKEND_NAMES = ("local", "ray")
CANCELLED = "Cancelled while queued."


def default_max_parallel() -> int:
    """One run per GPU when there are GPUs, otherwise half the CPU cores; at least one."""
    gpus = 0
    try:  # without importing torch (slow): CUDA_VISIBLE_DEVICES or the driver's device files
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
        else:
            gpus = len([n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()])
    except OSError:
        gpus = 0
    if gpus:
        return gpus
    return max(1, (os.cpu_count() or 1) // 2)


def check_setting(key: str, value: Any) -> Any:
    """Return the checked value of a workspace setting, or raise ``ValueError`` naming it and what is valid."""
    if key not in SETTINGS:
        raise ValueError(f"Unknown workspace setting {key!r}. Valid: {', '.join(sorted(SETTINGS))}.")
    if key == MAX_PARALLEL:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number is None or number < 1 or str(number) != str(value).strip():
            raise ValueError(
                f"The workspace setting 'max_parallel' must be a whole number >= 1. Got {value!r} instead."
            )
        return number
    return value


def holds_slot(run: Mapping[str, Any], now: float, hostname: str, queued_ids: set[str]) -> bool:
    """Whether ``run`` (a runs-table row) takes one of the workspace's parallel slots right now."""
    if run["status"] not in ("queued", "running") or run["run_id"] in queued_ids:
        return False
    if run["status"] == "queued" and run["pid"] is None:
        last = run["heartbeat"] if run["heartbeat"] is not None else run["created"]
        # Claimed by a scheduler and being started; a plain created run that nobody starts ages out.
        return last is not None and now - last <= LOST_AFTER_S
    if run["pid"] is not None and run["host"] == hostname:
        return pid_alive(run["pid"])  # here the process itself says it: a slow start is not a lost run
    return effective_status(dict(run), now, hostname) != "lost"
