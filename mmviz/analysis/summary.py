"""Plain-language summaries computed from stored signals: the imbalance banner and the run comparison table.

The banner compares like with like: each modality's accuracy inside the joint run (linear probe, else NCM, else
head split, at the latest evaluation) with the *same measure* of that modality on a ``unimodal`` reference run's
encoder (same dataset and data settings), read at the reference's best-on-val epoch. It adds each modality's
Shapley share (``imbalance/share/<m>``, else ``val/shapley/<m>`` over the sum of their absolute values, sign kept:
a modality that adds nothing reads 0, one that lowers the accuracy reads below 0), who holds the contribution and
since when, and the imbalance index (:func:`mmviz.measures.compute_imbalance`).

The two readings answer different questions and may name different modalities: accuracy of a modality's own
features is its *learning state* (what it has learned), the Shapley share is the fused model's *reliance* on it (how
much the fused prediction changes without it). When the modality that has learned less is the one the fused model
relies on most, the banner says so in one sentence instead of leaving two lines that seem to contradict each other.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

UNDER_TRAINED_GAP = 0.05  # accuracy points below the unimodal reference that count as under-trained
ACC_MEASURES = (("acc_probe", "linear-probe accuracy"), ("acc_ncm", "NCM accuracy"), ("acc", "head-split accuracy"))
NO_SHARE = 0.05  # a Shapley share within +-5% of zero: the modality adds nothing to val accuracy


@dataclasses.dataclass
class Banner:
    """The imbalance banner: sentences, a level (``'warning'`` when imbalance shows, else ``'info'``), and the
    modalities that have no unimodal reference run yet."""

    lines: list[str]
    level: str = "info"
    missing_references: list[str] = dataclasses.field(default_factory=list)
    # The numbers behind the lines, for pages that word them their own way.
    measure: str = ""  # the accuracy quantity compared ('acc_probe', 'acc_ncm' or 'acc'), '' when none
    joint: dict[str, float] = dataclasses.field(default_factory=dict)  # that measure in this run, latest
    alone: dict[str, float] = dataclasses.field(default_factory=dict)  # the same measure on each reference
    shares: dict[str, float] = dataclasses.field(default_factory=dict)  # latest Shapley share (sign kept)
    dominant: str | None = None  # the modality named by imbalance/dominant/<m> at the latest evaluation
    index: float | None = None  # the latest imbalance index


def _config(run: Mapping) -> dict:
    cfg = run.get("config")
    return cfg if isinstance(cfg, dict) else {}


def _modalities(run: Mapping) -> list[str]:
    mods = run.get("modalities")
    return list(mods) if isinstance(mods, (list, tuple)) else []


def _pct(x: float) -> str:
    return f"{round(100 * x) or 0:.0f}%"  # never "-0%"


def reference_modality(run: Mapping) -> str | None:
    """The modality a ``unimodal`` run trains (its first modality when unset), else ``None``."""
    if run.get("method") != "unimodal":
        return None
    chosen = (_config(run).get("method_params") or {}).get("modality") or ""
    mods = _modalities(run)
    return chosen or (mods[0] if mods else None)


def find_reference_runs(runs: pd.DataFrame, run: Mapping) -> dict[str, dict]:
    """Unimodal reference runs for ``run``'s modalities: same dataset and data settings; per modality the newest
    finished one, else the newest one that is still going (failed, diverged and lost runs are skipped)."""
    out: dict[str, dict] = {}
    if not runs.empty:  # only unimodal runs of the data set can be references: the rest is not looked at
        runs = runs[(runs["method"] == "unimodal") & (runs["dataset"] == run.get("dataset"))]
    if runs.empty:
        return out
    data = _config(run).get("data")
    rank = {"finished": 0, "stopped": 1, "running": 2, "queued": 3}
    candidates = []
    for ref in runs.to_dict("records"):
        m = reference_modality(ref)
        status = ref.get("effective_status") or ref.get("status")
        if m is None or m not in _modalities(run) or status not in rank or ref["run_id"] == run.get("run_id"):
            continue
        if ref.get("dataset") != run.get("dataset") or _config(ref).get("data") != data:
            continue
        candidates.append((rank[status], -(ref.get("created") or 0.0), m, ref))
    for _, _, m, ref in sorted(candidates, key=lambda c: c[:2]):
        out.setdefault(m, ref)
    return out


def latest_by_modality(frame: pd.DataFrame, split: str | None, quantity: str) -> dict[str, tuple[float, float]]:
    """``{modality: (value, epoch)}`` at the latest logged point of ``[split/]quantity/<m>`` (fused excluded)."""
    if frame.empty:
        return {}
    split_ok = frame["split"].isna() if split is None else frame["split"] == split
    rows = frame[
        split_ok & (frame["quantity"] == quantity) & frame["modality"].notna() & (frame["modality"] != "fused")
    ]
    out = {}
    for m, g in rows.groupby("modality"):
        last = g.sort_values(["step", "id"]).iloc[-1]
        out[str(m)] = (float(last["value"]), float(last["epoch"]))
    return out


def reference_keys(modality: str) -> list[str]:
    """The keys :func:`reference_accuracy` reads from a reference run that trains ``modality``."""
    return [f"val/{quantity}/{modality}" for quantity, _ in ACC_MEASURES]


def reference_accuracy(ref: Mapping, ref_frame: pd.DataFrame | None, modality: str, quantity: str) -> float | None:
    """``val/<quantity>/<modality>`` of a reference run at its best-on-val epoch (its latest value while that
    epoch has none, e.g. a running reference), or ``None`` when the reference never logged that measure."""
    if ref_frame is None or ref_frame.empty:
        return None
    rows = ref_frame[ref_frame["key"] == f"val/{quantity}/{modality}"]
    if rows.empty:
        return None
    best = ref.get("best_epoch")
    at_best = rows[rows["epoch"] == float(best)] if isinstance(best, (int, float)) and not pd.isna(best) else rows[:0]
    pick = at_best if not at_best.empty else rows
    return float(pick.sort_values(["step", "id"])["value"].iloc[-1])


def latest_dominant(frame: pd.DataFrame) -> str | None:
    """The modality named by ``imbalance/dominant/<m> = 1`` at the latest evaluation that logged it."""
    if frame.empty:
        return None
    rows = frame[(frame["quantity"] == "imbalance/dominant") & frame["modality"].notna()]
    if rows.empty:
        return None
    last = rows[rows["step"] == rows["step"].max()]
    named = last[last["value"] >= 0.5]
    return str(named.sort_values("id")["modality"].iloc[-1]) if not named.empty else None


def shapley_shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch Shapley share of each modality: ``imbalance/share/<m>`` when logged, else ``val/shapley/<m>`` over
    the sum of their absolute values (sign kept, as the index's shares). Returns a frame indexed by epoch with one
    column per modality."""
    if frame.empty:
        return pd.DataFrame()
    mod_ok = frame["modality"].notna() & (frame["modality"] != "fused")
    logged = frame[(frame["quantity"] == "imbalance/share") & mod_ok]
    if not logged.empty:
        return logged.pivot_table(index="epoch", columns="modality", values="value", aggfunc="last").sort_index()
    raw = frame[(frame["split"] == "val") & (frame["quantity"] == "shapley") & mod_ok]
    if raw.empty:
        return pd.DataFrame()
    table = raw.pivot_table(index="epoch", columns="modality", values="value", aggfunc="last").sort_index()
    total = table.abs().sum(axis=1).replace(0.0, np.nan)
    return table.div(total, axis=0)


