"""The teach page: guided lessons whose every number comes from real runs made (or found cached) on the spot.

Flow of a step: narrative -> the controls that matter -> a "predict before you run" question -> Run (cached
runs are reused, missing ones start as trainer processes) -> a progress fragment polls the store -> the answer,
decided from the measured numbers, and the charts that show it. The lesson state lives in the URL
(``st.query_params``): it is read once when a session opens the page and written back on every run, so the
address bar is always a link to exactly this state; ``focus=1`` hides the controls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from mmviz.errors import MmvizError
from mmviz.teach.controls import CONTROLS, GROUP_CONTROLS, METHOD_LABELS, SEED, preset_values
from mmviz.teach.lessons import LESSONS, Lesson, Step, describe_settings, get_lesson, specs_for
from mmviz.teach.presets import PRESET_LABELS
from mmviz.teach.results import LESSON_KEYS, RunResult
from mmviz.teach.runs import BROKEN, DONE, RunSpec, ensure_runs, load_progress, spec_hash
from mmviz.teach.state import LessonState, parse_query
from mmviz.teach.verdicts import VERDICTS
from mmviz.ui.frame import page_path, user_errors
from mmviz.ui.labels import md
from mmviz.ui.readers import load_run_metrics, run_token
from mmviz.ui.teach_charts import render_chart

P = "teach."  # session-state prefix
LOADED, NOTES, REQUESTED = P + "loaded", P + "notes", P + "requested"
LESSON_KEY, STEP_KEY, SEED_KEY = P + "lesson", P + "step", P + "seed"
SLOW_S = 90.0  # a run still going after this long gets a warning (lesson runs take ~5-15 s)


def _values_key(group: str) -> str:
    return f"{P}values.{group}"


def _widget_key(group: str, name: str) -> str:
    return f"{P}w.{group}.{name}"


# ---------------------------------------------------------------------------------------------- state and URL
def load_state() -> LessonState:
    """The lesson state: from the URL on the session's first run, then from this session's widgets."""
    ss = st.session_state
    if LOADED not in ss:
        state, notes = parse_query(st.query_params.to_dict())
        ss[LOADED] = True
        ss[NOTES] = notes
        ss[LESSON_KEY], ss[STEP_KEY], ss[SEED_KEY] = state.lesson, state.step, state.seed
        ss[P + "focus"] = state.focus
        ss[_values_key(state.group)] = dict(state.values)
    lesson = get_lesson(int(ss[LESSON_KEY]))
    key = _values_key(lesson.group)
    if key not in ss:
        ss[key] = dict(parse_query({"lesson": str(lesson.number)})[0].values)
    step = min(max(1, int(ss[STEP_KEY])), len(lesson.steps))
    return LessonState(lesson.number, step, dict(ss[key]), int(ss[SEED_KEY]), bool(ss.get(P + "focus")))


def write_url(state: LessonState) -> None:
    """Make the address bar hold ``state`` (only touched when it differs, so the browser history stays clean)."""
    query = state.to_query()
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def _set_value(group: str, name: str) -> None:
    st.session_state[_values_key(group)][name] = st.session_state[_widget_key(group, name)]


def _preset_changed(group: str) -> None:
    values = st.session_state[_values_key(group)]
    values["preset"] = st.session_state[_widget_key(group, "preset")]
    for name, value in preset_values(values["preset"]).items():
        values[name] = value
        st.session_state[_widget_key(group, name)] = value


def render_control(group: str, name: str, values: Mapping[str, Any]) -> None:
    """One control's widget, kept in step with the lesson values (which survive while the widget is hidden)."""
    c = CONTROLS[name]
    wkey = _widget_key(group, name)
    if st.session_state.get(wkey) != values[name]:
        st.session_state[wkey] = values[name]
    if name == "preset":
        st.radio(c.label, c.options, key=wkey, horizontal=True, help=c.help, format_func=PRESET_LABELS.get,
                 on_change=_preset_changed, args=(group,))  # fmt: skip
    elif c.kind == "choice":
        fmt = METHOD_LABELS.get if name == "method" else str
        st.radio(c.label, c.options, key=wkey, help=c.help, format_func=fmt, on_change=_set_value, args=(group, name))
    else:
        number = int if c.kind == "int" else float
        st.slider(c.label, number(c.low), number(c.high), step=number(c.step), key=wkey, help=c.help,
                  format="%d" if c.kind == "int" else "%.1f", on_change=_set_value, args=(group, name))  # fmt: skip


