"""Take the README's screenshots of the Live, Compare and Embeddings pages with headless chromium.

Usage: ``.venv/bin/python docs/screenshots.py WORKSPACE RUN_ID [FORK_ID]`` -- a workspace holding a finished run
(e.g. ``python -m mmviz train --dataset mfeat --name mfeat-baseline``) and, for Compare, a fork of it. Writes
``docs/screenshot-live.png``, ``docs/screenshot-compare.png`` and ``docs/screenshot-embeddings.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmviz.testing import launch_chromium, start_dashboard, stop_dashboard  # noqa: E402

TIMEOUT_MS = 180_000


def wait_for_plots(page, n: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n", arg=n, timeout=TIMEOUT_MS
    )
    page.wait_for_timeout(3000)


def main(workspace: str, run_id: str, fork_id: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    proc, url = start_dashboard(workspace, Path(workspace) / "screenshots-streamlit.log", timeout=180)
    try:
        with sync_playwright() as pw:
            ctx = launch_chromium(pw, Path(workspace) / "chromium-profile", viewport={"width": 1500, "height": 1700})
            page = ctx.new_page()
            page.goto(f"{url}/live?run={fork_id or run_id}")
            wait_for_plots(page, 6)
            if fork_id:
                page.get_by_text("Show the parent's history").click()
                page.wait_for_timeout(4000)
            page.screenshot(path=str(ROOT / "docs" / "screenshot-live.png"))
            if fork_id:
                page.goto(f"{url}/compare?family={run_id}")
                wait_for_plots(page, 1)
                page.screenshot(path=str(ROOT / "docs" / "screenshot-compare.png"))
            page.set_viewport_size({"width": 1500, "height": 1250})
            page.goto(f"{url}/embeddings?run={run_id}")
            page.wait_for_function(  # the worker's UMAP has replaced PCA in every panel
                "() => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
                ".filter(c => c.innerText.trim() === 'UMAP').length === 3",
                timeout=600_000,
            )
            wait_for_plots(page, 3)
            page.screenshot(path=str(ROOT / "docs" / "screenshot-embeddings.png"))
            ctx.close()
    finally:
        stop_dashboard(proc)


if __name__ == "__main__":
    main(*sys.argv[1:])
