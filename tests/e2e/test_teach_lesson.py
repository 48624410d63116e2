"""One lesson end to end in headless Chromium: predict, run, read the measured answer and the chart, next step,
the address bar as a shareable link (with focus mode), and a run that trains while the page shows progress."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from mmviz.testing import CHROMIUM, launch_chromium, start_dashboard, stop_dashboard

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make browser)"),
]


@pytest.fixture
def server(lesson_workspace, tmp_path):
    """A streamlit server on a free localhost port over a copy of the lesson workspace; yields its base URL."""
    ws = tmp_path / "ws"
    shutil.copytree(lesson_workspace, ws)
    proc, base = start_dashboard(ws)
    yield base
    stop_dashboard(proc)


@pytest.fixture
def page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p, tmp_path / "chromium-profile", viewport={"width": 1300, "height": 1600})
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _query(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _predict_and_run(page, option: str, trains: bool = False) -> str:
    page.get_by_role("radiogroup").last.get_by_text(option, exact=True).click()  # the question is the last radio
    run = page.get_by_role("button", name="Run", exact=True)
    page.wait_for_function("b => !b.disabled", arg=run.element_handle(), timeout=20_000)
    run.click()
    if trains:  # a new run: progress bars while it trains, then the page redraws itself when it has finished
        page.locator("[data-testid='stProgress']").first.wait_for(timeout=30_000)
    answer = page.locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentInfo']")
    answer.first.wait_for(timeout=120_000)
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=30_000)
    return answer.first.inner_text()


def test_lesson_one_in_a_real_browser(server, page):
    page.goto(f"{server}/teach?lesson=1&step=1")
    page.get_by_text("Lesson 1 · What imbalance looks like").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Run", exact=True).is_disabled()  # predict first

    text = _predict_and_run(page, "b")
    assert "The runs say: a." in text and "%" in text  # a dominates inside the joint model, measured
    assert page.locator("[data-testid='stPlotlyChart']").count() == 1
    q = _query(page)
    assert q["lesson"] == "1" and q["step"] == "1" and q["strength_a"] == "3" and q["seed"] == "0"

    page.get_by_role("button", name="Next →").click()
    page.get_by_text("Step 2 of 2 · Now each one alone").wait_for(timeout=30_000)
    text = _predict_and_run(page, "worse: the joint model under-trains b")
    assert "The runs agree." in text and "b alone reaches" in text
    assert _query(page)["step"] == "2"

    # the address bar is the shared link: opening it (focused) shows the same lesson and step, without controls
    link = page.url + "&focus=1"
    page.goto(link)
    page.get_by_text("Step 2 of 2 · Now each one alone").wait_for(timeout=60_000)
    assert page.get_by_text("1 · What imbalance looks like", exact=True).count() == 0  # no lesson picker
    assert page.locator("[data-testid='stSlider']").count() == 0
    assert _query(page)["focus"] == "1"

    # a step whose run is not cached (seed 1): it trains in a real trainer process, the progress fragment polls
    # the store, and the answer appears without any click once the run has finished
    page.goto(f"{server}/teach?lesson=2&step=1&seed=1")
    page.get_by_text("Step 1 of 2 · Who gets the learning signal").wait_for(timeout=60_000)
    text = _predict_and_run(page, "a", trains=True)
    assert "gradient of norm" in text
    assert page.locator("[data-testid='stProgress']").count() == 0
