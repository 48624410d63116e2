"""Reproduction tables, curves and premise checks: baseline, unimodal references and every balancing method.

``.venv/bin/python bench/reproduce.py`` regenerates ``docs/results.md`` and its figures ``docs/curves_<dataset>.png``
in one command. Sections (``--sections``, comma-separated; by default all):

- ``mfeat``, ``avdigits``, ``synthetic``: every method (quick recipe) over seeds; after training the **best-on-val**
  and the **last-epoch** weights are both evaluated on the test split: fused accuracy, per-modality linear-probe
  accuracy (logistic regression on frozen train features, scored on test features) and the imbalance index of the
  Shapley values on test accuracy. Seed 0 of each method runs with the ``unimodal_acc`` and ``imbalance`` probes
  on (they leave training bit-identical) to draw the curves over epochs of the weak modality's val probe accuracy
  and the imbalance index.
- ``recipes``: the paper recipes (``method.recipe=paper``) of the seven methods that have one, on mfeat.
- ``premise``: for AGM, CGGM and Re-learning, synthetic settings where the paper's premise holds (chosen by measuring),
  each against a baseline trained the same way, with the quantities that explain the outcome (AGM's factors,
  CGGM's applied gradient scales and classifier gains by thirds of training, Re-learning's purities and strengths).
- ``avfashion``: a CPU subset of AV-Fashion (CNN encoders; the full 70,000 pairs need a GPU);
  ``avfashion_relearn``: Re-learning on the same subset with a re-init period short enough for its 10 epochs.
- ``cotrain``: aggressive modality dropout's co-learning finding on the synthetic ``cotrain`` preset.

Each section's markdown and curve data are cached under ``.results/sections/`` (gitignored), so sections can run
in separate processes (``--sections mfeat`` ...) and the document is assembled from whatever is cached; the
document says which command and wall time produced each section.

    .venv/bin/python bench/reproduce.py                      # everything (by hand; writes docs/results.md)
    .venv/bin/python bench/reproduce.py --sections premise   # one section, then reassemble
    .venv/bin/python bench/reproduce.py --quick --out /tmp/r.md   # smoke mode used by the tests
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmviz.data.base import TensorSplit  # noqa: E402
from mmviz.measures import compute_imbalance, compute_linear_probe_accuracy, compute_shapley, eval_mode  # noqa: E402
from mmviz.probes import PROBES  # noqa: E402
from mmviz.probes.shapley import compute_subset_accuracies  # noqa: E402
from mmviz.store import RunStore  # noqa: E402
from mmviz.training.build import check_run_config  # noqa: E402
from mmviz.training.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402
from mmviz.training.config import build_run_config  # noqa: E402
from mmviz.training.evaluate import evaluate  # noqa: E402
from mmviz.training.loop import fit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".results" / "sections"


@dataclasses.dataclass(frozen=True)
class Table:
    """One dataset table: label, dataset, --set strings, epochs, the weak modality and the methods."""

    label: str
    dataset: str
    sets: tuple[str, ...]
    epochs: int
    weak: str
    methods: tuple[tuple[str, tuple[str, ...]], ...]
    seeds: int | None = None  # None: the command's --seeds
    note: str = ""
    references: bool = True  # train the unimodal references (the "Alone" line)


ALL_METHODS = (
    ("baseline", ()),
    ("ogm_ge", ()),
    ("pmr", ()),
    ("agm", ()),
    ("mla", ("model.fusion=shared_head",)),
    ("cggm", ()),
    ("relearn", ()),
    ("amd", ()),
    ("gblending", ()),
    ("aux_loss", ()),
    ("ume", ()),
)
TABLES = {
    "mfeat": Table("mfeat (pix + fou)", "mfeat", (), 30, "fou", ALL_METHODS),
    "avdigits": Table(
        "avdigits (noisy, MLP encoders)",
        "avdigits",
        ("data.preset=noisy", "model.encoder=mlp"),
        30,
        "audio",
        ALL_METHODS,
        note="MLP encoders on both modalities, as DATA.md §3.3 measured (the CNN encoders need ~10x the CPU time).",
    ),
    "synthetic": Table("synthetic (dominant)", "synthetic", (), 30, "b", ALL_METHODS),
    "recipes": Table(
        "mfeat (pix + fou), paper recipes",
        "mfeat",
        (),
        0,  # 0: the recipe's own epochs
        "fou",
        (("baseline", ()),)
        + tuple((m, ("method.recipe=paper",)) for m in ("ogm_ge", "pmr", "agm", "mla", "relearn", "cggm", "amd")),
        note="Each method with `method.recipe=paper` (optimiser, schedule, epochs, batch and windows of its official "
        "code, see `python -m mmviz methods`); the baseline row is the quick recipe (Adam 1e-3, 30 epochs).",
    ),
    "avfashion": Table(
        "AV-Fashion, CPU subset (4,000 pairs, CNN encoders, audio at -3 dB, 10 epochs)",
        "avfashion",
        ("data.n_samples=4000",),
        10,
        "audio",
        (("baseline", ()), ("ogm_ge", ()), ("pmr", ()), ("mla", ("model.fusion=shared_head",)))
        + (("cggm", ()), ("relearn", ()), ("amd", ()), ("aux_loss", ())),
        seeds=1,
        note="A CPU subset (no GPU was available to this session): 4,000 of the 70,000 Fashion-MNIST images, "
        "1 seed, 10 epochs; the full dataset (`data.n_samples=70000`) is the GPU setting.",
    ),
    "avfashion_relearn": Table(
        "AV-Fashion, CPU subset: Re-learning re-initialising within 10 epochs",
        "avfashion",
        ("data.n_samples=4000",),
        10,
        "audio",
        (("baseline", ()), ("relearn", ("method.reinit_every=3", "method.reinit_num=2"))),
        references=False,
        note="With the quick recipe (E_r = 10) Re-learning's first re-init comes after epoch 11, so its row in the "
        "table above equals the baseline's. Here E_r = 3, N_r = 2 (re-inits after epochs 4 and 7 of 10): the same "
        "CPU subset (4,000 pairs, CNN encoders, audio at -3 dB) with 3 seeds (the command's --seeds); the unimodal "
        "references are those above.",
    ),
}
CURVE_PROBES = ("unimodal_acc", "imbalance")


def probe_overrides(curves: bool) -> dict:
    """All probes off, except the two the curves need (every epoch) when ``curves``."""
    out = {p.name: {"enabled": False} for p in PROBES}
    if curves:
        out["unimodal_acc"] = {"enabled": True, "probe_every": 1}
        out["imbalance"] = {"enabled": True}
    return {"probes": out}


@dataclasses.dataclass
class Measures:
    """Test-set measures of one set of weights."""

    fused: float
    probe: dict[str, float]
    imbalance: float


@dataclasses.dataclass
class Outcome:
    """One trained run: best-on-val and last-epoch measures, timing, curves and the method's own logs."""

    best: Measures
    last: Measures
    best_epoch: int
    epoch_s: float
    curves: dict[str, list[list[float]]]
    logs: dict[str, list[list[float]]]


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


