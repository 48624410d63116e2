"""End to end in headless Chromium: the Sweeps page draws a finished sweep's table, parallel-coordinates chart and
seed groups, and selecting a trial opens it on the Live page."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmviz.testing import CHROMIUM, ROOT, launch_chromium, start_dashboard, stop_dashboard

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 60_000


def test_sweep_view_renders_and_a_trial_opens_live(sweep_workspace, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium ('make browser' installs it).")
    from playwright.sync_api import sync_playwright

    proc, url = start_dashboard(sweep_workspace["workspace"], tmp_path / "streamlit.log")
    try:
        with sync_playwright() as pw:
            ctx = launch_chromium(pw, tmp_path / "profile", viewport={"width": 1400, "height": 2000})
            ctx.set_default_timeout(TIMEOUT_MS)
            page = ctx.new_page()
            try:
                page.goto(f"{url}/sweeps?sweep={sweep_workspace['sweep']}")
                page.get_by_text("8 finished · of 8 trials").wait_for()
                page.locator(".js-plotly-plot .parcoords").first.wait_for()  # plotly drew the chart
                axes = page.locator(".js-plotly-plot .parcoords .y-axis").count()
                assert axes == 4  # method, optim.lr, train.seed and the result
                assert page.get_by_text("Over seeds").count() == 1
                grids = page.locator('[data-testid="stDataFrame"]')
                grids.nth(1).wait_for()  # the trials and the seed groups: drawn after the chart
                assert grids.count() == 2
                (ROOT / "tests" / "artifacts").mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ROOT / "tests" / "artifacts" / "sweeps.png"), full_page=True)
                # select the first trial's row: the row-selection checkbox column of the glide grid
                first = grids.first
                box = first.bounding_box()
                page.mouse.click(box["x"] + 12, box["y"] + 35 + 18)
                page.wait_for_url("**/live?run=*", timeout=TIMEOUT_MS)
                assert page.url.split("run=")[1] in sweep_workspace["runs"]
                page.get_by_text("latest step").first.wait_for()
            finally:
                ctx.close()
    finally:
        stop_dashboard(proc)
