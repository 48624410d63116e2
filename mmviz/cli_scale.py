"""The command line's ``sweep``, ``queue`` and ``scheduler`` commands, and the start options ``train`` shares.

``python -m mmviz sweep --dataset synthetic --method baseline,ogm_ge,agm --set optim.lr=0.01,0.05 --seeds 0,1
--max-parallel 2 --wait`` queues 12 trials and waits for them (see :mod:`mmviz.sweep` for the value syntax).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from mmviz.errors import ConfigError
from mmviz.store.queue import BACKEND_NAMES, MAX_PARALLEL, check_setting

SCALE_COMMANDS = ("sweep", "queue", "scheduler")


def add_start_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--queue``: where a run goes once it is created."""
    p.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="local",
        help="Where runs train: 'local' processes (default) or 'ray' tasks (on the cluster at MMVIZ_RAY_ADDRESS, "
        "else on a local Ray in the process that submits them, so train --detach needs the cluster).",
    )
    p.add_argument(
        "--queue", action="store_true", help="Queue the run: it starts when fewer than the workspace's N run."
    )


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def add_scale_commands(sub: Any, add_workspace: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``sweep``, ``queue`` and ``scheduler`` on the CLI's subparsers."""
    w = sub.add_parser("sweep", help="Queue a grid or random sweep over methods, --set values and seeds.")
    w.add_argument("--dataset", help="Dataset name (default mfeat, or the --from run's).")
    w.add_argument("--method", default="", help="Methods, comma-separated (default baseline, or the --from run's).")
    w.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help="A list (optim.lr=0.01,0.1; list-valued fields: data.views=pix,fou;pix,kar) or a range "
        "(lo..hi, with :log and :N points for a grid). One value fixes the setting for all trials.",
    )
    w.add_argument("--seeds", type=_int_list, default=(0,), help="Seeds, comma-separated (default 0).")
    w.add_argument("--random", type=int, default=None, metavar="N", help="Draw N random configurations (not a grid).")
    w.add_argument("--epochs", type=int)
    w.add_argument("--from", dest="base_run", metavar="RUN_ID", help="Start every trial from this run's settings.")
    w.add_argument("--max-parallel", type=int, metavar="N", help="Set the workspace's number of runs at once.")
    w.add_argument(
        "--name",
        default="",
        help="A name for the sweep: its trials are NAME-001, NAME-002, ... (unnamed: sweep-XXXX-001, ..., XXXX from "
        "the sweep id).",
    )
    w.add_argument("--wait", action="store_true", help="Wait until every trial has ended; exit 1 if one failed.")
    w.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="local",
        help="Where trials train: 'local' processes (default) or 'ray' tasks (on the cluster at MMVIZ_RAY_ADDRESS, "
        "else on a local Ray).",
    )
    add_workspace(w)

    q = sub.add_parser("queue", help="Show the run queue; set N, cancel or move a queued run.")
    q.add_argument("--max-parallel", type=int, metavar="N", help="Set how many runs of this workspace run at once.")
    q.add_argument("--cancel", metavar="RUN_ID", help="Take a queued run off the queue.")
    q.add_argument("--move", nargs=2, metavar=("RUN_ID", "POSITION"), help="Move a queued run to a 1-based position.")
    q.add_argument("--json", action="store_true")
    add_workspace(q)

    s = sub.add_parser("scheduler", help="Start queued runs while fewer than N run (started automatically).")
    s.add_argument(
        "--idle-exit", type=float, default=60.0, help="Exit after this many seconds of empty queue (0: never)."
    )
    s.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # internal: the lock its starter took
    add_workspace(s)


def wait_for_run(store: Any, run_id: str, poll: float = 1.0) -> str:
    """Block until the run ends; return its status. A run that stays 'lost' for another :data:`LOST_AFTER_S`
    counts as ended ('lost'): a trainer that is slow to start on a busy machine can look lost for a moment."""
    from mmviz.store import LOST_AFTER_S, TERMINAL

    lost_since = None
    while True:
        status = store.get_run(run_id)["effective_status"]
        if status in TERMINAL:
            return status
        lost_since = (lost_since or time.monotonic()) if status == "lost" else None
        if lost_since is not None and time.monotonic() - lost_since > LOST_AFTER_S:
            return status
        time.sleep(poll)


def _checked_max_parallel(value: int | None) -> int | None:
    if value is None:
        return None
    try:
        return check_setting(MAX_PARALLEL, value)
    except ValueError as exc:
        raise ConfigError(f"--max-parallel must be a whole number >= 1. Got {value!r} instead.") from exc


def _set_max_parallel(store: Any, value: int | None) -> None:
    value = _checked_max_parallel(value)
    if value is not None:
        store.set_setting(MAX_PARALLEL, value)


def cmd_sweep(args: Any, store: Any) -> int:
    from mmviz.sweep import SweepSpec, parse_sets, start_sweep

    base = store.get_run(args.base_run)["config"] if args.base_run else None
    methods = tuple(m.strip() for m in args.method.split(",") if m.strip()) or (
        (base or {}).get("method") or "baseline",
    )
    dataset = args.dataset or (base or {}).get("dataset")
    params, fixed = parse_sets(args.sets, dataset, methods)
    spec = SweepSpec(
        methods=methods,
        params=params,
        seeds=args.seeds,
        mode="grid" if args.random is None else "random",
        samples=args.random or 0,
        dataset=dataset,
        fixed=fixed,
        epochs=args.epochs,
        base=base,
    )
    sweep_id, run_ids = start_sweep(
        store, spec, name=args.name, backend=args.backend, max_parallel=_checked_max_parallel(args.max_parallel)
    )
    print(sweep_id, flush=True)
    for run_id in run_ids:
        print(run_id, flush=True)
    if not args.wait:
        return 0
    statuses = [wait_for_run(store, r) for r in run_ids]
    bad = [f"{r} {s}" for r, s in zip(run_ids, statuses, strict=True) if s != "finished"]
    if bad:
        print(f"{len(bad)} of {len(run_ids)} trials did not finish: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def cmd_queue(args: Any, store: Any) -> int:
    _set_max_parallel(store, args.max_parallel)
    if args.cancel:
        store.cancel_queued(args.cancel)
    if args.move:
        run_id, position = args.move
        try:
            store.move_queued(run_id, int(position))
        except ValueError:
            raise ConfigError(f"--move needs a whole-number position. Got {position!r} instead.") from None
    queue = store.list_queue()
    limit = store.get_setting(MAX_PARALLEL)
    if args.json:
        print(json.dumps({"max_parallel": limit, "queue": queue}))
    else:
        print(f"At most {limit} run(s) at once; {len(queue)} queued.")
        for item in queue:
            print(f"{item['position']:>4}  {item['run_id']}  ({item['backend']})")
    return 0


def cmd_scheduler(args: Any, store: Any) -> int:
    from mmviz.scheduler import run_scheduler

    started = run_scheduler(store, idle_exit=args.idle_exit, lock_fd=args.lock_fd)
    print(f"scheduler exits; started {started} run(s)", flush=True)
    return 0


def run_scale_command(args: Any, store: Any) -> int:
    """Dispatch one of :data:`SCALE_COMMANDS`."""
    return {"sweep": cmd_sweep, "queue": cmd_queue, "scheduler": cmd_scheduler}[args.command](args, store)
