"""User text in plotly charts is drawn as literal text (issue 12 item 2, the charts' side): a run name or a swept
value holding plotly's HTML subset (``<b>``, ``<a href>``, ``<br>``) or a hover-template field (``%{y}``) shows
as typed in the legend, the hover label and the parallel-coordinates ticks, and no link is made.

The figures are the ones the Compare and Sweeps pages draw, loaded with plotly.js in headless Chromium.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mmviz.testing import CHROMIUM, launch_chromium
from mmviz.viz import ChartOptions, plot_compare
from mmviz.viz.sweeps import plot_sweep_parallel

pytestmark = pytest.mark.e2e

NAME = '<b>bold</b> <a href="http://127.0.0.1:9/x">link</a><br>%{y} & 5%'


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium ('make browser' installs it).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"))
        yield ctx.new_page()
        ctx.close()


def show(page, fig, folder: Path) -> None:
    html = folder / "fig.html"
    html.write_text(fig.to_html(include_plotlyjs=True, full_html=True, div_id="fig"))
    page.goto(html.as_uri())
    page.wait_for_function("() => document.getElementById('fig')?._fullLayout !== undefined")


def test_a_run_name_is_literal_in_the_compare_legend_and_hover(page, tmp_path):
    rows = [("r1", i, 10 * i, i, 0.0, "val/acc/fused", "val", "acc", "fused", v) for i, v in enumerate([0.5, 0.7], 1)]
    cols = ["run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"]
    fig = plot_compare(pd.DataFrame(rows, columns=cols), "val", "acc", [{"run_id": "r1", "name": NAME,
                       "modalities": ["a", "b"]}], ChartOptions(smoothing=0))  # fmt: skip
    show(page, fig, tmp_path)
    legend = page.evaluate("() => [...document.querySelectorAll('.legendtext')].map(t => t.textContent)")
    assert legend == [NAME], legend
    assert page.evaluate("() => document.querySelectorAll('svg a').length") == 0
    page.evaluate("() => Plotly.Fx.hover('fig', [{curveNumber: 0, pointNumber: 1}])")
    hover = page.evaluate("() => [...document.querySelectorAll('.hoverlayer .hovertext')].map(t => t.textContent)")
    assert hover == [f"{NAME}: 70.00%"], hover


def test_swept_values_and_labels_are_literal_in_the_parallel_coordinates(page, tmp_path):
    table = pd.DataFrame({"train.tag": [NAME, "plain"], NAME: [0.5, 0.7]})  # a value, and a label
    show(page, plot_sweep_parallel(table, ["train.tag"], NAME), tmp_path)
    ticks = page.evaluate("() => [...document.querySelectorAll('.tick text')].map(t => t.textContent)")
    assert NAME in ticks and "plain" in ticks, ticks
    labels = page.evaluate("() => [...document.querySelectorAll('.axis-title')].map(t => t.textContent)")
    assert NAME in labels, labels
    assert page.evaluate("() => document.querySelectorAll('svg a').length") == 0
