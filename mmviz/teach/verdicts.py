"""Which answer to each lesson question was right, decided from the measured numbers, with a sentence saying why.

A verdict never assumes the textbook outcome: each function compares numbers from the step's runs and picks the
option they support, so a preset or a seed where the effect does not show gets an honest answer. Accuracies
within ``MARGIN`` of each other count as "about the same": the validation split has ~320 samples, so one run's
accuracy is uncertain by a few points.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from mmviz.teach.results import RunResult, alone_accuracy, pct, points

MARGIN = 0.03
EARLY = 0.3  # the first 30% of the steps count as "the first epochs"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The option the runs support (index into the question's options), why, and the numbers behind it."""

    answer: int
    text: str
    numbers: dict[str, float]


Results = Mapping[str, RunResult]


def _compare(x: float, ref: float, margin: float = MARGIN) -> int:
    """-1 when ``x`` is below ``ref`` by more than ``margin``, +1 above, 0 within."""
    if not (math.isfinite(x) and math.isfinite(ref)):
        return 0
    return -1 if x < ref - margin else (1 if x > ref + margin else 0)


def dominant_modality(r: Results) -> Verdict:
    """Lesson 1.1: which modality the joint model is accurate with on its own (head split, last epoch)."""
    j = r["joint"]
    ha, hb, fused = j.final("val/acc/a"), j.final("val/acc/b"), j.final("val/acc/fused")
    answer = 2 if abs(ha - hb) <= 0.05 else (0 if ha > hb else 1)
    text = (
        f"The joint model reaches {pct(fused)} on the validation set. On its own inside it, a is right on "
        f"{pct(ha)} of the samples and b on {pct(hb)} (head split, last epoch)."
    )
    return Verdict(answer, text, {"fused": fused, "head_a": ha, "head_b": hb})


def joint_vs_alone(r: Results) -> Verdict:
    """Lesson 1.2: b inside the joint model (linear probe decides; head split reported) vs b trained alone."""
    j = r["joint"]
    nums = {"fused": j.final("val/acc/fused")}
    for m in ("a", "b"):
        nums[f"alone_{m}"] = alone_accuracy(r[f"alone_{m}"])
        nums[f"head_{m}"] = j.final(f"val/acc/{m}")
        nums[f"probe_{m}"] = j.final(f"val/acc_probe/{m}")
    cmp = _compare(nums["probe_b"], nums["alone_b"])
    answer = {-1: 0, 0: 1, 1: 2}[cmp]
    how = {-1: "falls short of", 0: "is about level with", 1: "beats"}[cmp]
    text = (
        f"b alone reaches {pct(nums['alone_b'])}. Inside the joint model, b's linear probe reaches "
        f"{pct(nums['probe_b'])} ({points(nums['probe_b'] - nums['alone_b'])}) and its head split "
        f"{pct(nums['head_b'])} ({points(nums['head_b'] - nums['alone_b'])}): b inside the joint model {how} b "
        f"alone. For comparison, a alone reaches {pct(nums['alone_a'])}; inside the joint model a's probe "
        f"{pct(nums['probe_a'])} and head split {pct(nums['head_a'])}. The joint model's fused accuracy: "
        f"{pct(nums['fused'])}."
    )
    return Verdict(answer, text, nums)


def early_gradients(r: Results) -> Verdict:
    """Lesson 2.1: whose encoder gradient is larger over the first 30% of the steps (ratio beyond 1.1 decides)."""
    j = r["joint"]
    ga, gb = j.window_mean("grad_norm_pre/a", 0, EARLY), j.window_mean("grad_norm_pre/b", 0, EARLY)
    la, lb = j.window_mean("grad_norm_pre/a", 0.8, 1), j.window_mean("grad_norm_pre/b", 0.8, 1)
    ratio = ga / gb if gb > 0 else math.inf
    answer = 0 if ratio > 1.1 else (1 if ratio < 1 / 1.1 else 2)
    text = (
        f"Over the first {int(EARLY * 100)}% of the steps, a's encoder got a gradient of norm {ga:.3f} on "
        f"average and b's {gb:.3f} (ratio {ratio:.2f}). In the last 20% of the steps both are down to "
        f"{la:.3f} (a) and {lb:.3f} (b), while b inside the joint model is right on only "
        f"{pct(j.final('val/acc/b'))} of the validation samples (head split): b's learning signal fades before b "
        "has learned."
    )
    return Verdict(answer, text, {"early_a": ga, "early_b": gb, "ratio": ratio, "late_a": la, "late_b": lb})


def score_ratio(r: Results) -> Verdict:
    """Lesson 2.2: on which side of 1 the confidence ratio s_a / s_b lives (median over steps, 15% band)."""
    j = r["joint"]
    values = j.series("ratio/a")["value"]
    med = float(values.median()) if len(values) else math.nan
    first, last = j.window_mean("ratio/a", 0, 0.1), j.window_mean("ratio/a", 0.9, 1)
    answer = 0 if med > 1.15 else (2 if med < 1 / 1.15 else 1)
    text = (
        f"The ratio s_a / s_b has a median of {med:.2f} over training: {first:.2f} in the first tenth of the "
        f"steps, {last:.2f} in the last tenth."
    )
    return Verdict(answer, text, {"median": med, "first": first, "last": last})