def dominance_since(shares: pd.DataFrame, threshold: float) -> tuple[str, int, float] | None:
    """``(modality, since_epoch, mean_share)`` when the latest leader has held at least ``threshold`` of the share
    at every evaluation from ``since_epoch`` on; ``None`` when nobody leads by that much now."""
    if shares.empty:
        return None
    last = shares.iloc[-1].dropna()
    if last.empty:
        return None
    leader = str(last.idxmax())
    held = (shares[leader] >= threshold).to_numpy()
    if not held[-1]:
        return None
    start = len(held) - 1
    while start > 0 and held[start - 1]:
        start -= 1
    return leader, int(round(float(shares.index[start]))), float(shares[leader].iloc[start:].mean())


BANNER_KEY_PREFIXES = ("val/", "imbalance/")  # the banner reads only keys starting so (a live page passes just those)


def compute_imbalance_banner(
    run: Mapping,
    frame: pd.DataFrame,
    references: Mapping[str, Mapping],
    reference_frames: Mapping[str, pd.DataFrame] | None = None,
) -> Banner:
    """The imbalance banner of ``run`` from its tidy metrics ``frame``, its unimodal ``references``
    (``{modality: run dict}`` with ``best_epoch``, ``name``, ``run_id``, status) and their metrics
    (``{modality: tidy frame}`` holding at least :func:`reference_keys`)."""
    reference_frames = reference_frames or {}
    mods = _modalities(run)
    if not frame.empty:  # the per-evaluation keys the banner reads: select them once, not once per question
        keys = frame["key"].unique()
        frame = frame[frame["key"].isin([k for k in keys if k.startswith(BANNER_KEY_PREFIXES)])]
    if run.get("method") == "unimodal":
        return Banner([f"This is a unimodal reference run: only {reference_modality(run)!r} is trained."])
    lines: list[str] = []
    warn = False
    accs, measure, quantity = {}, "", ""
    for quantity, label in ACC_MEASURES:
        accs = latest_by_modality(frame, "val", quantity)
        if accs:
            measure = label
            break
    joint: dict[str, float] = {m: v for m, (v, _) in accs.items()}
    alone: dict[str, float] = {}
    missing = [m for m in mods if m not in references]
    compared = False
    weak_strong: tuple[str, str] | None = None  # (learned less, learned more) by the accuracy of own features
    for m in mods:
        ref = references.get(m)
        if ref is None or m not in accs:
            continue
        status = ref.get("effective_status") or ref.get("status")
        where = f"run {ref.get('name') or ref['run_id']}" + ("" if status == "finished" else f", {status}")
        value = reference_accuracy(ref, reference_frames.get(m), m, quantity)
        if value is None or math.isnan(value):
            lines.append(f"{m}: the reference ({where}) has no {measure} logged yet, so there is nothing to compare.")
            continue
        compared = True
        alone[m] = value
        acc = accs[m][0]
        if value - acc >= UNDER_TRAINED_GAP:
            warn = True
            lines.insert(
                0, f"{m} is under-trained: {measure} {_pct(acc)} vs {_pct(value)} when trained alone ({where})."
            )
        else:
            lines.append(f"{m} keeps up: {measure} {_pct(acc)} vs {_pct(value)} when trained alone ({where}).")
    if not compared and len(accs) >= 2:
        ranked = sorted(accs.items(), key=lambda kv: kv[1][0])
        (weak, (wv, epoch)), (strong, (sv, _)) = ranked[0], ranked[-1]
        if sv - wv >= UNDER_TRAINED_GAP:
            warn = True
            weak_strong = (weak, strong)
            lines.append(
                f"{weak} lags {strong} in what it has learned: {measure} {_pct(wv)} vs {_pct(sv)} at epoch {epoch:.0f}."
            )
        else:
            lines.append(
                f"The modalities are level: {measure} within {_pct(sv - wv)} of each other at epoch {epoch:.0f}."
            )
    shares_table = shapley_shares(frame) if len(mods) >= 2 else pd.DataFrame()
    shares = {str(m): float(v) for m, v in shares_table.iloc[-1].dropna().items()} if not shares_table.empty else {}
    for m, share in shares.items():
        if share < -NO_SHARE:
            warn = True
            lines.append(f"{m} lowers val accuracy: its Shapley share is {_pct(share)} (masking it helps).")
        elif share <= NO_SHARE:
            warn = True
            lines.append(f"{m} adds nothing to val accuracy: its Shapley share is {_pct(share)}.")
    if len(mods) >= 2:
        lead = dominance_since(shares_table, threshold=min(0.9, 1.0 / len(mods) + 0.1))
        if lead is not None:
            warn = True
            m, since, share = lead
            lines.append(
                f"The fused prediction relies most on {m}: it has taken {_pct(share)} of the Shapley contribution "
                f"since epoch {since}."
            )
            if weak_strong is not None and weak_strong[0] == m:
                lines.append(
                    f"Both hold at once: accuracy measures what each modality's own features have learned, Shapley "
                    f"how much the fused prediction leans on it. The fused model leans on {m} although {weak_strong[1]}"
                    f"'s features have learned more, so {weak_strong[1]} is under-used by the fusion."
                )
    index = frame[frame["key"] == "imbalance/index"] if not frame.empty else frame
    index_value = None
    if not index.empty:
        last = index.sort_values(["step", "id"]).iloc[-1]
        index_value = float(last["value"])
        lines.append(
            f"Imbalance index {last['value']:.2f} at epoch {last['epoch']:.0f} (0 = balanced, 0.5 = one "
            "modality carries all the accuracy, 1 = the weakest takes away as much as the strongest adds)."
        )
    if not lines:
        lines.append("Waiting for the first evaluation: no per-modality signals yet.")
    if missing:
        lines.append(
            f"No unimodal reference run for {', '.join(missing)} on this dataset with these data settings yet; "
            "launch them to see what each modality reaches alone."
        )
    return Banner(
        lines,
        "warning" if warn else "info",
        missing,
        measure=quantity if accs else "",
        joint=joint,
        alone=alone,
        shares=shares,
        dominant=latest_dominant(frame),
        index=index_value,
    )