def _lesson_changed() -> None:
    st.session_state[STEP_KEY] = 1


def _go_step(delta: int) -> None:
    st.session_state[STEP_KEY] = int(st.session_state[STEP_KEY]) + delta


def next_lesson(number: int) -> Lesson | None:
    """The lesson after lesson ``number``, or None after the last."""
    numbers = [ls.number for ls in LESSONS]
    i = numbers.index(number)
    return LESSONS[i + 1] if i + 1 < len(LESSONS) else None


def _go_lesson(number: int) -> None:
    st.session_state[LESSON_KEY] = number
    st.session_state[STEP_KEY] = 1


def render_navigation(state: LessonState) -> None:
    """Lesson picker (hidden in focus mode), and Back / Next between the lesson's steps."""
    lesson = get_lesson(state.lesson)
    if not state.focus:
        st.radio("Lesson", [ls.number for ls in LESSONS], key=LESSON_KEY, horizontal=True, on_change=_lesson_changed,
                 format_func=lambda n: f"{n} · {get_lesson(n).title}", label_visibility="collapsed")  # fmt: skip
    st.header(f"Lesson {lesson.number} · {lesson.title}")
    n = len(lesson.steps)
    c1, c2, c3 = st.columns([1, 6, 1])
    c1.button("← Back", key=P + "back", disabled=state.step <= 1, on_click=_go_step, args=(-1,), width="stretch")
    following = next_lesson(lesson.number) if state.step >= n else None
    if following is not None:  # the lesson's end: on to the next one
        c3.button("Next lesson →", key=P + "next_lesson", on_click=_go_lesson, args=(following.number,),
                  width="stretch", help=f"Lesson {following.number}: {following.title}")  # fmt: skip
    else:
        c3.button("Next →", key=P + "next", disabled=state.step >= n, on_click=_go_step, args=(1,), width="stretch")
    c2.markdown(f"**Step {state.step} of {n} · {lesson.steps[state.step - 1].title}**")


def render_controls(lesson: Lesson, step: Step, state: LessonState) -> None:
    """The step's controls; lessons that introduce a data set also offer every data knob in a closed expander."""
    shown = [n for n in step.controls if CONTROLS[n].applies(state.values)]
    for name in shown:
        render_control(lesson.group, name, state.values)
    if lesson.data_knobs:
        with st.expander("More data knobs (per modality: signal strength, non-linearity, noise; classes)"):
            for name in GROUP_CONTROLS[lesson.group]:
                if name not in shown and name not in ("method", "alpha", "drop_p", "p", "preset"):
                    render_control(lesson.group, name, state.values)


def render_seed() -> None:
    """Sidebar: the seed of data and training (part of the shared link)."""
    with st.sidebar:
        st.number_input(SEED.label, int(SEED.low), int(SEED.high), step=1, key=SEED_KEY, help=SEED.help)
        st.caption("The address bar always holds this lesson's state: share it. Add `&focus=1` for a focused view.")


# ---------------------------------------------------------------------------------------------- runs
def _request_key(state: LessonState, specs: list[RunSpec]) -> str:
    return f"{state.lesson}.{state.step}:" + ",".join(spec_hash(s) for s in specs)


def _start(store, key: str, specs: list[RunSpec]) -> None:
    with user_errors():
        st.session_state.setdefault(REQUESTED, {})[key] = ensure_runs(store, specs)


