"""Server-side render time of the Runs page with 10, 200 and 1,000 finished runs, side by side, and of every page
with a run selector (Live, Compare, Embeddings, Sweeps) with as many runs.

Fills temporary workspaces with finished 30-epoch runs in the shape a real run logs (per-step loss, per-epoch
accuracies and the imbalance index), then runs the real dashboard (``app.py`` and the page's script, through
Streamlit's AppTest, in this process) and times a page view:

- cold: a server that has not read this workspace yet (every Streamlit cache cleared first);
- warm: the next view (another browser session, or a rerun) while the server's caches hold what it read.

Each figure is the median of ``--repeats`` renders, taken in turns over the workspace sizes (so a burst of load
touches every size alike). A real server discovers Streamlit's installed components once at start-up; AppTest
does it once per test app, so the discovery is done once here and handed to every view (not timed). Budget
(issue 16): the warm Runs page with 1,000 runs <= 0.5 s; the other figures are printed alongside so their growth
can be read off.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 0.5
SIZES = (10, 200, 1000)
EPOCHS = 30
STEPS_PER_EPOCH = 10
METHODS = ("baseline", "ogm_ge", "agm", "pmr")


def fill(store, n: int) -> None:
    """``n`` finished 30-epoch runs with per-step loss and per-epoch accuracies and imbalance index, as trials of
    sweeps of up to 100 runs each (so the Sweeps page has sweeps to offer)."""
    import numpy as np

    from mmviz.sweep import SWEEP_TAG, sweep_tag

    rng = np.random.default_rng(0)
    for i in range(n):
        method = METHODS[i % len(METHODS)]
        rid = store.create_run(
            config={"dataset": "synthetic", "method": method, "train": {"epochs": EPOCHS, "seed": i}, "data": {}},
            name=f"run-{i:04d}",
            dataset="synthetic",
            method=method,
            fusion="concat",
            modalities=["a", "b"],
            tags=["bench", SWEEP_TAG, sweep_tag(f"20260101-000000-{i // 100:04x}")],
        )
        store.set_status(rid, "running", pid=os.getpid())
        rows = []
        for e in range(1, EPOCHS + 1):
            for s in range(STEPS_PER_EPOCH):
                step = (e - 1) * STEPS_PER_EPOCH + s
                rows.append((step, e - 1 + s / STEPS_PER_EPOCH, float(step), "train/loss", float(rng.random())))
            step = e * STEPS_PER_EPOCH - 1
            for key in ("val/acc/fused", "val/acc/a", "val/acc/b", "imbalance/index", "val/loss"):
                rows.append((step, float(e), float(step), key, float(rng.random())))
        store.log_batch(rid, rows)
        store.update_run(rid, epochs_done=EPOCHS, best_val_acc=float(rng.random()), best_epoch=int(rng.integers(1, 31)))
        store.set_status(rid, "finished")


PAGES = ("runs", "live", "compare", "embeddings", "sweeps")
_COMPONENTS: list = []  # the component registry of the first test app, handed to the next ones


def view_seconds(workspace: Path, page: str) -> float:
    """Seconds of one view of ``page`` (a new browser session) over ``workspace``."""
    from streamlit.testing.v1 import AppTest

    os.environ["MMVIZ_WORKSPACE"] = str(workspace)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if _COMPONENTS and hasattr(at, "_bidi_component_manager"):
        at._bidi_component_manager = _COMPONENTS[0]
    if page != "runs":
        at.switch_page(f"pages/{page}.py")
    t = time.perf_counter()
    at.run()
    took = time.perf_counter() - t
    if not _COMPONENTS and getattr(at, "_bidi_component_manager", None) is not None:
        _COMPONENTS.append(at._bidi_component_manager)
    assert not at.exception, at.exception
    if page == "runs":
        assert len(at.dataframe[0].value) > 0
    else:
        assert at.selectbox or at.multiselect, f"the {page} page shows no run selector"
    return took


def render_times(workspaces: dict[int, Path], pages: tuple[str, ...], repeats: int) -> dict:
    """``{(page, n): (median cold s, median warm s)}``, the sizes taken in turns ``repeats`` times."""
    import streamlit as st

    times: dict[tuple[str, int], tuple[list, list]] = {(p, n): ([], []) for p in pages for n in workspaces}
    for _ in range(repeats):
        for page in pages:
            for n, ws in workspaces.items():
                st.cache_data.clear()
                st.cache_resource.clear()
                cold, warm = times[(page, n)]
                cold.append(view_seconds(ws, page))
                warm.append(view_seconds(ws, page))
    return {k: (statistics.median(c), statistics.median(w)) for k, (c, w) in times.items()}


def main() -> int:
    import argparse

    from mmviz.store import RunStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="renders per figure (the median is printed)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="numbers of runs, comma-separated")
    parser.add_argument("--pages", default=",".join(PAGES), help=f"pages to time, comma-separated ({', '.join(PAGES)})")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    pages = tuple(p for p in args.pages.split(",") if p)
    unknown = sorted(set(pages) - set(PAGES))
    if unknown or args.repeats < 1 or min(sizes) < 1:
        parser.error(f"--pages takes {', '.join(PAGES)}; --repeats and --sizes take positive numbers.")
    with tempfile.TemporaryDirectory(prefix="mmviz-runs-page-") as tmp:
        workspaces = {}
        for n in sizes:
            ws = Path(tmp) / f"ws{n}"
            with RunStore(ws) as store:
                fill(store, n)
            workspaces[n] = ws
        for page in pages:  # imports and first-run costs out of the way
            view_seconds(workspaces[sizes[0]], page)
        results = render_times(workspaces, pages, args.repeats)
    load = os.getloadavg()[0]
    print(f"{'page':>11} {'runs':>6} {'cold s':>8} {'warm s':>8} {'warm / fewest':>14}")
    for page in pages:
        base = results[(page, sizes[0])][1]
        for n in sizes:
            cold, warm = results[(page, n)]
            print(f"{page:>11} {n:>6} {cold:>8.3f} {warm:>8.3f} {warm / base:>14.2f}")
    worst = results[("runs", sizes[-1])][1] if "runs" in pages else float("nan")
    print(f"Runs page, {sizes[-1]} finished runs, warm view: {worst:.3f} s (budget <= {BUDGET_S} s; "
          f"median of {args.repeats}; load {load:.1f})")  # fmt: skip
    return 0 if "runs" not in pages or worst <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