def measure(model, method, data, device) -> Measures:
    """Fused test accuracy, per-modality linear-probe test accuracy and the Shapley imbalance index."""
    train = TensorSplit(data, data.splits["train"], device)
    test = TensorSplit(data, data.splits["test"], device)
    mods = data.modality_names
    ftr, ytr = _features(model, train, mods)
    fte, yte = _features(model, test, mods)
    probe = {m: compute_linear_probe_accuracy(ftr[m], ytr, fte[m], yte, max_iter=200) for m in mods}
    shapes = {s.name: tuple(s.shape) for s in data.modalities}
    index, _, _ = compute_imbalance(compute_shapley(compute_subset_accuracies(model, fte, yte, shapes), mods))
    fused = evaluate(model, method.predict, test, 512, contextlib.nullcontext).acc
    return Measures(float(fused), probe, float(index))


def _series(df, key: str) -> list[list[float]]:
    rows = df[df.key == key]
    return [[float(e), float(v)] for e, v in zip(rows.epoch, rows.value, strict=True)]


def train_and_test(
    dataset: str,
    method: str,
    sets: list[str],
    epochs: int,
    seed: int,
    curves: bool = False,
    log_prefix: tuple[str, ...] = (),
) -> Outcome:
    """Train one run in-process and measure its best-on-val and last-epoch weights on the test split.

    Args:
        epochs: 0 keeps the config's (e.g. a recipe's) epochs.
        curves: run the curve probes (``val/acc_probe/<m>``, ``imbalance/index`` every epoch).
        log_prefix: keep the metrics whose key starts with one of these (per-step values averaged per epoch).
    """
    pre = build_run_config(dataset, method, sets, epochs=epochs or None, seed=seed)
    n_epochs = pre.train.epochs
    cfg = build_run_config(
        dataset,
        method,
        sets + [f"train.checkpoint_every={n_epochs}"],
        epochs=epochs or None,
        seed=seed,
        overrides=probe_overrides(curves),
    )
    data = check_run_config(cfg)
    with tempfile.TemporaryDirectory(prefix="mmviz-repro-") as tmp:
        store = RunStore(Path(tmp) / "ws")
        run_id = store.create_run(
            config=cfg.to_dict(),
            name="repro",
            dataset=cfg.dataset,
            method=cfg.method,
            fusion=cfg.model.fusion,
            modalities=list(data.modality_names),
        )
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        result = fit(cfg, store, run_id, run_dir)
        elapsed = time.perf_counter() - t0
        device = next(result.model.parameters()).device
        best = measure(result.model, result.method, data, device)
        last_ck = load_checkpoint(checkpoint_path(run_dir, n_epochs))
        result.model.load_state_dict(last_ck["model"])
        result.method.load_state_dict(last_ck["method"])
        last = measure(result.model, result.method, data, device)
        series: dict[str, list[list[float]]] = {}
        logs: dict[str, list[list[float]]] = {}
        if curves or log_prefix:
            df = store.load_metrics(run_id)
            if curves:
                for m in data.modality_names:
                    series[f"probe/{m}"] = _series(df, f"val/acc_probe/{m}")
                series["index"] = _series(df, "imbalance/index")
            if log_prefix:
                sub = df[df.key.str.startswith(tuple(log_prefix))]
                for key, rows in sub.groupby("key"):
                    per_epoch = rows.assign(e=np.ceil(rows.epoch.astype(float)).clip(lower=1)).groupby("e").value
                    logs[key] = [[float(e), float(v)] for e, v in per_epoch.mean().items()]
        store.close()
    return Outcome(best, last, int(result.best_epoch), elapsed / n_epochs, series, logs)