def render_progress(store, specs: list[RunSpec], run_ids: Mapping[str, str], key: str) -> None:
    """A fragment polling the runs each second; reruns the page when all are finished."""

    @st.fragment(run_every=1.0)
    def poll() -> None:
        progress = load_progress(store, specs, run_ids)
        if all(p.status == DONE for p in progress):
            st.rerun()
        for p in progress:
            text = f"{p.label}: {p.status}, epoch {p.epochs_done}/{p.epochs} ({p.seconds:.0f} s)"
            st.progress(p.fraction, text=text)  # our own labels and numbers
            if p.status in BROKEN:
                st.error(md(f"The run '{p.label}' ({p.run_id}) ended as {p.status}. {p.error}".strip()))
            elif p.seconds > SLOW_S:
                st.warning(md(f"'{p.label}' is taking longer than usual ({p.seconds:.0f} s): the machine may be busy."))
        if any(p.status in BROKEN for p in progress):
            st.button("Start the missing runs again", key=P + "retry", on_click=_start, args=(store, key, specs))

    poll()


def load_results(store, workspace: str, specs: list[RunSpec], run_ids: Mapping[str, str]) -> dict[str, RunResult]:
    """The finished runs' metric rows (cached per run and status) as :class:`RunResult` per role."""
    out = {}
    for spec in specs:
        run = store.get_run(run_ids[spec.role])
        frame = load_run_metrics(workspace, run["run_id"], LESSON_KEYS, run_token(run))
        out[spec.role] = RunResult(spec.role, spec.label, run["run_id"], frame)
    return out


def render_answer(step: Step, guess: str | None, results: Mapping[str, RunResult]) -> None:
    """The prediction against the option the measured numbers support, with the numbers."""
    verdict = VERDICTS[step.verdict](results)
    right = step.question.options[verdict.answer]
    if guess == right:
        st.success(f"**You predicted: {guess}. The runs agree.** {verdict.text}")
    else:
        said = f"You predicted: {guess}. " if guess else ""
        st.info(f"**{said}The runs say: {right}.** {verdict.text}")
    st.caption("The runs behind these numbers (open one on the Live page):")
    for col, r in zip(st.columns(len(results) or 1), results.values(), strict=False):
        with col:
            st.page_link(page_path("live"), label=md(f"{r.label} · {r.run_id}"), icon=":material/monitoring:",
                         query_params={"run": r.run_id})  # fmt: skip


def render_step(store, workspace: str, state: LessonState) -> None:
    """Narrative, controls, question, Run, and then progress or the answer with its charts."""
    lesson = get_lesson(state.lesson)
    step = lesson.steps[state.step - 1]
    if state.step == 1:
        st.markdown(lesson.intro)
    st.markdown(step.narrative)
    if not state.focus:
        render_controls(lesson, step, state)
    st.caption(describe_settings(step, state.values, state.seed))
    try:
        specs = specs_for(step, state.values, state.seed)
        key = _request_key(state, specs)
    except MmvizError as exc:  # e.g. a knob combination the dataset refuses
        st.error(md(exc))
        return
    guess = st.radio(step.question.prompt, step.question.options, index=None, key=f"{P}guess.{state.lesson}."
                     f"{state.step}")  # fmt: skip
    run_ids = st.session_state.get(REQUESTED, {}).get(key)
    progress = load_progress(store, specs, run_ids) if run_ids is not None else []
    if any(p.status == "missing" for p in progress):  # deleted on the Runs page since: start again
        st.session_state[REQUESTED].pop(key, None)
        st.warning("A run of this step was deleted in the meantime; press Run to make it again.")
        run_ids = None
    if run_ids is None:
        st.button("Run", type="primary", key=P + "run", disabled=guess is None, on_click=_start,
                  args=(store, key, specs), help="Make a prediction first." if guess is None else
                  "Trains the runs this step needs (a few seconds each), or reuses identical runs already made.")  # fmt: skip
        return
    if not all(p.status == DONE for p in progress):
        render_progress(store, specs, run_ids, key)
        return
    results = load_results(store, workspace, specs, run_ids)
    render_answer(step, guess, results)
    for chart in step.charts:
        render_chart(chart, workspace, results)


def render_teach_page(store, workspace: str) -> None:
    """The whole teach page."""
    state = load_state()
    for note in st.session_state.pop(NOTES, []):
        st.warning(md(f"The link's value {note} was ignored; the default is used."))
    if not state.focus:
        render_seed()
    render_navigation(state)
    write_url(state)
    render_step(store, workspace, state)
