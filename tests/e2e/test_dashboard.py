"""End to end in headless Chromium: launch a run from the form, watch it live, stop it, fork it, compare.

Starts ``streamlit run app.py`` on a free localhost port with a temporary workspace and drives Debian's chromium
through Playwright. Screenshots of every page go to ``tests/artifacts/``; the live page also goes to
``docs/screenshot-live.png`` for the README when that file is missing or ``MMVIZ_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pytest

from mmviz.testing import CHROMIUM, ROOT, launch_chromium, start_dashboard, stop_dashboard

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "tests" / "artifacts"
TIMEOUT_MS = 60_000
EPOCHS = 20_000  # far more than the test watches: a synthetic epoch takes ~50 ms, and 400 once ended before Stop


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, kill_runs):
    """A running dashboard on a fresh workspace: ``(url, workspace)``."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium ('make browser' installs it).")
    tmp = tmp_path_factory.mktemp("e2e")
    ws = tmp / "ws"
    proc, url = start_dashboard(ws, tmp / "streamlit.log")
    yield url, ws
    stop_dashboard(proc)
    kill_runs(ws)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"), viewport={"width": 1400, "height": 2200})
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx.new_page()
        ctx.close()


def visible(locator):
    return locator.filter(visible=True).first


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the visible select box labelled ``label``."""
    visible(page.get_by_role("combobox", name=label)).click()
    visible(page.get_by_role("option", name=option, exact=True)).click()


def settle(page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=TIMEOUT_MS)


def latest_step(page) -> int:
    text = page.get_by_text(re.compile(r"latest step \d+")).first.inner_text()
    return int(re.search(r"latest step (\d+)", text).group(1))


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@contextlib.contextmanager
def screenshot_on_failure(page):
    """Save ``tests/artifacts/failure.png`` when the block fails, to see what the browser saw."""
    try:
        yield
    except BaseException:
        shot(page, "failure")
        raise


def test_launch_watch_stop_fork_and_compare(dashboard, page):
    with screenshot_on_failure(page):
        _launch_watch_stop_fork_and_compare(dashboard, page)


def _launch_watch_stop_fork_and_compare(dashboard, page):
    url, ws = dashboard
    page.goto(url)
    page.get_by_text("Launch run").wait_for()
    settle(page)

    # ---- launch a run from the form: synthetic data, small, many epochs so it is still running while we watch
    choose(page, "Dataset", "synthetic")
    settle(page)
    visible(page.get_by_label("n_train", exact=True)).fill("300")
    visible(page.get_by_role("tab", name="Training")).click()
    visible(page.get_by_label("epochs", exact=True)).fill(str(EPOCHS))
    visible(page.get_by_label("Run name", exact=True)).fill("e2e-run")
    visible(page.get_by_role("button", name="Launch run")).click()
    started = page.get_by_text(re.compile(r"Started run \S+\.")).first
    started.wait_for()
    run_id = re.search(r"Started run (\S+)\.", started.inner_text()).group(1)

    # ---- the live page: the latest step grows without a reload
    page.get_by_role("link", name="Watch it on the Live page").click()
    page.get_by_text(re.compile(rf"running · epoch \d+/{EPOCHS}")).first.wait_for()
    page.wait_for_function("() => /latest step [1-9]/.test(document.body.innerText)", timeout=TIMEOUT_MS)
    page.evaluate("() => { window.__e2e_no_reload = true; }")
    first = latest_step(page)
    page.wait_for_function(
        f"() => {{ const m = document.body.innerText.match(/latest step (\\d+)/); return m && +m[1] > {first}; }}",
        timeout=TIMEOUT_MS,
    )
    assert page.evaluate("() => window.__e2e_no_reload === true"), "the page reloaded"
    assert latest_step(page) > first
    # plotly.js draws each chart after its element arrives: wait for them rather than sampling once
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=TIMEOUT_MS)
    page.wait_for_function(
        f"() => /epoch ([3-9]|\\d\\d+)\\/{EPOCHS}/.test(document.body.innerText)", timeout=TIMEOUT_MS
    )
    page.wait_for_timeout(2500)  # let the charts take the latest refresh before the picture
    shot(page, "live")
    readme_shot = ROOT / "docs" / "screenshot-live.png"
    if not readme_shot.exists() or os.environ.get("MMVIZ_UPDATE_SCREENSHOTS") == "1":
        readme_shot.parent.mkdir(exist_ok=True)  # a tracked file: refreshed on request, not on every test run
        shutil.copyfile(ARTIFACTS / "live.png", readme_shot)

    # ---- stop it: the status turns 'stopped' by itself
    visible(page.get_by_role("button", name="Stop run")).click()
    page.get_by_text(re.compile(rf"stopped · epoch \d+/{EPOCHS}")).first.wait_for()

    # ---- fork it with another balancing method, then compare parent and child
    page.get_by_role("link", name="Fork / restart").click()
    page.get_by_text("From checkpoint epoch").first.wait_for()  # the link opens this run's fork form
    settle(page)
    assert run_id in visible(page.get_by_role("combobox", name="Selected run")).input_value()
    choose(page, "Balancing method", "ogm_ge")
    settle(page)
    visible(page.get_by_label("Run name", exact=True)).fill("e2e-fork")
    visible(page.get_by_role("button", name="Fork", exact=True)).click()
    page.get_by_text(re.compile(r"Forked as run \S+\.")).first.wait_for()
    shot(page, "runs")
    page.get_by_role("link", name="Compare parent and child").click()
    caption = page.get_by_text(re.compile(r"e2e-fork \(ogm_ge\) forked from e2e-run \(baseline\) at epoch \d+"))
    caption.first.wait_for()
    # the child appears in the chart once it has logged an evaluation (the page refreshes while it trains)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(p => p.textContent.includes('e2e-fork'))",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_timeout(1000)
    shot(page, "compare")

    from mmviz.store import open_store

    with open_store(ws) as store:
        runs = {r["name"]: r for r in store.list_runs().to_dict("records")}
    assert runs["e2e-run"]["status"] == "stopped" and runs["e2e-run"]["config"]["data"]["n_train"] == 300
    assert runs["e2e-fork"]["parent_run_id"] == run_id and runs["e2e-fork"]["method"] == "ogm_ge"
    with open_store(ws) as store:  # the fork would train for minutes beside the next tests
        store.request_stop(runs["e2e-fork"]["run_id"])
