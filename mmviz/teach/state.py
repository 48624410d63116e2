"""Lesson state (lesson, step, control values, seed, focus flag) and its URL query-string form.

Everything a teacher needs to share lives in the URL: ``?lesson=1&step=2&seed=0&strength_a=3&...``. Reading is
forgiving: a missing value takes its default, a bad one is replaced by the default and reported (never an
exception), a number out of range is clamped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mmviz.teach.controls import CONTROLS, GROUP_CONTROLS, SEED, group_defaults
from mmviz.teach.lessons import LESSONS, get_lesson, lesson_controls

TRUE = ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class LessonState:
    """Where a learner is: lesson and step (1-based), the lesson group's control values, the seed, focus mode."""

    lesson: int = 1
    step: int = 1
    values: Mapping[str, Any] = dataclasses.field(default_factory=lambda: group_defaults("imbalance"))
    seed: int = 0
    focus: bool = False

    @property
    def group(self) -> str:
        """The control group of the current lesson."""
        return get_lesson(self.lesson).group

    def to_query(self) -> dict[str, str]:
        """The URL query parameters of this state (only the controls the lesson's runs depend on)."""
        out = {"lesson": str(self.lesson), "step": str(self.step), "seed": str(self.seed)}
        for name in lesson_controls(get_lesson(self.lesson)):
            control = CONTROLS[name]
            if control.applies(self.values):
                out[name] = control.format(self.values[name])
        if self.focus:
            out["focus"] = "1"
        return out


def _first(value: Any) -> Any:
    return value[-1] if isinstance(value, (list, tuple)) and value else value


def parse_query(query: Mapping[str, Any]) -> tuple[LessonState, list[str]]:
    """Read a :class:`LessonState` from URL query parameters; returns it and the notes on values ignored.

    >>> state, notes = parse_query({"lesson": "4", "p": "0.9", "focus": "1"})
    >>> (state.lesson, state.step, state.values["p"], state.focus, notes)
    (4, 1, 0.9, True, [])
    """
    notes: list[str] = []
    q = {k: _first(v) for k, v in query.items()}
    lesson = 1
    if "lesson" in q:
        try:
            lesson = int(q["lesson"])
            if not 1 <= lesson <= len(LESSONS):
                raise ValueError
        except (TypeError, ValueError):
            notes.append(f"lesson={q['lesson']!r} (lessons are 1 to {len(LESSONS)})")
            lesson = 1
    n_steps = len(get_lesson(lesson).steps)
    step = 1
    if "step" in q:
        try:
            step = int(q["step"])
            if not 1 <= step <= n_steps:
                raise ValueError
        except (TypeError, ValueError):
            notes.append(f"step={q['step']!r} (lesson {lesson} has steps 1 to {n_steps})")
            step = 1
    seed = int(SEED.default)
    if "seed" in q:
        try:
            seed = SEED.parse(q["seed"])
        except (TypeError, ValueError):
            notes.append(f"seed={q['seed']!r} (a whole number from 0 to {int(SEED.high)})")
    group = get_lesson(lesson).group
    values = group_defaults(group)
    for name in GROUP_CONTROLS[group]:
        if name in q:
            try:
                values[name] = CONTROLS[name].parse(q[name])
            except (TypeError, ValueError) as exc:
                notes.append(str(exc))
    focus = str(q.get("focus", "")).strip().lower() in TRUE
    return LessonState(lesson, step, values, seed, focus), notes