def _ms(values: list[float], pct: bool = True) -> str:
    scale = 100.0 if pct else 1.0
    if len(values) == 1:
        return f"{scale * values[0]:.1f}" if pct else f"{values[0]:.2f}"
    mean, sd = statistics.mean(values), statistics.stdev(values)
    return f"{scale * mean:.1f} ± {scale * sd:.1f}" if pct else f"{mean:.2f} ± {sd:.2f}"


def _row_label(method: str, extra: tuple[str, ...]) -> str:
    shown = [s for s in extra if not s.startswith("model.fusion=")]
    return method + (f" ({', '.join(shown)})" if shown else "")


def dataset_table(table: Table, seeds: list[int], quick: bool = False) -> tuple[list[str], dict]:
    """Markdown for one dataset (unimodal references, then every method with best-on-val and last-epoch columns)
    and the curve data of seed 0."""
    sets = list(table.sets) + (["data.n_train=300"] if quick and table.dataset == "synthetic" else [])
    epochs = 2 if quick else table.epochs
    mods = check_run_config(build_run_config(table.dataset, "baseline", sets)).modality_names
    alone = {m: [train_and_test(table.dataset, "unimodal", sets + [f"method.modality={m}"], epochs or 30, s)
                 .best.fused for s in seeds] for m in mods} if table.references else {}  # fmt: skip
    print(f"{table.label}: alone " + ", ".join(f"{m} {_ms(v)}" for m, v in alone.items()), flush=True)
    weak = table.weak
    other = [m for m in mods if m != weak]
    lines = [
        f"### {table.label}",
        "",
        *([table.note, ""] if table.note else []),
        *(
            [
                "Alone (unimodal reference, test accuracy): " + ", ".join(f"`{m}` {_ms(v)}%" for m, v in alone.items()),
                "",
            ]
            if alone
            else []
        ),
        "Columns: best-on-val weights / last-epoch weights. Weak modality: " + f"`{weak}`.",
        "",
        "| method | fused % best | fused % last | "
        + " | ".join(f"`{m}` probe % best | `{m}` probe % last" for m in [weak, *other])
        + " | index best | index last | best epoch | s / epoch |",
        "|---" * (7 + 2 * len(mods)) + "|",
    ]
    curves: dict[str, dict] = {}
    for method, extra in table.methods:
        outs = [
            train_and_test(table.dataset, method, sets + list(extra), epochs, s, curves=(s == seeds[0])) for s in seeds
        ]
        cells = []
        for m in [weak, *other]:
            cells += [_ms([o.best.probe[m] for o in outs]), _ms([o.last.probe[m] for o in outs])]
        lines.append(
            f"| {_row_label(method, extra)} | {_ms([o.best.fused for o in outs])} | {_ms([o.last.fused for o in outs])}"
            f" | {' | '.join(cells)} | {_ms([o.best.imbalance for o in outs], pct=False)} | "
            f"{_ms([o.last.imbalance for o in outs], pct=False)} | "
            f"{statistics.mean(o.best_epoch for o in outs):.0f} | {_ms([o.epoch_s for o in outs], pct=False)} |"
        )
        print(lines[-1], flush=True)
        curves[_row_label(method, extra)] = {
            "weak": outs[0].curves.get(f"probe/{weak}", []),
            "index": outs[0].curves.get("index", []),
        }
    info = {"label": table.label, "weak": weak, "alone": statistics.mean(alone[weak]) if alone else None}
    return lines + [""], {**info, "curves": curves}


