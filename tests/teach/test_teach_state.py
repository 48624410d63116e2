"""Lesson controls and the URL form of the lesson state."""

from __future__ import annotations

import pytest

from mmviz.teach.controls import CONTROLS, GROUP_CONTROLS, group_defaults, knobs_from
from mmviz.teach.lessons import LESSONS, lesson_controls
from mmviz.teach.presets import PRESETS
from mmviz.teach.state import LessonState, parse_query


def test_control_parse_clamps_snaps_and_rejects():
    strength = CONTROLS["strength_a"]
    assert strength.parse("3") == 3.0
    assert strength.parse("2.7") == 2.5  # snapped to the 0.5 grid
    assert strength.parse("99") == 8.0  # clamped to the slider range
    assert CONTROLS["p"].parse("0.8") == 0.8
    assert CONTROLS["classes"].parse("7.4") == 7 and isinstance(CONTROLS["classes"].parse("7"), int)
    for bad in ("abc", "nan", "inf", ""):
        with pytest.raises(ValueError):
            strength.parse(bad)
    with pytest.raises(ValueError):
        CONTROLS["method"].parse("ogm-ge")
    assert CONTROLS["method"].parse("mla") == "mla"
    assert strength.format(3.0) == "3" and CONTROLS["p"].format(0.8) == "0.8"


def test_group_defaults_come_from_the_group_preset():
    imb, col = group_defaults("imbalance"), group_defaults("colearning")
    assert knobs_from(imb) == PRESETS["dominant"] and knobs_from(col) == PRESETS["cotrain"]
    assert imb["method"] == "pmr" and col["p"] == 0.8
    assert set(imb) == set(GROUP_CONTROLS["imbalance"]) and set(col) == set(GROUP_CONTROLS["colearning"])


@pytest.mark.parametrize("lesson", [ls.number for ls in LESSONS])
def test_every_lesson_state_round_trips_through_the_url(lesson):
    ls = LESSONS[lesson - 1]
    values = group_defaults(ls.group)
    for name in lesson_controls(ls):  # move every control the link carries away from its default
        c = CONTROLS[name]
        values[name] = c.options[-1] if c.kind == "choice" else c.parse(c.high)
    state = LessonState(lesson, len(ls.steps), values, seed=17, focus=True)
    back, notes = parse_query(state.to_query())
    assert notes == []
    assert (back.lesson, back.step, back.seed, back.focus) == (lesson, len(ls.steps), 17, True)
    for name in lesson_controls(ls):
        if CONTROLS[name].applies(values):
            assert back.values[name] == values[name], name


def test_links_carry_only_what_the_lesson_runs_depend_on():
    q1 = LessonState(1).to_query()
    assert "strength_a" in q1 and "sub_b" in q1 and "method" not in q1 and "p" not in q1
    q3 = LessonState(3).to_query()
    assert q3["method"] == "pmr" and "alpha" in q3 and "drop_p" not in q3  # alpha applies to PMR, drop_p does not
    q4, _ = parse_query({"lesson": "4"})
    assert "p" in q4.to_query() and "method" not in q4.to_query() and "focus" not in q4.to_query()


def test_bad_links_fall_back_to_defaults_with_notes():
    state, notes = parse_query({"lesson": "9", "step": "x", "seed": "-3", "strength_a": "lots", "focus": "yes"})
    assert (state.lesson, state.step, state.seed, state.focus) == (1, 1, 0, True)
    assert state.values["strength_a"] == PRESETS["dominant"].strength_a
    assert len(notes) == 3 and any("lesson" in n for n in notes) and any("strength_a" in n for n in notes)
    state, notes = parse_query({"lesson": "2", "step": "5"})
    assert (state.lesson, state.step) == (2, 1) and "steps 1 to 2" in notes[0]
    state, notes = parse_query({"lesson": ["3", "4"], "p": ["0.5", "0.9"]})  # repeated keys: the last wins
    assert state.lesson == 4 and state.values["p"] == 0.9 and notes == []