# ---------------------------------------------------------------- runs and comparisons
def run_family(runs: pd.DataFrame, run_id: str) -> list[str]:
    """``run_id``'s root ancestor and all its descendants (forks of forks too), parents before children."""
    parent = dict(zip(runs["run_id"], runs["parent_run_id"], strict=True)) if not runs.empty else {}
    root, seen = run_id, {run_id}
    while isinstance(parent.get(root), str) and parent[root] in parent and parent[root] not in seen:
        root = parent[root]
        seen.add(root)
    family, queue = [], [root]
    while queue:
        current = queue.pop(0)
        family.append(current)
        queue.extend(sorted(r for r, p in parent.items() if p == current and r not in family))
    return family


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'optim.lr': 0.001, ...}`` from a nested run config; lists become JSON text so they compare and show."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


def differing_settings(runs: Sequence[Mapping]) -> list[str]:
    """Config fields whose values differ between ``runs`` (a field missing from some runs counts as differing)."""
    flats = [flatten_config(_config(r)) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]


def compute_compare_table(runs: Sequence[Mapping], frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: best epoch on val fused accuracy, fused and per-modality accuracies at that epoch (each
    measure that was logged), the last imbalance index, and the config fields that differ between the runs.

    ``attrs['percent_columns']`` lists the accuracy columns (fractions in [0, 1])."""
    differ = [k for k in differing_settings(runs) if k not in ("method",)]
    names = {r["run_id"]: r.get("name") or r["run_id"] for r in runs}
    rows = []
    percent = {"val acc fused"}
    cells: dict[str, tuple[str, str | None, bool]] = {  # column -> (quantity, modality, in %) for the display
        "val acc fused": ("acc", "fused", True),
        "imbalance index": ("imbalance/index", None, False),
    }
    for run in runs:
        rid = run["run_id"]
        mine = frame[frame["run_id"] == rid] if not frame.empty else frame
        row: dict[str, Any] = {
            "run": names[rid],
            "run_id": rid,
            "method": run.get("method"),
            "status": run.get("effective_status") or run.get("status"),
            "parent": names.get(run.get("parent_run_id"), run.get("parent_run_id")),
            "fork epoch": run.get("fork_epoch"),
        }
        fused = mine[mine["key"] == "val/acc/fused"] if not mine.empty else mine
        best = None
        if not fused.empty:
            top = fused.loc[fused["value"].idxmax()]
            best = float(top["epoch"])
            row["best epoch"] = int(round(best))
            row["val acc fused"] = float(top["value"])
        for m in _modalities(run):
            for quantity, label in reversed(ACC_MEASURES):
                col = f"{m} {label.replace(' accuracy', '').replace('-', ' ')}"
                percent.add(col)
                cells[col] = (quantity, m, True)
                hits = (
                    mine[(mine["key"] == f"val/{quantity}/{m}") & (mine["epoch"] == best)]
                    if best is not None
                    else mine.iloc[0:0]
                )
                if not hits.empty:
                    row[col] = float(hits["value"].iloc[-1])
        index = mine[mine["key"] == "imbalance/index"] if not mine.empty else mine
        row["imbalance index"] = float(index.sort_values(["step", "id"])["value"].iloc[-1]) if not index.empty else None
        flat = flatten_config(_config(run))
        for key in differ:
            row[key] = flat.get(key)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["percent_columns"] = [c for c in table.columns if c in percent]
    table.attrs["cells"] = cells
    return table