def gap_closed(r: Results) -> Verdict:
    """Lesson 3: the share of b's gap to b-alone (linear probe) closed by the method: >= 50% most, >= 15% some."""
    base, bal, alone = r["reference"], r["balanced"], alone_accuracy(r["alone_b"])
    p0, p1 = base.final("val/acc_probe/b"), bal.final("val/acc_probe/b")
    h0, h1 = base.final("val/acc/b"), bal.final("val/acc/b")
    f0, f1 = base.final("val/acc/fused"), bal.final("val/acc/fused")
    gap = alone - p0
    closed = (p1 - p0) / gap if gap >= 0.02 else math.nan
    if not math.isfinite(closed):
        answer, how = 2, f"there was hardly a gap to close ({points(-gap)} below b alone)"
    else:
        answer = 0 if closed >= 0.5 else (1 if closed >= 0.15 else 2)
        if closed >= 1:
            how = f"{bal.label} closed the whole gap"
        elif closed >= 0:
            how = f"{bal.label} closed {100 * closed:.0f}% of the gap"
        else:
            how = f"{bal.label} widened the gap"
    text = (
        f"b's linear probe: baseline {pct(p0)} → {bal.label} {pct(p1)}, b alone {pct(alone)}: {how}. "
        f"b's head split: {pct(h0)} → {pct(h1)}. Fused accuracy: {pct(f0)} → {pct(f1)} "
        f"({points(f1 - f0)})."
    )
    nums = {"probe_base": p0, "probe_bal": p1, "alone_b": alone, "head_base": h0, "head_bal": h1,
            "fused_base": f0, "fused_bal": f1, "closed": closed}  # fmt: skip
    return Verdict(answer, text, nums)


def helper_effect(r: Results) -> Verdict:
    """Lesson 4.1: target-only accuracy trained with the helper (p = 0) vs a trained alone."""
    t0, alone = r["helper_p0"].final("val/acc_target"), alone_accuracy(r["alone_a"])
    cmp = _compare(t0, alone)
    answer = {1: 0, 0: 1, -1: 2}[cmp]
    what = {1: "better than", 0: "about as good as", -1: "worse than"}[cmp]
    text = (
        f"Tested on a alone, the model trained with the helper is right on {pct(t0)} of the validation samples; "
        f"a trained alone reaches {pct(alone)} ({points(t0 - alone)}): training with the helper made the "
        f"target-only model {what} training without it."
    )
    return Verdict(answer, text, {"target_p0": t0, "alone_a": alone})


def dropout_recovery(r: Results) -> Verdict:
    """Lesson 4.2: where the target-only accuracy with dropout p lands between p = 0 and a alone."""
    t0, alone = r["helper_p0"].final("val/acc_target"), alone_accuracy(r["alone_a"])
    tp = r["helper_p"].final("val/acc_target")
    if _compare(tp, alone) > 0:
        answer = 3
    elif _compare(tp, alone) == 0:
        answer = 2
    elif tp - t0 < 0.5 * (alone - t0):
        answer = 0
    else:
        answer = 1
    label = r["helper_p"].label.replace("with helper, ", "")
    text = (
        f"Target-only accuracy: {pct(t0)} with the helper never dropped (p = 0), {pct(tp)} with {label}, and "
        f"{pct(alone)} for a trained alone ({points(tp - alone)} against a alone, {points(tp - t0)} against p = 0)."
    )
    return Verdict(answer, text, {"target_p0": t0, "target_p": tp, "alone_a": alone})


def separation(r: Results) -> Verdict:
    """Lesson 5: whether b's classes separate better after balancing (b's linear-probe accuracy decides)."""
    base, bal = r["reference"], r["balanced"]
    p0, p1 = base.final("val/acc_probe/b"), bal.final("val/acc_probe/b")
    a0, a1 = base.final("val/acc_probe/a"), bal.final("val/acc_probe/a")
    answer = {1: 0, 0: 1, -1: 2}[_compare(p1, p0)]
    text = (
        f"A linear classifier on b's features is right on {pct(p0)} of the samples in the baseline and "
        f"{pct(p1)} with {bal.label} ({points(p1 - p0)}); on a's features {pct(a0)} → {pct(a1)}."
    )
    return Verdict(answer, text, {"probe_b_base": p0, "probe_b_bal": p1, "probe_a_base": a0, "probe_a_bal": a1})


VERDICTS: dict[str, Callable[[Results], Verdict]] = {
    f.__name__: f
    for f in (dominant_modality, joint_vs_alone, early_gradients, score_ratio, gap_closed, helper_effect,
              dropout_recovery, separation)
}  # fmt: skip
