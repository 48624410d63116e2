"""Overhead of the default diagnostics: per training step, and on the whole run (default demo run, probes vs none).

Runs the default demo training (``mfeat``, ``baseline``, the default config: 30 epochs, with a real run store,
checkpoints and snapshots in a temporary workspace, as ``python -m mmviz train`` does) alternately with the default
probe set and with every probe disabled, in one process, after one warm-up run of each. Per run it measures the
mean **training-step** time (the interval between consecutive steps inside an epoch: forward, backward, the per-step
probes, the method, the optimiser step and logging; DESIGN.md §5 budgets "overhead on a training step") and, for
the **whole run**: ``fit()`` from start to return, which includes the epoch-end measuring pass, the analysis
process (``train.analysis=process``, as ``python -m mmviz train`` runs it: purity, silhouette, prototypes, probes,
Shapley values and the index computed from the epoch records outside the training process) and the wait for it to
catch up at the end. It prints the per-step ratio of the medians, the median of the paired ratios, the whole-run
ratio, the probes' own hook timers as a share of the wall time, and per arm the CPU seconds of the trainer and of
the analysis process with the wall time no run could go below on this machine's cores. ``--clock cpu`` uses this process's CPU time instead (steadier when other processes share the cores);
``--set train.threads=1`` avoids two OpenMP threads fighting other processes for two cores.

The runs above share one warm process: the trainer's first-call costs (imports such as ``torch._dynamo`` at the first
optimiser, ~1.2 s) are paid once in the warm-up, but each run's analysis process is new (forked from the trainer:
it needs no imports of its own; until issue 15's last changes it imported scikit-learn, ~1.2 s of CPU per run), so
that figure is the steady state of a run in a long-lived process (a notebook watching several runs). Then, ``--fresh-reps`` times (default 5, 0 skips it), each arm runs once more as a user runs
it: in a new Python process, through the same call as ``python -m mmviz train`` (``run_training``: the data check,
heartbeats, ``fit`` with its analysis process, the wait for the analysis to catch up), timed from that call to its
return (the interpreter's own imports excluded, on both arms). There the analysis process's imports overlap the
trainer's set-up, so this ratio also shows what one-off costs the diagnostics add to a whole run.
Budgets (DESIGN.md §5): per step <= 1.05, whole run <= 1.10 (the warm in-process ratio). Exit status 0 when both
hold, 1 when one does not.

Usage: ``.venv/bin/python bench/overhead.py [--reps 7] [--fresh-reps 5] [--epochs N] [--clock wall|cpu] [--set key=value ...]``
(e.g. ``--set train.device=cuda --set model.encoder=resnet18 --set data.pix_as_image=true`` for a GPU figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmviz.launcher import prepare_run  # noqa: E402
from mmviz.probes import PROBES  # noqa: E402
from mmviz.probes.record import join_reapers  # noqa: E402
from mmviz.store import RunStore  # noqa: E402
from mmviz.training import loop  # noqa: E402
from mmviz.training.config import build_run_config  # noqa: E402

BUDGET = 1.05
WHOLE_BUDGET = 1.10


def run_once(store: RunStore, sets: list[str], epochs: int | None, clock) -> tuple:
    """Train one run; return its mean step time and its whole time per epoch on ``clock``, the number of epochs,
    the probes' share of the wall time (from the probes' own hook timers), the time per epoch until the last
    epoch ended (before waiting for the analysis process) and the CPU seconds of (trainer, analysis process)."""
    cfg = build_run_config("mfeat", "baseline", sets, epochs=epochs)
    run_id = prepare_run(store, cfg, name="bench-overhead")
    probes: list = []
    create = loop.create_probes

    def create_and_keep(configs: dict) -> list:
        probes.extend(create(configs))
        return probes

    steps: list[float] = []  # step durations inside epochs (the first step of an epoch follows epoch-end work)
    last: list = [None, None]  # (epoch, time) of the previous step

    trained = [0.0]

    def progress(info, values: dict) -> None:
        if "epoch_done" in values:
            trained[0] = clock()
            return
        now = clock()
        if last[0] == info.epoch:
            steps.append(now - last[1])
        last[0], last[1] = info.epoch, now

    loop.create_probes = create_and_keep
    try:
        start, wall, cpu = clock(), time.perf_counter(), cpu_seconds()
        loop.fit(cfg, store, run_id, store.run_dir(run_id), progress=progress, analysis_process=True)
        elapsed, wall = clock() - start, time.perf_counter() - wall
        join_reapers()  # the run does not wait for the analysis process's exit: its CPU counts once it is reaped
        used = [after - before for after, before in zip(cpu_seconds(), cpu, strict=True)]
    finally:
        loop.create_probes = create
    share = sum(p.seconds for p in probes) / wall
    epochs = cfg.train.epochs
    return statistics.fmean(steps), elapsed / epochs, epochs, share, (trained[0] - start) / epochs, used


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its ended, reaped children (the analysis
    process)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def fresh_child(sets: list[str], epochs: int | None) -> None:
    """In a new process: store one run and train it as ``python -m mmviz train`` does; print the seconds
    ``run_training`` took and the final status as JSON."""
    from mmviz.training.runner import run_training

    cfg = build_run_config("mfeat", "baseline", sets, epochs=epochs)
    with tempfile.TemporaryDirectory(prefix="mmviz-bench-") as ws, RunStore(ws) as store:
        run_id = prepare_run(store, cfg, name="bench-overhead-fresh")
        start = time.perf_counter()
        status = run_training(store, run_id)
        print(json.dumps({"seconds": time.perf_counter() - start, "status": status}))


def run_fresh(sets: list[str], epochs: int | None) -> float:
    """Seconds of one run trained in a new process (:func:`fresh_child`)."""
    argv = [sys.executable, __file__, "--fresh-child", json.dumps({"sets": sets, "epochs": epochs})]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=900).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["status"] != "finished":
        raise RuntimeError(f"a fresh-process run ended {result['status']}")
    return result["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="Alternating repetitions per arm (default 7).")
    parser.add_argument(
        "--fresh-reps",
        type=int,
        default=5,
        help="Alternating repetitions per arm in a new process each, as a user runs it (default 5; 0 skips).",
    )
    parser.add_argument("--fresh-child", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per run (default: the demo's 30).")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall (default) or this process's CPU time (steadier on a busy machine).",
    )
    args = parser.parse_args(argv)
    if args.fresh_child:
        child = json.loads(args.fresh_child)
        fresh_child(child["sets"], child["epochs"])
        return 0

    off = [f"probes.{entry.name}.enabled=false" for entry in PROBES]
    arms = {"default probes": list(args.sets), "no probes": list(args.sets) + off}
    times: dict[str, list[float]] = {name: [] for name in arms}
    epochs_t: dict[str, list[float]] = {name: [] for name in arms}
    trained_t: dict[str, list[float]] = {name: [] for name in arms}
    shares: list[float] = []
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    with tempfile.TemporaryDirectory(prefix="mmviz-bench-") as ws, RunStore(ws) as store:
        for sets in arms.values():  # warm-up: imports, caches, first-call costs
            run_once(store, sets, 2, clock)
        for rep in range(args.reps):
            order = list(arms) if rep % 2 == 0 else list(reversed(arms))
            for name in order:
                per_step, per_epoch, epochs, share, trained, used = run_once(store, arms[name], args.epochs, clock)
                cpu[name].append(used)
                times[name].append(per_step)
                epochs_t[name].append(per_epoch)
                trained_t[name].append(trained)
                if name == "default probes":
                    shares.append(share)
                print(
                    f"rep {rep + 1} {name:15s} {1000 * per_step:7.3f} ms/step {1000 * per_epoch:8.1f} ms/epoch "
                    f"({epochs} epochs)",
                    flush=True,
                )
    with_probes = statistics.median(times["default probes"])
    without = statistics.median(times["no probes"])
    paired = statistics.median(a / b for a, b in zip(times["default probes"], times["no probes"], strict=True))
    whole = statistics.median(epochs_t["default probes"]) / statistics.median(epochs_t["no probes"])
    whole_paired = statistics.median(
        a / b for a, b in zip(epochs_t["default probes"], epochs_t["no probes"], strict=True)
    )
    print(
        f"median ms/step: default probes {1000 * with_probes:.3f}, no probes {1000 * without:.3f}; "
        f"median of paired ratios {paired:.3f}"
    )
    trained = statistics.median(trained_t["default probes"]) / statistics.median(trained_t["no probes"])
    print(f"until the last epoch ended (before the analysis catches up): {trained:.3f}x")
    print(f"whole run: ratio of the medians {whole:.3f}, median of the paired ratios {whole_paired:.3f}")
    print(f"probe hooks' own timers: {100 * statistics.median(shares):.1f}% of the run's wall time (median)")
    cores = len(os.sched_getaffinity(0))
    for name in arms:
        own = statistics.median(c[0] for c in cpu[name])
        analysis = statistics.median(c[1] for c in cpu[name])
        whole_wall = statistics.median(epochs_t[name]) * epochs if args.clock == "wall" else float("nan")
        print(
            f"CPU seconds per run, {name}: trainer {own:.2f}, analysis process {analysis:.2f}; on {cores} cores no "
            f"run can take less than {(own + analysis) / cores:.2f} s of wall time (measured: {whole_wall:.2f} s)"
        )
    if args.fresh_reps > 0:
        fresh: dict[str, list[float]] = {name: [] for name in arms}
        for rep in range(args.fresh_reps):
            for name in list(arms) if rep % 2 == 0 else list(reversed(arms)):
                fresh[name].append(run_fresh(arms[name], args.epochs))
                print(f"fresh process {rep + 1} {name:15s} {fresh[name][-1]:6.2f} s", flush=True)
        on, off_s = (statistics.median(fresh[name]) for name in arms)
        paired_fresh = statistics.median(a / b for a, b in zip(*fresh.values(), strict=True))
        print(
            f"a new process per run, as python -m mmviz train runs it: median {on:.2f} s with the default diagnostics, "
            f"{off_s:.2f} s without: {on / off_s:.3f}x (median of paired ratios {paired_fresh:.3f})"
        )
    ratio = with_probes / without
    print(
        f"training-step overhead ratio {ratio:.3f} (budget <= {BUDGET}); whole run with default diagnostics every "
        f"epoch vs none {whole:.3f} (budget <= {WHOLE_BUDGET}); {args.clock} time"
    )
    return 0 if ratio <= BUDGET and whole <= WHOLE_BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
