"""Verdicts pick the answer the numbers support, whatever the textbook says."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mmviz.teach.results import RunResult, pct, points
from mmviz.teach.verdicts import VERDICTS


def result(role: str, label: str = "", per_epoch: dict | None = None, per_step: dict | None = None) -> RunResult:
    """A RunResult with constant per-epoch values (3 epochs) and per-step series."""
    rows = []
    for key, value in (per_epoch or {}).items():
        for e in (1, 2, 3):
            rows.append({"step": 10 * e, "epoch": float(e), "key": key, "value": value})
    for key, values in (per_step or {}).items():
        for s, v in enumerate(values):
            rows.append({"step": s, "epoch": s / 10, "key": key, "value": v})
    frame = pd.DataFrame(rows, columns=["step", "epoch", "key", "value"])
    frame["id"] = np.arange(len(frame))
    return RunResult(role, label or role, f"run-{role}", frame)


def test_lesson1_verdicts_follow_the_numbers():
    joint = result("joint", per_epoch={"val/acc/fused": 0.95, "val/acc/a": 0.8, "val/acc/b": 0.5,
                                       "val/acc_probe/a": 0.8, "val/acc_probe/b": 0.65})  # fmt: skip
    alone = {"alone_a": result("alone_a", per_epoch={"val/acc/fused": 0.82}),
             "alone_b": result("alone_b", per_epoch={"val/acc/fused": 0.78})}  # fmt: skip
    v = VERDICTS["dominant_modality"]({"joint": joint})
    assert v.answer == 0 and "80%" in v.text and "50%" in v.text
    v = VERDICTS["joint_vs_alone"]({"joint": joint, **alone})
    assert v.answer == 0 and "falls short" in v.text and "-13 points" in v.text
    level = result("joint", per_epoch={"val/acc/a": 0.8, "val/acc/b": 0.78, "val/acc_probe/b": 0.77})
    assert VERDICTS["joint_vs_alone"]({"joint": level, **alone}).answer == 1  # within the margin
    assert VERDICTS["dominant_modality"]({"joint": level}).answer == 2


def test_lesson2_verdicts():
    grads = {"grad_norm_pre/a": [0.5] * 30 + [0.05] * 70, "grad_norm_pre/b": [0.3] * 30 + [0.05] * 70,
             "ratio/a": [1.0] * 10 + [1.8] * 90}  # fmt: skip
    r = {"joint": result("joint", per_epoch={"val/acc/b": 0.5}, per_step=grads)}
    v = VERDICTS["early_gradients"](r)
    assert v.answer == 0 and math.isclose(v.numbers["ratio"], 0.5 / 0.3)
    assert VERDICTS["score_ratio"](r).answer == 0
    even = {"joint": result("joint", per_step={"grad_norm_pre/a": [1.0] * 10, "grad_norm_pre/b": [1.05] * 10,
                                               "ratio/a": [0.5] * 10})}  # fmt: skip
    assert VERDICTS["early_gradients"](even).answer == 2 and VERDICTS["score_ratio"](even).answer == 2


@pytest.mark.parametrize(("balanced_probe", "answer"), [(0.76, 0), (0.70, 1), (0.66, 2), (0.60, 2)])
def test_gap_closed_thresholds(balanced_probe, answer):
    r = {"reference": result("reference", "baseline", {"val/acc_probe/b": 0.65, "val/acc/b": 0.5,
                                                       "val/acc/fused": 0.9}),
         "balanced": result("balanced", "PMR", {"val/acc_probe/b": balanced_probe, "val/acc/b": 0.6,
                                                "val/acc/fused": 0.9}),
         "alone_b": result("alone_b", per_epoch={"val/acc/fused": 0.85})}  # fmt: skip
    v = VERDICTS["gap_closed"](r)
    assert v.answer == answer and "PMR" in v.text


def test_no_gap_is_said_so():
    r = {"reference": result("reference", per_epoch={"val/acc_probe/b": 0.85}),
         "balanced": result("balanced", per_epoch={"val/acc_probe/b": 0.86}),
         "alone_b": result("alone_b", per_epoch={"val/acc/fused": 0.86})}  # fmt: skip
    v = VERDICTS["gap_closed"](r)
    assert v.answer == 2 and "hardly a gap" in v.text


@pytest.mark.parametrize(("target_p", "answer"), [(0.36, 0), (0.55, 1), (0.62, 2), (0.70, 3)])
def test_dropout_recovery_placement(target_p, answer):
    r = {"helper_p0": result("helper_p0", per_epoch={"val/acc_target": 0.36}),
         "helper_p": result("helper_p", "with helper, p = 0.8", {"val/acc_target": target_p}),
         "alone_a": result("alone_a", per_epoch={"val/acc/fused": 0.63})}  # fmt: skip
    assert VERDICTS["dropout_recovery"](r).answer == answer
    assert VERDICTS["helper_effect"](r).answer == 2  # 36% vs 63% alone: the helper hurt


def test_separation_verdict():
    r = {"reference": result("reference", per_epoch={"val/acc_probe/b": 0.77, "val/acc_probe/a": 0.9}),
         "balanced": result("balanced", "PMR", {"val/acc_probe/b": 0.87, "val/acc_probe/a": 0.9})}  # fmt: skip
    assert VERDICTS["separation"](r).answer == 0


def test_formatting():
    assert pct(0.734) == "73%" and pct(float("nan")) == "n/a"
    assert points(-0.12) == "-12 points" and points(0.01) == "+1 point" and points(float("nan")) == "n/a"