# ---------------------------------------------------------------------------------------------------------------------
# Premise checks: Re-learning and CGGM


def _mean_curve(outs: list[Outcome], key: str) -> dict[int, float]:
    vals: dict[int, list[float]] = {}
    for o in outs:
        for e, v in o.logs.get(key, []):
            vals.setdefault(int(e), []).append(v)
    return {e: statistics.mean(v) for e, v in sorted(vals.items())}


RELEARN_LOGS = ("relearn/", "coef/relearn/")
SGD = ("optim.name=sgd", "optim.momentum=0.9", "optim.weight_decay=0.0001")  # the papers' SGD (lr set per case)


@dataclasses.dataclass(frozen=True)
class PremiseRun:
    """One row of a premise case: a method and the settings it adds to the case's (``--set`` strings)."""

    label: str
    method: str
    sets: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()  # metric-key prefixes kept for the diagnostics below the table


@dataclasses.dataclass(frozen=True)
class PremiseCase:
    """A setting (synthetic data) in which a paper's premise holds, the runs compared there and why they are."""

    title: str
    premise: str
    sets: tuple[str, ...]
    epochs: int
    weak: str
    runs: tuple[PremiseRun, ...]


# The settings were chosen by measuring (3 seeds each) which synthetic data and optimiser make each premise hold;
# the text of each case says what the premise is and how the setting makes it hold.
MEMORISE = (  # 'a' is linear and can memorise the training set through 128 noise columns; 'b' needs 4 sub-clusters
    "data.preset=custom", "data.n_train=2000", "data.strength_a=3", "data.strength_b=4.5", "data.sub_a=1",
    "data.sub_b=4", "data.noise_dims_a=128", "data.noise_dims_b=0",
)  # fmt: skip
RELEARN_PREMISE = (
    "Re-learning diagnoses each encoder by the gap between the k-means purity of its train and val features and pulls "
    "the encoder with the larger gap harder back towards its initial weights: it assumes the dominant modality is the "
    "one that memorises (high train purity, lower val purity) while the under-fitted one is low on both splits. In "
    "the `dominant` preset that fails (first table: the 4-sub-cluster `b` scores low on both splits, but with a gap "
    "close to `a`'s, so both are pulled back about as hard). In the second, `a` gets 128 "
    "pure-noise columns to memorise through and `b` none, so the purity gap singles `a` out. The runs are long "
    "enough to re-initialise: E_r = 5 and N_r = 6 (re-inits after epochs 6, 11, ..., 31 of 40; the paper's E_r = 20 "
    "of 90 epochs is for CREMA-D's 6,700 clips and would leave 40 epochs of this small data with one re-init)."
)
RELEARN_SHORT = (  # the baseline, and Re-learning with a re-init period for 40-epoch runs
    PremiseRun("baseline", "baseline"),
    PremiseRun("relearn, E_r = 5, N_r = 6", "relearn", ("method.reinit_every=5", "method.reinit_num=6"), RELEARN_LOGS),
)
PREMISE_CASES = (
    PremiseCase(
        "AGM under SGD (its paper's optimiser)",
        "AGM rescales each modality's gradient by κ from its Shapley-style response score against the running mean; "
        "the official code trains with SGD (momentum 0.9, weight decay 1e-4). Under Adam a per-modality factor that "
        "stays near a constant is divided out again by Adam's per-parameter normalisation, so the synthetic table "
        "above (Adam) shows nothing for AGM. Here both rows use SGD at lr 0.01 (the README command's 1e-4 under-trains "
        "small data: fused 84% on mfeat in the paper-recipe table); AGM runs its paper recipe otherwise (α 1.5, "
        "conditional clip, running mean over previous steps; StepLR at 70 does not act in 40 epochs).",
        ("data.preset=dominant", *SGD, "optim.lr=0.01"),
        40,
        "b",
        (
            PremiseRun("baseline", "baseline"),
            PremiseRun("agm (recipe=paper)", "agm", ("method.recipe=paper",), ("coef/agm/", "agm/clipped")),
        ),
    ),
    PremiseCase(
        "CGGM where the dominant modality's classifier gains faster (preset `cotrain`, SGD)",
        "CGGM multiplies encoder m's gradient by ρ·B^m with B^m = 1 − Δ^m / ΣΔ, Δ^m the change of modality m's "
        "auxiliary classifier accuracy: the modality whose classifier gains faster is slowed. In preset `cotrain` the "
        "easy, strong `b` is learnt first and its classifier gains faster in the first epochs while the 2-sub-cluster "
        "`a` lags, so the premise holds there (diagnostics below). Its paper trains with Adam, whose per-parameter "
        "normalisation divides a factor that stays near a constant out again (next case); with SGD "
        "the factor scales the step. ρ = 1.3 (official) makes the two factors sum to 1.3, a smaller step than the "
        "baseline's on average; ρ = 2 makes them sum to 2 = M, the baseline's average step, so that row isolates "
        "the redistribution between the modalities.",
        ("data.preset=cotrain", *SGD, "optim.lr=0.003"),
        30,
        "a",
        (
            PremiseRun("baseline", "baseline"),
            PremiseRun("cggm (ρ = 1.3)", "cggm", (), ("cggm/",)),
            PremiseRun("cggm (ρ = 2)", "cggm", ("method.rho=2",), ("cggm/",)),
        ),
    ),
    PremiseCase(
        "CGGM on the same data with Adam (its paper's optimiser)",
        "The quick recipe (Adam 1e-3, no weight decay) on preset `cotrain`, CGGM with its defaults.",
        ("data.preset=cotrain",),
        30,
        "a",
        (PremiseRun("baseline", "baseline"), PremiseRun("cggm (quick recipe)", "cggm", (), ("cggm/",))),
    ),
    PremiseCase(
        "Re-learning on the `dominant` preset (premise does not hold)",
        RELEARN_PREMISE,
        ("data.preset=dominant",),
        40,
        "b",
        RELEARN_SHORT,
    ),
    PremiseCase(
        "Re-learning where the dominant modality memorises",
        "",
        MEMORISE,
        40,
        "b",
        RELEARN_SHORT,
    ),
    PremiseCase(
        "Re-learning with its paper recipe on the same data",
        "The paper recipe (SGD lr 2e-3, momentum 0.9, weight decay 1e-4, 90 epochs, re-inits after epochs 21, 41, 61) "
        "against the baseline trained with the same optimiser and epochs.",
        (*MEMORISE, *SGD, "optim.lr=0.002"),
        90,
        "b",
        (
            PremiseRun("baseline", "baseline"),
            PremiseRun("relearn (recipe=paper)", "relearn", ("method.recipe=paper",), RELEARN_LOGS),
        ),
    ),
)  # fmt: skip
QUICK_CASES = (
    PremiseCase(
        "Quick check", "", ("data.n_train=300",), 3, "b",
        (
            PremiseRun("baseline", "baseline"),
            PremiseRun("relearn", "relearn", ("method.reinit_every=1",), RELEARN_LOGS),
            PremiseRun("cggm", "cggm", (), ("cggm/",)),
            PremiseRun("agm", "agm", (), ("coef/agm/", "agm/clipped")),
        ),
    ),
)  # fmt: skip


