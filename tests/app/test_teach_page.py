"""AppTest of the teach page: every lesson step from prediction to measured answer, shared links, focus mode,
bad links, user errors, and one run trained by a real trainer process while the page shows progress."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mmviz.store import open_store
from mmviz.teach.lessons import LESSONS
from mmviz.ui.labels import plain

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/teach.py"
STEPS = [(ls.number, i, step) for ls in LESSONS for i, step in enumerate(ls.steps, start=1)]
# What the default presets show, measured by these very runs (seed 0); the page decides it from the numbers.
EXPECTED = {
    (1, 1): "a",
    (1, 2): "worse: the joint model under-trains b",
    (2, 1): "a",
    (2, 2): "above 1: a leads",
    (3, 1): "most of it",
    (4, 1): "worse than a trained alone",
    (4, 2): "recover to about a alone",
    (5, 1): "more separated",
}


@pytest.fixture
def teach_page(monkeypatch, lesson_workspace):
    """``teach_page(**query)`` -> an AppTest of the teach page that has run once with these URL parameters."""

    def open_(workspace: Path | None = None, **query: str) -> AppTest:
        monkeypatch.setenv("MMVIZ_WORKSPACE", str(workspace or lesson_workspace))
        at = AppTest.from_file(APP, default_timeout=60)  # through the navigation: the page links to others
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        at.switch_page(PAGE).run()
        assert not at.exception, at.exception
        return at

    return open_


def _guess(at: AppTest):
    return next(r for r in at.radio if r.key and r.key.startswith("teach.guess."))


def _text(at: AppTest) -> str:
    return "\n".join(plain(m.value) for m in [*at.markdown, *at.caption])


@pytest.mark.parametrize(("lesson", "index", "step"), STEPS, ids=[f"lesson{n}.{i}" for n, i, _ in STEPS])
def test_each_step_predict_run_answer(teach_page, lesson, index, step):
    at = teach_page(lesson=str(lesson), step=str(index))
    assert step.narrative.split("\n")[0][:40] in _text(at)
    guess = _guess(at)
    assert guess.label == step.question.prompt and guess.value is None
    assert at.button(key="teach.run").disabled, "no run before a prediction"
    guess.set_value(step.question.options[0]).run()
    assert not at.button(key="teach.run").disabled
    at.button(key="teach.run").click().run()
    assert not at.exception, at.exception
    assert not at.get("progress"), "the default runs are cached: the answer shows at once"
    answers = [*at.success, *at.info]
    assert len(answers) == 1 and any(ch.isdigit() for ch in answers[0].value)
    text = answers[0].value
    assert f"You predicted: {step.question.options[0]}" in text
    assert (EXPECTED[(lesson, index)] == step.question.options[0]) == bool(at.success)
    assert f"The runs say: {EXPECTED[(lesson, index)]}" in text or "The runs agree" in text
    assert len(at.get("plotly_chart")) == len(step.charts)


def test_a_shared_link_restores_the_same_controls(teach_page):
    query = {"lesson": "3", "step": "1", "seed": "4", "method": "dropout", "drop_p": "0.7", "strength_a": "2.5"}
    at = teach_page(**query)
    assert at.radio(key="teach.w.imbalance.method").value == "dropout"
    assert at.slider(key="teach.w.imbalance.drop_p").value == 0.7
    assert at.number_input(key="teach.seed").value == 4
    assert "a: strength 2.5" in _text(at) and "seed 4" in _text(at)
    assert {k: at.query_params[k] for k in query} == query  # the address bar keeps the link's state
    # a change in the page goes into the link, and that link opens the same state in a new session
    at.slider(key="teach.w.imbalance.drop_p").set_value(0.3).run()
    assert at.query_params["drop_p"] == "0.3"
    again = teach_page(**{k: str(v) for k, v in at.query_params.items()})
    assert again.slider(key="teach.w.imbalance.drop_p").value == 0.3
    assert again.radio(key="teach.w.imbalance.method").value == "dropout"
    assert again.number_input(key="teach.seed").value == 4


def test_lesson4_link_keeps_p_and_knobs(teach_page):
    at = teach_page(lesson="4", step="2", p="0.9", strength_b="5")
    assert at.slider(key="teach.w.colearning.p").value == 0.9
    assert "b: strength 5," in _text(at)
    assert at.query_params["p"] == "0.9" and at.query_params["lesson"] == "4" and "method" not in at.query_params


def test_navigation_moves_the_link(teach_page):
    at = teach_page(lesson="1")
    assert at.button(key="teach.back").disabled
    at.button(key="teach.next").click().run()
    assert at.query_params["step"] == "2" and "Step 2 of 2" in _text(at)
    at.radio(key="teach.lesson").set_value(4).run()
    assert at.query_params["lesson"] == "4" and at.query_params["step"] == "1"
    assert at.query_params["strength_b"] == "6"  # lesson 4 has its own data preset (negative co-learning)
    at.radio(key="teach.lesson").set_value(1).run()
    assert at.query_params["strength_b"] == "4.5"


def test_a_lessons_end_offers_the_next_lesson_and_links_runs_to_live(teach_page):
    last = LESSONS[0]
    at = teach_page(lesson=str(last.number), step=str(len(last.steps)))
    at.button(key="teach.next_lesson").click().run()
    assert at.query_params["lesson"] == str(LESSONS[1].number) and at.query_params["step"] == "1"
    at = teach_page(lesson="1", step="1")
    _guess(at).set_value("a").run()
    at.button(key="teach.run").click().run()
    links = [p for p in at.get("page_link") if "monitoring" in p.proto.icon]
    assert links and all(p.proto.page.endswith("live.py") or "live" in p.proto.page for p in links)
    assert all("run=" in p.proto.query_string for p in links)


def test_preset_change_resets_the_knobs(teach_page):
    at = teach_page(lesson="1", strength_a="1")
    at.radio(key="teach.w.imbalance.preset").set_value("balanced").run()
    assert at.query_params["preset"] == "balanced" and at.query_params["sub_b"] == "1"
    assert at.query_params["strength_a"] == "3" and at.slider(key="teach.w.imbalance.strength_a").value == 3.0


def test_focus_mode_hides_the_controls(teach_page):
    at = teach_page(lesson="4", step="2", p="0.9", focus="1")
    assert not at.slider and not at.number_input and not any(r.key == "teach.lesson" for r in at.radio)
    assert _guess(at) is not None and at.button(key="teach.run") is not None
    assert at.query_params["focus"] == "1" and at.query_params["p"] == "0.9"


def test_a_bad_link_is_explained_not_a_traceback(teach_page):
    at = teach_page(lesson="7", p="lots", strength_a="1e9")
    assert any("lesson='7'" in plain(w.value) for w in at.warning)
    assert at.query_params["lesson"] == "1" and at.query_params["strength_a"] == "8"  # clamped to the slider


def test_user_errors_show_as_one_sentence(teach_page, monkeypatch, tmp_path):
    import mmviz.launcher
    from mmviz.errors import ConfigError

    def refuse(*args, **kwargs):
        raise ConfigError("The 'n_train' parameter of SyntheticConfig must be at least 50. Got 3 instead.")

    monkeypatch.setattr(mmviz.launcher, "prepare_run", refuse)
    at = teach_page(workspace=tmp_path, lesson="1")
    _guess(at).set_value("a").run()
    at.button(key="teach.run").click().run()
    assert not at.exception
    assert [plain(e.value) for e in at.error] == [
        "The 'n_train' parameter of SyntheticConfig must be at least 50. Got 3 instead."
    ]


def test_a_new_run_trains_and_shows_progress(teach_page, tmp_path):
    """The one real trainer process of this file: a fresh workspace, so nothing is cached."""
    at = teach_page(workspace=tmp_path, lesson="2", step="1", seed="1")
    _guess(at).set_value("a").run()
    at.button(key="teach.run").click().run()
    assert not at.exception, at.exception
    bars = at.get("progress")
    assert bars and "a + b (joint)" in bars[0].proto.text
    with open_store(tmp_path) as store:
        (run,) = store.list_runs().to_dict("records")
        assert run["method"] == "baseline" and any(t.startswith("teach:") for t in run["tags"])
        deadline = time.monotonic() + 120
        while store.get_run(run["run_id"])["effective_status"] not in ("finished", "failed", "lost"):
            assert time.monotonic() < deadline, "the lesson run did not finish in 120 s"
            time.sleep(0.5)
        assert store.get_run(run["run_id"])["effective_status"] == "finished"
    at.run()
    assert not at.get("progress") and len(at.get("plotly_chart")) == 1
    assert "gradient of norm" in [*at.success, *at.info][0].value


def test_a_run_deleted_meanwhile_asks_to_run_again(teach_page, lesson_workspace, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(lesson_workspace, ws)
    at = teach_page(workspace=ws, lesson="2", step="2")
    _guess(at).set_value("about 1").run()
    at.button(key="teach.run").click().run()
    assert [*at.success, *at.info] and len(at.get("plotly_chart")) == 1
    with open_store(ws) as store:
        for run in store.list_runs().to_dict("records"):
            store.delete_run(run["run_id"])
    at.run()
    assert not at.exception and any("deleted" in w.value for w in at.warning)
    assert not at.button(key="teach.run").disabled and not at.get("plotly_chart")
