"""Server-side render time of the Runs page with 10, 200 and 1,000 finished runs, side by side.

Fills temporary workspaces with finished 30-epoch runs in the shape a real run logs (per-step loss, per-epoch
accuracies and the imbalance index), then runs the real Runs page script (``pages/runs.py`` through
Streamlit's AppTest, in this process) and times a page view:

- cold: a server that has not read this workspace yet (every Streamlit cache cleared first);
- warm: the next view (another browser session, or a rerun) while the server's caches hold what it read.

Each is the median of several renders. Budget (issue 16): the warm view with 1,000 runs <= 0.5 s; the cold
view is printed alongside, and both are printed for 10 / 200 / 1,000 runs so their growth can be read off.
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
    """``n`` finished 30-epoch runs with per-step loss and per-epoch accuracies and imbalance index."""
    import numpy as np

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
            tags=["bench"],
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


def render_times(workspace: Path, repeats: int) -> tuple[float, float]:
    """Median (cold, warm) seconds of one Runs page render over ``workspace``."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["MMVIZ_WORKSPACE"] = str(workspace)
    cold, warm = [], []
    for _ in range(repeats):
        st.cache_data.clear()
        st.cache_resource.clear()
        for bucket in (cold, warm):
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
            t = time.perf_counter()
            at.run()
            bucket.append(time.perf_counter() - t)
            assert not at.exception, at.exception
            assert len(at.dataframe[0].value) > 0
    return statistics.median(cold), statistics.median(warm)


def main() -> int:
    from mmviz.store import RunStore

    with tempfile.TemporaryDirectory(prefix="mmviz-runs-page-") as tmp:
        workspaces = {}
        for n in SIZES:
            ws = Path(tmp) / f"ws{n}"
            with RunStore(ws) as store:
                fill(store, n)
            workspaces[n] = ws
        render_times(workspaces[SIZES[0]], 1)  # imports and first-run costs out of the way
        results = {n: render_times(ws, 3) for n, ws in workspaces.items()}
    print(f"{'runs':>6} {'cold s':>8} {'warm s':>8}")
    for n, (cold, warm) in results.items():
        print(f"{n:>6} {cold:>8.3f} {warm:>8.3f}")
    load = os.getloadavg()[0]
    worst = results[SIZES[-1]][1]
    print(f"Runs page, {SIZES[-1]} finished runs, warm view: {worst:.3f} s (budget <= {BUDGET_S} s; load {load:.1f})")
    return 0 if worst <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