def _fmt_sets(sets: tuple[str, ...]) -> str:
    return " ".join(f"`{s}`" for s in sets) if sets else "–"


def _diagnostics(label: str, outs: list[Outcome]) -> str | None:
    """One line of the quantities that explain a run's outcome (re-init strengths, CGGM scales, AGM factors)."""
    mods = sorted(outs[0].best.probe)
    if any(k.startswith("coef/relearn/") for k in outs[0].logs):
        parts = []
        for m in mods:
            alpha = _mean_curve(outs, f"coef/relearn/{m}")
            pt = _mean_curve(outs, f"relearn/purity_train/{m}")
            pv = _mean_curve(outs, f"relearn/purity_val/{m}")
            parts.append(
                f"`{m}`: " + ", ".join(f"after epoch {e}: α {alpha[e]:.2f} ({pt[e]:.2f} / {pv[e]:.2f})" for e in alpha)
            )
        return (f"- **{label}** re-init strengths α = tanh(λ·|P_train − P_val|) (k-means purity train / val), mean "
                "over seeds: " + "; ".join(parts) + ".")  # fmt: skip
    if any(k.startswith("cggm/scale/") for k in outs[0].logs):
        parts = []
        for m in mods:
            scale = _mean_curve(outs, f"cggm/scale/{m}")
            gain = _mean_curve(outs, f"cggm/aux_delta/{m}")
            cut = _cut3(list(scale))
            parts.append(
                f"`{m}` scale ρB "
                + " / ".join(f"{statistics.mean(scale[e] for e in c):.2f}" for c in cut if c)
                + ", aux accuracy gain per step "
                + " / ".join(f"{1e3 * statistics.mean(gain[e] for e in c):+.2f}e-3" for c in cut if c)
            )
        return f"- **{label}** by thirds of training (epochs {_thirds_text(len(scale))}): " + "; ".join(parts) + "."
    if any(k.startswith("coef/agm/") for k in outs[0].logs):
        parts = []
        for m in mods:
            kappa = _mean_curve(outs, f"coef/agm/{m}")
            n = len(kappa)
            parts.append(
                f"`{m}` κ " + " / ".join(f"{statistics.mean(c):.2f}" for c in _cut3(list(kappa.values())) if c)
            )
        clipped = _mean_curve(outs, "agm/clipped")
        clip = statistics.mean(clipped.values()) if clipped else float("nan")
        return (f"- **{label}** gradient factors by thirds of training (epochs {_thirds_text(n)}): " + "; ".join(parts)
                + f"; the conditional clip fired on {100 * clip:.0f}% of steps.")  # fmt: skip
    return None


