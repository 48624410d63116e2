"""Reproduction table: baseline, unimodal references and every balancing method on three datasets.

For (a) mfeat pix+fou, (b) avdigits with its noisy preset and (c) the synthetic dominant preset, each
method is trained for several seeds with the same trainer the dashboard uses; after training, the
best-on-val weights are evaluated on the test split:

- fused test accuracy (the method's own prediction);
- per-modality **linear-probe** accuracy: logistic regression fitted on frozen train features, scored
  on test features (the same probe as the ``unimodal_acc`` probe, on test instead of val);
- the imbalance index of the ``imbalance`` probe, from Shapley values on test accuracy;
- wall time per epoch (probes off, so it is the method's own cost).

A second table reproduces the direction of the aggressive-modality-dropout co-learning finding on the
synthetic ``cotrain`` preset: target modality ``a`` evaluated alone after multimodal training with
drop probability p, vs a model trained on ``a`` only.

    .venv/bin/python bench/reproduce.py                 # full table (by hand; writes docs/results.md)
    .venv/bin/python bench/reproduce.py --quick --out /tmp/r.md   # smoke mode used by the tests
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmviz.data.base import TensorSplit  # noqa: E402
from mmviz.measures import compute_imbalance, compute_linear_probe_accuracy, compute_shapley, eval_mode  # noqa: E402
from mmviz.probes import PROBES  # noqa: E402
from mmviz.probes.shapley import compute_subset_accuracies  # noqa: E402
from mmviz.training.build import check_run_config  # noqa: E402
from mmviz.training.config import build_run_config  # noqa: E402
from mmviz.training.loop import fit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {
    "mfeat (pix + fou)": ("mfeat", [], 30),
    # MLP encoders on both modalities, as in DATA.md §3.3's measurements (the CNN encoders need ~10x the CPU time)
    "avdigits (noisy, MLP encoders)": ("avdigits", ["data.preset=noisy", "model.encoder=mlp"], 30),
    "synthetic (dominant)": ("synthetic", [], 30),
}
METHODS = [
    ("baseline", []),
    ("ogm_ge", []),
    ("pmr", []),
    ("agm", []),
    ("mla", ["model.fusion=shared_head"]),
    ("cggm", []),
    ("relearn", []),
    ("amd", []),
    ("gblending", []),
    ("aux_loss", []),
    ("ume", []),
]
PROBES_OFF = {"probes": {p.name: {"enabled": False} for p in PROBES}}


@dataclasses.dataclass
class Outcome:
    """Test-set results of one trained run."""

    fused: float
    probe: dict[str, float]
    imbalance: float
    epoch_s: float


@torch.no_grad()
def _features(model, split: TensorSplit, modalities) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    feats: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    labels = []
    with eval_mode(model):
        for batch in split.batches(512):
            z = model.encode(batch)
            for m in modalities:
                feats[m].append(z[m].float().cpu())
            labels.append(batch["label"].cpu())
    return {m: torch.cat(v) for m, v in feats.items()}, torch.cat(labels)


def train_and_test(dataset: str, method: str, sets: list[str], epochs: int, seed: int, extra: list[str]) -> Outcome:
    """Train one run in-process (probes off) and measure it on the test split."""
    cfg = build_run_config(dataset, method, sets + extra, epochs=epochs, seed=seed, overrides=PROBES_OFF)
    t0 = time.perf_counter()
    result = fit(cfg)
    elapsed = time.perf_counter() - t0
    data = check_run_config(cfg)
    device = next(result.model.parameters()).device
    train = TensorSplit(data, data.splits["train"], device)
    test = TensorSplit(data, data.splits["test"], device)
    mods = data.modality_names
    ftr, ytr = _features(result.model, train, mods)
    fte, yte = _features(result.model, test, mods)
    probe = {m: compute_linear_probe_accuracy(ftr[m], ytr, fte[m], yte, max_iter=200) for m in mods}
    shapes = {s.name: tuple(s.shape) for s in data.modalities}
    phi = compute_shapley(compute_subset_accuracies(result.model, fte, yte, shapes), mods)
    index, _, _ = compute_imbalance(phi)
    return Outcome(result.test["test_acc"], probe, index, elapsed / epochs)


def _ms(values: list[float], pct: bool = True) -> str:
    scale = 100.0 if pct else 1.0
    if len(values) == 1:
        return f"{scale * values[0]:.1f}" if pct else f"{values[0]:.2f}"
    mean, sd = statistics.mean(values), statistics.stdev(values)
    return f"{scale * mean:.1f} ± {scale * sd:.1f}" if pct else f"{mean:.2f} ± {sd:.2f}"


def dataset_table(label: str, dataset: str, sets: list[str], epochs: int, seeds: list[int], methods) -> list[str]:
    """Markdown rows for one dataset (unimodal references first, then every method)."""
    mods = check_run_config(build_run_config(dataset, "baseline", sets)).modality_names
    alone: dict[str, list[float]] = {m: [] for m in mods}
    for m in mods:
        for seed in seeds:
            out = train_and_test(dataset, "unimodal", sets, epochs, seed, [f"method.modality={m}"])
            alone[m].append(out.fused)
    print(f"{label}: alone " + ", ".join(f"{m} {_ms(alone[m])}" for m in mods), flush=True)
    lines = [
        f"### {label}",
        "",
        "Alone (unimodal reference, test accuracy): " + ", ".join(f"`{m}` {_ms(alone[m])}%" for m in mods),
        "",
        "| method | fused test acc % | "
        + " | ".join(f"`{m}` probe acc % (alone {_ms(alone[m])})" for m in mods)
        + " | imbalance index | s / epoch |",
        "|---" * (4 + len(mods)) + "|",
    ]
    for method, extra in methods:
        outs = [train_and_test(dataset, method, sets, epochs, seed, extra) for seed in seeds]
        probe_cells = " | ".join(_ms([o.probe[m] for o in outs]) for m in mods)
        lines.append(
            f"| {method} | {_ms([o.fused for o in outs])} | {probe_cells} | "
            f"{_ms([o.imbalance for o in outs], pct=False)} | {_ms([o.epoch_s for o in outs], pct=False)} |"
        )
        print(lines[-1], flush=True)
    return lines + [""]


def colearning_table(seeds: list[int], epochs: int, ps: list[float], quick_sets: list[str]) -> list[str]:
    """Target-only accuracy of multimodal training with aggressive modality dropout vs a target-only model."""
    sets = ["data.preset=cotrain"] + quick_sets
    alone = [train_and_test("synthetic", "unimodal", sets, epochs, s, ["method.modality=a"]).fused for s in seeds]
    lines = [
        "### Co-learning (synthetic `cotrain`: target `a`, helper `b` only during training)",
        "",
        f"Target-only model (`unimodal`, modality a): {_ms(alone)}% test accuracy.",
        "",
        "| drop p of the helper | target-only test acc % | gap to the target-only model (points) |",
        "|---|---|---|",
    ]
    for p in ps:
        extra = ["method.target=a", f"method.p={p}", "method.evaluate_on=target"]
        accs = [train_and_test("synthetic", "amd", sets, epochs, s, extra).fused for s in seeds]
        gap = [100 * (a - b) for a, b in zip(accs, alone, strict=True)]
        gap_txt = f"{statistics.mean(gap):+.1f}" + (f" ± {statistics.stdev(gap):.1f}" if len(gap) > 1 else "")
        lines.append(f"| {p} | {_ms(accs)} | {gap_txt} |")
        print(lines[-1], flush=True)
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, small data: a smoke test.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument(
        "--sections",
        default="mfeat,avdigits,synthetic,cotrain",
        help="Comma-separated subset of mfeat, avdigits, synthetic, cotrain (to split the full table across processes).",
    )
    parser.add_argument("--avdigits-epochs", type=int, default=None, help="Epochs for avdigits (default 20).")
    parser.add_argument("--avdigits-samples", type=int, default=None, help="avdigits data.n_samples (default 5000).")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    seeds = [0] if args.quick else list(range(args.seeds))
    t0 = time.perf_counter()
    command = "bench/reproduce.py" + (" --quick" if args.quick else f" --seeds {args.seeds}")
    if args.sections != parser.get_default("sections"):
        command += f" --sections {args.sections}"
    if args.avdigits_epochs:
        command += f" --avdigits-epochs {args.avdigits_epochs}"
    if args.avdigits_samples:
        command += f" --avdigits-samples {args.avdigits_samples}"
    lines = [
        "# Reproduction: does each method reduce the imbalance, and does fused accuracy improve?",
        "",
        f"Made by `.venv/bin/python {command}` (probes off during training; all numbers on the test split",
        "with the best-on-val weights; mean ± sd over seeds). Probe accuracy = logistic regression on the",
        "frozen encoder's train features, scored on test. Imbalance index = (max − min Shapley value) / sum",
        "of |Shapley values| of the modalities' contributions to test accuracy (0 = equal, 1 = one modality",
        "carries everything).",
        "",
    ]
    sections = set(args.sections.split(","))
    for label, (dataset, sets, epochs) in DATASETS.items():
        if dataset not in sections:
            continue
        if dataset == "avdigits" and args.avdigits_epochs:
            epochs = args.avdigits_epochs
        if dataset == "avdigits" and args.avdigits_samples:
            sets = sets + [f"data.n_samples={args.avdigits_samples}"]
        if args.quick:
            if dataset == "avdigits":
                continue
            sets = sets + (["data.n_train=300"] if dataset == "synthetic" else [])
            epochs = 2
        methods = METHODS[:3] if args.quick else METHODS
        lines += dataset_table(label, dataset, sets, epochs, seeds, methods)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n(incomplete: the script is still running)\n")
    if args.quick:
        lines += colearning_table(seeds, 2, [0.0, 0.9], ["data.n_train=300"])
    elif "cotrain" in sections:
        lines += colearning_table(seeds, 30, [0.0, 0.4, 0.8, 0.9], [])
    minutes = (time.perf_counter() - t0) / 60
    lines.append(f"Wall time of the whole script: {minutes:.1f} min on the 2-core CPU machine.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
