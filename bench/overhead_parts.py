"""Where the whole-run overhead of the default diagnostics goes: the trainer's measuring vs the analysis process.

Runs the default demo training (``mfeat``, ``baseline``, 30 epochs, ``train.threads=1``, a real run store with
checkpoints, as bench/overhead.py) in three arms, interleaved in one process (the order alternates between
repetitions, after one warm-up round):

- ``none``: every probe disabled;
- ``measuring``: the default probes, the records written, but no analysis process started (the trainer's own part:
  per-step probes, the epoch-end measuring pass, the record files, the store writes of the probes' rows; the
  analysis is then left pending, which a real run never does);
- ``analysis``: the default probes with the analysis process, as ``python -m mmviz train`` runs (bench/overhead.py's
  "default probes" arm).

It prints each arm's median whole-run time (``fit()`` from start to return), the medians of the paired ratios against
``none``, and the minor page faults of the trainer per run (a forked analysis process makes the trainer copy the pages
it writes first). ``analysis / measuring`` is what the analysis process adds: its fork, the wait for the last
epoch's analysis, and its work beside the trainer.

Usage: ``.venv/bin/python bench/overhead_parts.py [--reps 9] [--epochs N]``
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmviz.launcher import prepare_run  # noqa: E402
from mmviz.probes import PROBES  # noqa: E402
from mmviz.probes.record import AnalysisSupervisor, join_reapers  # noqa: E402
from mmviz.store import RunStore  # noqa: E402
from mmviz.training import loop  # noqa: E402
from mmviz.training.config import build_run_config  # noqa: E402


class NoAnalysis(AnalysisSupervisor):
    """Records are written and listed, but no analysis process is ever started (so none is waited for)."""

    def ensure_running(self) -> None:
        return None


def run_once(store: RunStore, sets: list[str], epochs: int | None, analysis: bool) -> tuple[float, int]:
    """Seconds of one ``fit()`` and the trainer's minor page faults in it."""
    cfg = build_run_config("mfeat", "baseline", ["train.threads=1", *sets], epochs=epochs)
    run_id = prepare_run(store, cfg, name="bench-overhead-parts")
    loop.AnalysisSupervisor = AnalysisSupervisor if analysis else NoAnalysis
    try:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        loop.fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=True)
        seconds = time.perf_counter() - start
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    finally:
        loop.AnalysisSupervisor = AnalysisSupervisor
    join_reapers()  # the exited analysis process is reaped before the next run
    return seconds, faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="Interleaved repetitions per arm (default 9).")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per run (default: the demo's 30).")
    args = parser.parse_args(argv)
    off = [f"probes.{entry.name}.enabled=false" for entry in PROBES]
    arms = {"none": (off, False), "measuring": ([], False), "analysis": ([], True)}
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    faults: dict[str, list[int]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory(prefix="mmviz-bench-") as ws, RunStore(ws) as store:
        for sets, analysis in arms.values():  # warm-up: imports, caches, first-call costs
            run_once(store, sets, 2, analysis)
        for rep in range(args.reps):
            for name in list(arms) if rep % 2 == 0 else list(reversed(arms)):
                sets, analysis = arms[name]
                took, flt = run_once(store, sets, args.epochs, analysis)
                seconds[name].append(took)
                faults[name].append(flt)
                print(f"rep {rep + 1} {name:9s} {took:6.3f} s  {flt:6d} page faults", flush=True)
    base = seconds["none"]
    for name in arms:
        paired = statistics.median(a / b for a, b in zip(seconds[name], base, strict=True))
        print(
            f"{name:9s} median {statistics.median(seconds[name]):.3f} s (spread {min(seconds[name]):.3f}-"
            f"{max(seconds[name]):.3f}), paired ratio to none {paired:.3f}, {statistics.median(faults[name]):.0f} faults"
        )
    added = statistics.median(a / b for a, b in zip(seconds["analysis"], seconds["measuring"], strict=True))
    print(f"the analysis process adds (paired analysis / measuring): {added:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
