"""Overhead of mmviz.api on a user's own training loop: the same loop with the API and default probes vs without.

A plain PyTorch loop (a ``DataLoader`` of dict batches, forward, cross-entropy, backward, optimiser step) on the
demo's data and model (``mfeat``, the default MultimodalNet), run alternately as is and with the API's calls
(``run.transform``, ``run.loss``, ``run.after_backward`` every step; ``run.end_epoch`` after each epoch; the default
probe set; a real run store in a temporary workspace), in one process, after one warm-up run of each. Per run it
measures the mean **training-step** time (each epoch's step loop divided by its steps; the epoch-end evaluation and
per-epoch diagnostics are reported apart, not budgeted, as for ``bench/overhead.py``). It prints the ratio of the
medians, the median of the paired ratios, and where the API's extra step time goes: the per-step probes' own hook
timers (each keeps itself within its ``max_overhead`` share of the steps; together 2.5%), of which their start-up
calls (each per-step probe's first due call, a warm-up, and the next, measured one run unbudgeted so that every
chart has a value at once), and the rest (logging, flushes to the store, the run's bookkeeping). The start-up
calls cost a fixed time per run, so runs default to the demo's 30 epochs as in ``bench/overhead.py``: in a run
of a few hundred steps they alone would be several percent of a small model's steps. ``--clock cpu`` uses this process's CPU time (steadier on a busy
machine); ``--threads 1`` keeps torch off the other process's core.
Budget (DESIGN.md §5): <= 1.05. Exit status 0 when it holds, 1 when it does not.

Usage: ``.venv/bin/python bench/own_loop_overhead.py [--reps 7] [--epochs 30] [--clock wall|cpu] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

import mmviz.api  # noqa: E402
from mmviz.data import create_dataset  # noqa: E402
from mmviz.training.build import build_model  # noqa: E402
from mmviz.training.config import ModelConfig  # noqa: E402

BUDGET = 1.05


class Split(Dataset):
    """One split of the in-memory demo data as dict samples (what a user's Dataset yields)."""

    def __init__(self, data, split: str) -> None:
        idx = torch.as_tensor(data.splits[split])
        self.x = {m: torch.as_tensor(data.x[m])[idx] for m in data.modality_names}
        self.y = torch.as_tensor(data.y)[idx]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{m: x[i] for m, x in self.x.items()}, "label": self.y[i]}


def run_once(data, watched: bool, epochs: int, workspace: str, clock) -> tuple[float, float, float, float]:
    """Train once; return the mean step time, the mean epoch-end time (seconds on ``clock``), and the per-step
    probes' hook time per step, in all and in their start-up calls (seconds, wall; 0 without the API)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(), data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = DataLoader(Split(data, "train"), batch_size=64, shuffle=True)
    val = DataLoader(Split(data, "val"), batch_size=512)
    run = mmviz.api.watch(model, train_loader=train, val_loader=val, epochs=epochs, optimizer=opt,
                          workspace=workspace, name="bench-own-loop") if watched else None  # fmt: skip
    step_time, steps, end_time = 0.0, 0, 0.0
    startup = {}
    if run is not None:  # time each per-step probe's first two runs (warm-up and first measured call)
        for probe in run.step_probes:
            timed = probe.on_after_backward

            def first_calls(*args, _probe=probe, _timed=timed, **kwargs):
                before = _probe.seconds
                result = _timed(*args, **kwargs)
                calls = startup.setdefault(_probe.name, [])
                calls.append(_probe.seconds - before)
                if len(calls) == 2:
                    del _probe.on_after_backward  # back to the class's hook
                return result

            probe.on_after_backward = first_calls
    for _ in range(epochs):
        start = clock()
        for batch in train:
            if run is not None:
                batch = run.transform(batch)
            out = model(batch)
            loss = (
                run.loss(out, batch)
                if run is not None
                else torch.nn.functional.cross_entropy(out.logits, batch["label"])
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if run is not None:
                run.after_backward(out, batch, loss)
            opt.step()
            steps += 1
        step_time += clock() - start
        start = clock()
        if run is not None:
            run.end_epoch()
        end_time += clock() - start
    hooks = start = 0.0
    if run is not None:
        run.close()
        hooks = sum(p.seconds for p in run.step_probes) / steps
        start = sum(sum(calls) for calls in startup.values()) / steps
    return step_time / steps, end_time / epochs, hooks, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="Alternating repetitions per arm (default 7).")
    parser.add_argument("--epochs", type=int, default=30, help="Epochs per run (default 30, the demo's).")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    data = create_dataset("mfeat")
    arms = {"with mmviz.api": True, "plain loop": False}
    times: dict[str, list[float]] = {name: [] for name in arms}
    ends: list[float] = []
    hooks: list[float] = []
    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mmviz-bench-") as ws:
        for watched in arms.values():  # warm-up: imports, caches, first-call costs
            run_once(data, watched, 2, ws, clock)
        for rep in range(args.reps):
            for name in list(arms) if rep % 2 == 0 else list(reversed(arms)):
                per_step, per_end, hook, start = run_once(data, arms[name], args.epochs, ws, clock)
                times[name].append(per_step)
                if arms[name]:
                    ends.append(per_end)
                    hooks.append(hook)
                    starts.append(start)
                print(f"rep {rep + 1} {name:15s} {1000 * per_step:7.3f} ms/step", flush=True)
    watched, plain = statistics.median(times["with mmviz.api"]), statistics.median(times["plain loop"])
    paired = statistics.median(a / b for a, b in zip(times["with mmviz.api"], times["plain loop"], strict=True))
    print(f"median ms/step: with mmviz.api {1000 * watched:.3f}, plain loop {1000 * plain:.3f}; paired {paired:.3f}")
    print(
        f"epoch end with the API (evaluation + per-epoch probes, not budgeted): {1000 * statistics.median(ends):.1f} ms"
    )
    hook, start = statistics.median(hooks), statistics.median(starts)
    print(
        f"extra per step with the API: {1000 * (watched - plain):.3f} ms = per-step probes' hooks {1000 * hook:.3f} ms "
        f"(of which start-up calls {1000 * start:.3f} ms) + the rest {1000 * (watched - plain - hook):.3f} ms "
        f"(logging, flushes, bookkeeping); hooks in wall time, medians over reps"
    )
    ratio = watched / plain
    print(f"own-loop training-step overhead ratio {ratio:.3f} ({args.clock} time; budget <= {BUDGET})")
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
