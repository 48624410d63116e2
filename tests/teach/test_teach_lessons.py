"""The lessons as data: every step resolves to valid run configs, verdicts and charts that exist."""

from __future__ import annotations

import pytest

from mmviz.teach.controls import CONTROLS, METHOD_CHOICES, group_defaults
from mmviz.teach.lessons import LESSONS, specs_for
from mmviz.teach.presets import SIZING
from mmviz.teach.runs import spec_hash
from mmviz.teach.verdicts import VERDICTS

STEPS = [(ls, i, step) for ls in LESSONS for i, step in enumerate(ls.steps, start=1)]


def test_there_are_five_lessons_with_the_issue_topics():
    titles = [ls.title for ls in LESSONS]
    assert titles == ["What imbalance looks like", "Why: the gradients", "Fixing it", "Negative co-learning",
                      "Seeing it"]  # fmt: skip


@pytest.mark.parametrize(("lesson", "index", "step"), STEPS, ids=[f"{ls.number}.{i}" for ls, i, _ in STEPS])
def test_each_step_is_complete_and_builds_valid_configs(lesson, index, step):
    from mmviz.ui.teach_charts import CHARTS

    assert step.verdict in VERDICTS and all(c in CHARTS for c in step.charts) and step.charts
    assert len(step.question.options) >= 2 and step.question.prompt.strip()
    assert all(name in CONTROLS for name in step.controls) and "**Look for:**" in step.narrative
    specs = specs_for(step, group_defaults(lesson.group), seed=0)
    assert [s.role for s in specs] == list(step.runs)
    for spec in specs:
        cfg = spec.build_config()
        assert cfg.dataset == "synthetic" and cfg.train.epochs == SIZING["epochs"] and cfg.train.device == "cpu"
        enabled = {name for name, p in cfg.probes.items() if p.enabled}
        assert enabled == {"grad_norm", "score_ratio", "unimodal_acc", "snapshots"}
        assert cfg.probes["unimodal_acc"].probe_every == SIZING["epochs"]  # the costly probe fits once


def test_lessons_share_runs_so_the_cache_serves_them():
    steps = {(ls.number, i): step for ls, i, step in STEPS}
    values = group_defaults("imbalance")
    joint = spec_hash(specs_for(steps[(1, 1)], values, 0)[0])
    assert spec_hash(specs_for(steps[(2, 1)], values, 0)[0]) == joint  # lesson 2 reads lesson 1's run
    assert spec_hash(specs_for(steps[(3, 1)], values, 0)[0]) == joint  # the baseline of lesson 3 too
    assert [spec_hash(s) for s in specs_for(steps[(5, 1)], values, 0)] == [
        spec_hash(s) for s in specs_for(steps[(3, 1)], values, 0)[:2]
    ]
    assert spec_hash(specs_for(steps[(1, 1)], values, 1)[0]) != joint  # the seed is part of the key


@pytest.mark.parametrize("method", METHOD_CHOICES)
def test_every_balancing_choice_builds(method):
    step = LESSONS[2].steps[0]
    values = {**group_defaults("imbalance"), "method": method}
    ref, bal, alone = specs_for(step, values, 0)
    cfg = bal.build_config()
    assert cfg.method == {"dropout": "amd"}.get(method, method)
    # MLA needs a shared head; its baseline then uses one too, so the comparison stays fair
    assert cfg.model.fusion == ref.build_config().model.fusion == ("shared_head" if method == "mla" else "concat")
    assert alone.build_config().method_params.modality == "b"


def test_colearning_runs_evaluate_the_target_alone():
    step = LESSONS[3].steps[1]
    p0, pp, alone = specs_for(step, {**group_defaults("colearning"), "p": 0.9}, 0)
    assert p0.build_config().method_params.p == 0.0 and pp.build_config().method_params.p == 0.9
    assert p0.build_config().method_params.target == "a" and alone.build_config().method_params.modality == "a"


def test_warm_prepares_each_distinct_default_run_once():
    from mmviz.teach.warm import default_specs

    specs = default_specs()
    hashes = [spec_hash(s) for s in specs]
    assert len(hashes) == len(set(hashes)) == 7  # lesson 1 (3), lesson 3 balanced (1), lesson 4 (3)
    assert len(default_specs(seeds=(0, 1))) == 14