def _cut3(values: list) -> list[list]:
    n = len(values)
    return [values[: max(1, n // 3)], values[max(1, n // 3) : max(2, 2 * n // 3)], values[max(2, 2 * n // 3) :]]


def _thirds_text(n: int) -> str:
    idx = list(range(1, n + 1))
    return ", ".join(f"{c[0]}–{c[-1]}" for c in _cut3(idx) if c)


def premise_section(seeds: list[int], quick: bool = False) -> list[str]:
    """For AGM, CGGM and Re-learning, a setting where the paper's premise holds, each method against the baseline
    trained the same way, and the quantities that explain the outcome."""
    cases = QUICK_CASES if quick else PREMISE_CASES
    lines = [
        "### Premise checks: AGM, CGGM and Re-learning where their papers' premises hold (synthetic data)",
        "",
        f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}); dataset `synthetic`; each "
        "case lists the `--set` strings shared by its rows, each row those it adds (`python -m mmviz train "
        "--dataset synthetic --method M --epochs E --seed S --set ...` trains one). Weak probe = the weak modality's "
        "linear probe on test; the baseline of each case trains with the same data, optimiser and epochs.",
        "",
    ]
    for case in cases:
        outs: dict[str, list[Outcome]] = {}
        for run in case.runs:
            sets = list(case.sets) + list(run.sets)
            outs[run.label] = [
                train_and_test("synthetic", run.method, sets, case.epochs, s, log_prefix=run.logs) for s in seeds
            ]
            print(case.title, run.label, "done", flush=True)
        weak = case.weak
        other = [m for m in sorted(outs[case.runs[0].label][0].best.probe) if m != weak]
        lines += [
            f"#### {case.title}",
            "",
            *([case.premise, ""] if case.premise else []),
            f"Shared settings: {_fmt_sets(case.sets)}, {case.epochs} epochs. Weak modality `{weak}`.",
            "",
            "| run | added settings | fused % best | fused % last | weak probe % best | weak probe % last | "
            + " | ".join(f"`{m}` probe % best" for m in other)
            + " | index best | index last | best epoch |",
            "|---" * (9 + len(other)) + "|",
        ]
        for run in case.runs:
            o = outs[run.label]
            lines.append(
                f"| {run.label} | {_fmt_sets(run.sets)} | {_ms([x.best.fused for x in o])} | "
                f"{_ms([x.last.fused for x in o])} | {_ms([x.best.probe[weak] for x in o])} | "
                f"{_ms([x.last.probe[weak] for x in o])} | "
                + " | ".join(_ms([x.best.probe[m] for x in o]) for m in other)
                + f" | {_ms([x.best.imbalance for x in o], pct=False)} | {_ms([x.last.imbalance for x in o], pct=False)}"
                f" | {statistics.mean(x.best_epoch for x in o):.0f} |"
            )
        lines.append("")
        diag = [d for d in (_diagnostics(run.label, outs[run.label]) for run in case.runs) if d]
        lines += [*diag, ""] if diag else []
    return lines


def colearning_table(seeds: list[int], epochs: int, ps: list[float], quick_sets: list[str]) -> list[str]:
    """Target-only accuracy of multimodal training with aggressive modality dropout vs a target-only model."""
    sets = ["data.preset=cotrain"] + quick_sets
    alone = [train_and_test("synthetic", "unimodal", sets + ["method.modality=a"], epochs, s).best.fused for s in seeds]
    lines = [
        "### Co-learning (synthetic `cotrain`: target `a`, helper `b` only during training)",
        "",
        f"Target-only model (`unimodal`, modality a): {_ms(alone)}% test accuracy (best-on-val weights).",
        "",
        "| drop p of the helper | target-only % best | target-only % last | gap to the target-only model (points, best) |",
        "|---|---|---|---|",
    ]
    for p in ps:
        extra = ["method.target=a", f"method.p={p}", "method.evaluate_on=target"]
        outs = [train_and_test("synthetic", "amd", sets + extra, epochs, s) for s in seeds]
        accs = [o.best.fused for o in outs]
        gap = [100 * (a - b) for a, b in zip(accs, alone, strict=True)]
        gap_txt = f"{statistics.mean(gap):+.1f}" + (f" ± {statistics.stdev(gap):.1f}" if len(gap) > 1 else "")
        lines.append(f"| {p} | {_ms(accs)} | {_ms([o.last.fused for o in outs])} | {gap_txt} |")
        print(lines[-1], flush=True)
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------------------
# Figures and assembly


def draw_curves(name: str, data: dict, out_dir: Path) -> Path | None:
    """A PNG of the weak modality's val probe accuracy and the imbalance index over epochs, one line per method."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (pip install matplotlib)", file=sys.stderr)
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    cmap = plt.get_cmap("tab20")
    for i, (label, c) in enumerate(data["curves"].items()):
        style = {"color": cmap(i % 20), "lw": 2.2 if label == "baseline" else 1.2, "label": label}
        if c["weak"]:
            ax1.plot(*zip(*c["weak"], strict=True), **style)
        if c["index"]:
            ax2.plot(*zip(*c["index"], strict=True), **style)
    if data.get("alone") is not None:
        ax1.axhline(data["alone"], color="k", ls=":", lw=1, label=f"`{data['weak']}` alone (test)")
    ax1.set(title=f"{name}: `{data['weak']}` val probe accuracy (seed 0)", xlabel="epoch", ylabel="accuracy")
    ax2.set(title="imbalance index (val Shapley, seed 0)", xlabel="epoch", ylabel="index (0 = equal reliance)")
    ax2.legend(fontsize=7, ncol=2, loc="best")
    ax1.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"curves_{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


SECTION_ORDER = ("mfeat", "avdigits", "synthetic", "recipes", "premise", "avfashion", "avfashion_relearn", "cotrain")
SUMMARY = Path(__file__).resolve().parent / "results_summary.md"


def section_marks(name: str) -> tuple[str, str]:
    """The HTML comments that open and close section ``name`` in the document (invisible when rendered)."""
    return f"<!-- section {name} -->", f"<!-- /section {name} -->"


def sections_in(text: str) -> dict[str, str]:
    """The sections of a document written by :func:`assemble`: ``{name: markdown between its marks}``."""
    found = {}
    for name in SECTION_ORDER:
        start, end = section_marks(name)
        if start in text and end in text.split(start, 1)[1]:
            found[name] = text.split(start, 1)[1].split(end, 1)[0].strip("\n")
    return found


def cached_section(name: str, cache: Path, out: Path, figures: Path) -> str | None:
    """Section ``name`` from the cache (its markdown, figure and provenance line), or None when not cached."""
    md = cache / f"{name}.md"
    if not md.is_file():
        return None
    lines = [md.read_text().rstrip(), ""]
    meta = cache / f"{name}.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("curves"):
            png = draw_curves(name, info, figures)
            if png is not None:
                lines += [f"![{info['label']}: curves over epochs]({os.path.relpath(png, out.parent)})", ""]
        used = f"; this table uses its first {info['seeds']} seed(s)" if info.get("seeds") else ""
        lines += [f"_Section made by `{info['command']}`{used} in {info['minutes']:.1f} min ({info['load']})._"]
    return "\n".join(lines).rstrip()


def provenance(name: str, seeds: int, quick: bool) -> dict[str, Any]:
    """How section ``name`` was made, for its footer: the ``command``, and ``seeds`` when its table takes fewer
    seeds than the command's ``--seeds`` (AV-Fashion's CPU table takes 1)."""
    info: dict[str, Any] = {
        "command": "bench/reproduce.py" + (" --quick" if quick else f" --seeds {seeds}") + f" --sections {name}"
    }
    table = TABLES.get(name)
    if table is not None and table.seeds and not quick and table.seeds < seeds:
        info["seeds"] = table.seeds
    return info


def assemble(out: Path, cache: Path, figures: Path) -> None:
    """Write the document in :data:`SECTION_ORDER`: each section from the cache when this checkout ran it, else
    kept as it stands in the existing document (so ``--sections premise`` on a fresh checkout, whose cache is
    empty, replaces that section and keeps the others with their provenance lines)."""
    previous = sections_in(out.read_text()) if out.is_file() else {}
    lines = [
        "# Reproduction: does each method reduce the imbalance, and does fused accuracy improve?",
        "",
        "Made by `.venv/bin/python bench/reproduce.py` (each section's command and wall time below). All numbers are "
        "on the **test** split for both the **best-on-val** and the **last-epoch** weights, mean ± sd over seeds. "
        "Probe % = logistic regression on the frozen encoder's train features, scored on test features. Index = "
        "(max − min Shapley value) / (2 · max |Shapley value|) of the modalities' contributions to test accuracy "
        "(0 = equal reliance, 0.5 = the weakest modality adds nothing, above 0.5 = it lowers the accuracy). "
        "Settings: each method's defaults (`python -m mmviz methods`), the quick recipe (Adam 1e-3, batch 64, concat "
        "fusion except MLA's shared head) unless a section or row says otherwise. s / epoch is wall time on a 2-core "
        "CPU shared with other jobs: indicative only.",
        "",
    ]
    if SUMMARY.is_file():
        lines += [SUMMARY.read_text().rstrip(), ""]
    lines += ["## Tables", ""]
    for name in SECTION_ORDER:
        body = cached_section(name, cache, out, figures) or previous.get(name)
        if body:
            start, end = section_marks(name)
            lines += [start, body, end, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def _load() -> str:
    try:
        return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "load unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, small data: a smoke test.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument(
        "--sections", default=",".join(SECTION_ORDER), help=f"Comma-separated subset of {SECTION_ORDER}."
    )
    parser.add_argument("--assemble", action="store_true", help="Only rebuild the document from the cached sections.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if os.environ.get("MMVIZ_REPRO_ONE_THREAD") else 2)
    out = Path(args.out)
    cache = Path(tempfile.mkdtemp(prefix="mmviz-repro-cache-")) if args.quick else CACHE
    figures = out.parent
    cache.mkdir(parents=True, exist_ok=True)
    seeds = [0] if args.quick else list(range(args.seeds))
    sections = [] if args.assemble else [s.strip() for s in args.sections.split(",") if s.strip()]
    for name in sections:
        if name not in SECTION_ORDER:
            parser.error(f"--sections: unknown section {name!r}; valid: {', '.join(SECTION_ORDER)}")
    for name in sections:
        if args.quick and name in ("avdigits", "avfashion", "avfashion_relearn", "recipes"):
            continue
        t0 = time.perf_counter()
        info: dict = {}
        if name in TABLES:
            table = TABLES[name]
            if args.quick:
                table = dataclasses.replace(table, methods=table.methods[:3])
            lines, info = dataset_table(table, seeds[: table.seeds] if table.seeds else seeds, quick=args.quick)
        elif name == "premise":
            lines = premise_section(seeds, quick=args.quick)
        else:  # cotrain
            quick_sets = ["data.n_train=300"] if args.quick else []
            lines = colearning_table(
                seeds, 2 if args.quick else 30, [0.0, 0.9] if args.quick else [0.0, 0.4, 0.8, 0.9], quick_sets
            )
        info.update(provenance(name, args.seeds, args.quick))
        info.update({"minutes": (time.perf_counter() - t0) / 60, "load": _load()})
        (cache / f"{name}.md").write_text("\n".join(lines) + "\n")
        (cache / f"{name}.json").write_text(json.dumps(info))
        assemble(out, cache, figures)
        print(f"section {name} done in {info['minutes']:.1f} min", flush=True)
    assemble(out, cache, figures)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
