"""Server-side render time of the live page for a long run: 100,000 and 1,000,000 stored metric points.

Fills a temporary workspace with one run in the shape a real run logs (per-step gradient norms, scores and loss;
per-epoch accuracies by four measures, Shapley shares, separability, prototypes), ``--points`` rows of it with
``points // 1000`` steps per epoch (1,000,000 points: about 100 epochs x 1,000 steps, an ordinary GPU run), then
runs the real live page script (``pages/live.py`` through Streamlit's AppTest, in this process) and times:

- first view: the server has not read this run yet (every row comes from the store, every chart is built);
- new tab: another browser session opens the run while the server holds its series (the shared live buffer);
- refresh: the next rerun after the trainer logged one more step (reads only the new rows).

Each is the median of ``--repeats`` rounds, the three measured interleaved in each round. Streamlit serialises
each figure to JSON inside ``st.plotly_chart``, so that is included; the browser's drawing is not (see
``bench/live_latency.py``). Budgets (issue 15): new tab and refresh <= 0.3 s, first view <= 1.5 s, at every size.
Each measure is printed against its budget, and the refresh's cost per size shows whether it grows with the run.

    .venv/bin/python bench/live_render.py                     # 100,000 and 1,000,000 points, 5 rounds
    .venv/bin/python bench/live_render.py --points 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGETS_S = {"first view": 1.5, "new tab": 0.3, "refresh": 0.3}
SIZES = (100_000, 1_000_000)
MODS = ("a", "b")
STEP_KEYS = ["train/loss"] + [f"{q}/{m}" for q in ("grad_norm", "grad_norm_pre", "score", "ratio") for m in MODS]
EPOCH_KEYS = (
    ["val/acc/fused", "val/loss", "train/acc/fused", "imbalance/index", "imbalance/dominant", "lr", "sys/epoch_s"]
    + [f"val/{q}/{m}" for q in ("acc", "acc_ncm", "acc_probe", "shapley") for m in MODS]
    + [
        f"{q}/{m}"
        for q in (
            "imbalance/share",
            "sep/purity",
            "sep/silhouette",
            "sep/fisher",
            "proto/intra",
            "proto/inter",
            "proto/margin",
            "proto/drift",
            "param_dist",
            "conflict/cos",
        )
        for m in MODS
    ]
)


def fill(store, points: int, steps_per_epoch: int) -> tuple[str, int, int]:
    """A running run with about ``points`` metric rows; returns (run id, rows, last step)."""
    import numpy as np

    rid = store.create_run(
        config={"train": {"epochs": 1000}, "data": {}},
        name="bench",
        dataset="synthetic",
        method="baseline",
        fusion="concat",
        modalities=list(MODS),
    )
    store.set_status(rid, "running", pid=os.getpid())
    rng = np.random.default_rng(0)
    steps = 0
    while steps * len(STEP_KEYS) + steps // steps_per_epoch * len(EPOCH_KEYS) < points:
        steps += 1
    rows, t0 = [], time.time() - steps * 0.01
    for step in range(steps):
        epoch = step / steps_per_epoch
        rows += [(step, epoch, t0 + step * 0.01, k, float(rng.random())) for k in STEP_KEYS]
        if (step + 1) % steps_per_epoch == 0:
            rows += [
                (step, float((step + 1) // steps_per_epoch), t0 + step * 0.01, k, float(rng.random()))
                for k in EPOCH_KEYS
            ]
        if len(rows) >= 20_000:
            store.log_batch(rid, rows)
            rows = []
    store.log_batch(rid, rows)
    store.log_events(rid, [(steps // 3, 10.0, t0, "reinit", {"modality": "a"})])
    return rid, sum(map(len, store.load_metric_arrays(rid).values())), steps - 1


def measure(points: int, repeats: int) -> dict[str, float]:
    """Median seconds of first view, new tab and refresh for one run of ``points`` rows (see the module docstring)."""
    from streamlit.testing.v1 import AppTest

    from mmviz.store import open_store
    from mmviz.ui.live import panel_figure
    from mmviz.ui.readers import fork_buffer, live_buffer

    steps_per_epoch = max(1, points // 1000)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MMVIZ_WORKSPACE"] = tmp
        store = open_store(tmp)
        t = time.perf_counter()
        rid, n, step = fill(store, points, steps_per_epoch)
        print(
            f"run {rid}: {n:,} stored points, {len(STEP_KEYS) + len(EPOCH_KEYS)} keys, {step + 1:,} steps "
            f"({steps_per_epoch:,} per epoch), filled in {time.perf_counter() - t:.0f} s"
        )

        components = None

        def page() -> AppTest:
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
            # A server scans the installed packages for components once; each AppTest would scan again on its first
            # run (0.3 s of CPU here), which no browser tab pays. The tabs share the first one's scan.
            at._bidi_component_manager = components
            at.query_params["run"] = rid
            return at.switch_page("pages/live.py")

        live_buffer.clear()
        panel_figure.clear()
        warm = page().run()  # imports and caches, not timed
        assert not warm.exception, warm.exception
        components = warm._bidi_component_manager
        times: dict[str, list[float]] = {"first view": [], "new tab": [], "refresh": []}
        cpu: dict[str, list[float]] = {name: [] for name in times}

        def timed(name: str, at: AppTest) -> None:
            t, c = time.perf_counter(), time.process_time()
            at.run()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)

        charts, read = 0, 0
        for _ in range(repeats):
            live_buffer.clear()  # the server has not read this run yet: every row comes from the store
            fork_buffer.clear()
            panel_figure.clear()  # nor drawn its charts
            timed("first view", page())
            at = page()  # another browser tab on the same run: the server holds its series already
            timed("new tab", at)
            assert not at.exception, at.exception
            charts = len(at.get("plotly_chart"))
            for _ in range(2):
                step += 1
                store.log_batch(rid, [(step, step / steps_per_epoch, time.time(), k, 0.5) for k in STEP_KEYS])
                store.heartbeat(rid)
                before = live_buffer(tmp, rid).rows_read
                timed("refresh", at)
                read = live_buffer(tmp, rid).rows_read - before
                assert f"latest step {step}" in "".join(m.value for m in at.markdown)
        store.set_status(rid, "stopped")
        store.close()
    print(f"  charts on the page: {charts}; rows read by a refresh after one step: {read} (of {n:,})")
    print("  cpu seconds (median): " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in cpu.items()))
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=list(SIZES), help="stored points per run (sizes)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per size; each measure is their median")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.points) < 1000:
        parser.error(f"--repeats must be >= 1 and --points >= 1000; got {args.repeats} and {args.points}.")
    from streamlit.logger import set_log_level
    from streamlit.testing.v1 import AppTest  # noqa: F401 (its loggers exist before the level is set)

    set_log_level("error")  # AppTest outside a server warns about its missing runtime
    results = {points: measure(points, args.repeats) for points in args.points}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {args.repeats} rounds")
    ok = True
    for points, figures in results.items():
        for name, seconds in figures.items():
            within = seconds <= BUDGETS_S[name]
            ok &= within
            print(
                f"{points:>9,} points  {name:<10} {seconds:6.3f} s  budget <= {BUDGETS_S[name]} s  {'ok' if within else 'OVER'}"
            )
    if len(results) > 1:
        small, large = min(results), max(results)
        ratio = results[large]["refresh"] / results[small]["refresh"]
        print(
            f"refresh at {large:,} vs {small:,} points: {ratio:.2f}x (proportional to the run would be {large / small:.0f}x)"
        )
    worst = max(f[name] / BUDGETS_S[name] for f in results.values() for name in f)
    print(f"live page render, worst measure against its budget: {worst:.2f} of budget ({'ok' if ok else 'over'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
