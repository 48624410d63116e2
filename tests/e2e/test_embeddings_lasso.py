"""End to end in headless Chromium: a lasso (and a box) selection in one embeddings panel fills the table.

Trains a 3-epoch synthetic run with a snapshot every epoch, starts ``streamlit run app.py`` on a free localhost port
with that workspace, and drags the mouse over a plot with plotly's lasso and box-select tools, as a user would.
A screenshot of the page with the selection goes to ``tests/artifacts/embeddings.png``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmviz.testing import CHROMIUM, ROOT, launch_chromium, start_dashboard, stop_dashboard

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "tests" / "artifacts"
TIMEOUT_MS = 60_000
QUICK_RUN = [
    "--dataset", "synthetic", "--set", "data.n_train=300", "--epochs", "3", "--name", "lasso-test",
    "--set", "probes.snapshots.every_n_epochs=1", "--set", "probes.snapshots.max_overhead=0",
    *(f"--set=probes.{p}.enabled=false" for p in ("shapley", "grad_conflict", "separability", "unimodal_acc")),
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dashboard on a workspace holding one finished run: ``(url, run_id)``."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium ('make browser' installs it).")
    tmp = tmp_path_factory.mktemp("e2e-embeddings")
    ws = tmp / "ws"
    argv = [sys.executable, "-m", "mmviz", "train", "--workspace", str(ws), *QUICK_RUN]
    run_id = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout.split()[0]
    # no UMAP warm-up: this test selects on the PCA view and should not compete with numba for the CPU
    log = tmp / "streamlit.log"
    proc, url = start_dashboard(ws, log, env={"MMVIZ_PROJECTION_WARM": "0"})
    yield url, run_id
    stop_dashboard(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        # a fresh profile folder (Playwright passes it to chromium as --user-data-dir)
        ctx = launch_chromium(pw, profile, viewport={"width": 1500, "height": 1400})
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx.new_page()
        ctx.close()


def settle(page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=TIMEOUT_MS)


def drag(page, plot, fractions: list[tuple[float, float]]) -> None:
    """Press the mouse at the first point of ``fractions`` (of the plot area), move through the others, release."""
    box = plot.locator(".nsewdrag").first.bounding_box()
    points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in fractions]
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def opacities(plot) -> list[str]:
    return plot.evaluate("el => Array.from(el.querySelectorAll('path.point')).map(p => p.style.opacity || '1')")


def selected_count(page) -> int:
    text = page.get_by_text(re.compile(r"\d+ samples selected")).first.inner_text(timeout=TIMEOUT_MS)
    return int(re.search(r"(\d+) samples selected", text).group(1))


def test_lasso_in_one_panel_fills_the_table_and_highlights_the_others(server, page):
    url, run_id = server
    page.goto(url + "/")  # the entry script first, so st.navigation owns the pages
    page.get_by_text("Runs").first.wait_for()
    page.goto(f"{url}/embeddings?run={run_id}&projection=pca")
    plots = page.locator(".js-plotly-plot")
    plots.nth(2).locator(".nsewdrag").wait_for()
    settle(page)
    assert plots.count() == 3
    assert page.get_by_text("Lasso or box-select points").count() == 1
    assert page.locator('[data-testid="stDataFrame"]').count() == 0

    # lasso (the panels' default drag mode) around most of panel 'a'
    drag(page, plots.nth(0), [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9), (0.1, 0.12)])
    page.locator('[data-testid="stDataFrame"]').wait_for()
    settle(page)
    n = selected_count(page)
    assert n > 0
    assert page.get_by_text("in panel 'a'").count() == 1
    for i in (1, 2):  # the same samples are highlighted in the other panels, the rest dimmed
        values = opacities(plots.nth(i))
        assert sum(v == "1" for v in values) == n, values
        assert sum(v == "0.12" for v in values) == len(values) - n
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "embeddings.png"), full_page=True)

    # box select (from the toolbar) over the left half of panel 'b' replaces the selection
    plots.nth(1).hover()
    plots.nth(1).locator('[data-val="select"]').first.click()
    drag(page, plots.nth(1), [(0.02, 0.02), (0.5, 0.98)])
    page.get_by_text("in panel 'b'").wait_for()
    settle(page)
    assert 0 < selected_count(page)
    page.get_by_role("button", name="Clear selection").click()
    page.get_by_text("Lasso or box-select points").wait_for()


def test_exports_download_the_coordinates_and_the_figure(server, page, tmp_path):
    url, run_id = server
    page.goto(f"{url}/embeddings?run={run_id}&projection=pca")
    page.locator(".js-plotly-plot").nth(2).locator(".nsewdrag").wait_for()
    settle(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Coordinates (CSV)").click()
    csv = tmp_path / "coords.csv"
    info.value.save_as(csv)
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("view,x,y,index,label,pred,correct,pred_fused")
    views = {line.split(",")[0] for line in lines[1:]}
    assert views == {"a", "b", "fused"} and (len(lines) - 1) % 3 == 0
    assert info.value.suggested_filename == f"{run_id}_epoch0003_pca.csv"
    with page.expect_download() as info:
        page.get_by_role("button", name="Figure (HTML)").click()
    html = tmp_path / "figure.html"
    info.value.save_as(html)
    assert "Plotly.newPlot" in html.read_text() and html.stat().st_size > 1_000_000  # plotly.js inlined: offline
