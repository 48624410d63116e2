"""Train every lesson run of the default lesson states ahead of time, so a class finds them all cached.

Before class: ``python -m mmviz.teach.warm --workspace DIR [--seeds 0 1 2]`` (about a minute on a laptop CPU).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from typing import Any

from mmviz.teach.controls import group_defaults
from mmviz.teach.lessons import LESSONS, specs_for
from mmviz.teach.runs import DONE, RunSpec, ensure_runs, spec_hash

TERMINAL = ("finished", "failed", "diverged", "stopped", "lost")


def default_specs(seeds: Iterable[int] = (0,)) -> list[RunSpec]:
    """The distinct runs behind every step of every lesson in its default state, for each seed."""
    specs: dict[str, RunSpec] = {}
    for seed in seeds:
        for lesson in LESSONS:
            for step in lesson.steps:
                for spec in specs_for(step, group_defaults(lesson.group), seed):
                    specs.setdefault(spec_hash(spec), spec)
    return list(specs.values())


def warm_lessons(store: Any, seeds: Iterable[int] = (0,), in_process: bool = False, timeout: float = 900.0) -> int:
    """Make sure every default lesson run exists and is finished; return how many runs were trained.

    Args:
        store: the run store of the workspace the teach page uses.
        seeds: the seeds to prepare.
        in_process: train here, one run after the other (no process start-up; tests), instead of as trainer
            processes started side by side.
        timeout: seconds to wait for trainer processes.
    """
    specs = default_specs(seeds)
    started: list[str] = []
    if in_process:
        from mmviz.training.runner import run_training

        for spec in specs:  # one at a time: roles repeat across lessons (e.g. 'alone_a')
            ensure_runs(store, [spec], start=lambda s, run_id: started.append(run_id))
        for run_id in started:
            run_training(store, run_id)
    else:
        from mmviz.launcher import spawn_run

        def start(s: Any, run_id: str) -> None:
            started.append(run_id)
            spawn_run(s, run_id)

        ids = [run_id for spec in specs for run_id in ensure_runs(store, [spec], start=start).values()]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(store.get_run(r)["effective_status"] in TERMINAL for r in ids):
                break
            time.sleep(0.5)
    bad = [r for r in started if store.get_run(r)["effective_status"] != DONE]
    if bad:
        from mmviz.errors import StoreError

        raise StoreError(f"Lesson runs did not finish: {', '.join(bad)}; see their train.log in the run folders.")
    return len(started)


def main(argv: list[str] | None = None) -> int:
    """Command line: train the default lesson runs of a workspace."""
    from mmviz.store import open_store

    parser = argparse.ArgumentParser(prog="python -m mmviz.teach.warm", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="Workspace folder (default: $MMVIZ_WORKSPACE).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Seeds to prepare (default: 0).")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with open_store(args.workspace) as store:
        n = warm_lessons(store, args.seeds)
    print(f"{n} lesson runs trained in {time.perf_counter() - t0:.0f} s; {len(default_specs(args.seeds))} cached.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
