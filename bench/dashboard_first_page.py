"""The dashboard's first page: seconds from a fresh ``streamlit run app.py`` to the runs page drawn in a browser.

Starts the server on a free localhost port with a temporary workspace holding one finished run, opens it in headless
Chromium (Debian's ``/usr/bin/chromium`` through Playwright) and times, for ``REPEATS`` fresh servers: server start
until ``/_stcore/health`` answers, and the first page load until its launch form's "Launch run" button is drawn
(the runs table, the demo button and the registries' forms included). It also checks the server process never
mapped torch's library (``/proc/<pid>/maps``): pages list methods, datasets and probes from their torch-free
declarations. For comparison it then times one more server that imports torch at start (a ``sitecustomize``
module on its ``PYTHONPATH``), i.e. the import every first page paid before, and prints the ratio. Budget: median
first page <= 3 s and no torch in the server.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 3.0
REPEATS = 3


def torch_mapped(pid: int) -> bool:
    """Whether the process has torch's shared library mapped (it imported torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def first_page(context, url: str) -> float:
    """Seconds from navigating to ``url`` until the launch form's button is visible."""
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("button", name="Launch run").wait_for(timeout=120_000)
    took = time.perf_counter() - start
    page.close()
    return took


def main() -> int:
    from mmviz.testing import CHROMIUM, launch_chromium, start_dashboard, stop_dashboard

    if not Path(CHROMIUM).exists():
        print(f"Debian's chromium is not installed at {CHROMIUM} ('make browser' installs it).")
        return 1
    from playwright.sync_api import sync_playwright

    from mmviz.launcher import prepare_run
    from mmviz.store import open_store
    from mmviz.training.config import build_run_config
    from mmviz.training.runner import run_training

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        with open_store(ws) as store:
            cfg = build_run_config("synthetic", "baseline", ["data.n_train=200"], epochs=2)
            run_training(store, prepare_run(store, cfg))
        starts, pages, with_torch = [], [], []
        with sync_playwright() as pw:
            for i in range(REPEATS):
                t0 = time.perf_counter()
                proc, url = start_dashboard(ws, Path(tmp) / f"server{i}.log")
                try:
                    started = time.perf_counter() - t0
                    context = launch_chromium(pw, Path(tmp) / f"profile{i}")
                    try:
                        took = first_page(context, url)
                    finally:
                        context.close()
                    if torch_mapped(proc.pid):
                        print("The dashboard server imported torch.")
                        return 1
                finally:
                    stop_dashboard(proc)
                starts.append(started)
                pages.append(took)
                print(f"repeat {i + 1}: server start {started:.2f} s, first page {took:.2f} s (no torch in the server)")
            # the same, with torch imported into the server first (what every page paid before)
            pre = Path(tmp) / "preload"
            pre.mkdir()
            (pre / "sitecustomize.py").write_text("import torch\n")
            t0 = time.perf_counter()
            proc, url = start_dashboard(ws, Path(tmp) / "torch.log", env={"PYTHONPATH": f"{pre}:{ROOT}"})
            torch_start = time.perf_counter() - t0
            try:
                context = launch_chromium(pw, Path(tmp) / "profile-torch")
                try:
                    with_torch.append(first_page(context, url))
                finally:
                    context.close()
                preloaded = torch_mapped(proc.pid)
            finally:
                stop_dashboard(proc)
    med = statistics.median(pages)
    print(f"server start median {statistics.median(starts):.2f} s; first page median {med:.2f} s over {REPEATS}")
    if preloaded:
        print(
            f"with torch imported in the server: start {torch_start:.2f} s, first page {with_torch[0]:.2f} s; "
            f"start + first page {(torch_start + with_torch[0]) / (statistics.median(starts) + med):.2f}x ours"
        )
    ok = med <= BUDGET_S
    print(f"dashboard first page {med:.2f} s without torch (budget <= {BUDGET_S:.1f} s): {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
