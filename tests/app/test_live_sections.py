"""Live page friction (issue 11): collapsible sections, and a fork's charts with its parent's history (a toggle)."""

from __future__ import annotations

import base64
import json
import time

import numpy as np

from mmviz.store import open_store


def chart_xs(at, title_part: str = "") -> set[float]:
    """Every x value of the live charts (plotly sends arrays base64-encoded)."""
    xs: set[float] = set()
    for chart in at.get("plotly_chart"):
        for trace in json.loads(chart.proto.spec)["data"]:
            x = trace.get("x", [])
            if isinstance(x, dict):
                x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])
            xs.update(float(v) for v in x)
    return xs


def make_fork(tmp_path):
    """A parent with 3 epochs of val accuracy (steps 10, 20, 30) and its fork at epoch 2 with one more (step 40)."""
    store = open_store(tmp_path)
    kw = {"dataset": "d", "method": "baseline", "fusion": "concat", "modalities": ["a", "b"]}
    parent = store.create_run(config={}, name="parent", **kw)
    now = time.time()
    store.log_batch(parent, [(10 * e, float(e), now, "val/acc/fused", 0.5 + 0.1 * e) for e in (1, 2, 3)])
    store.set_status(parent, "finished")
    child = store.create_run(config={}, name="child", parent_run_id=parent, fork_epoch=2, **kw)
    store.log_batch(child, [(40, 3.0, now, "val/acc/fused", 0.95)])
    store.set_status(child, "finished")
    return parent, child


def test_sections_can_be_collapsed(tmp_path, open_page):
    _, child = make_fork(tmp_path)
    at = open_page(tmp_path, "live", run=child)
    assert [e.label for e in at.expander] == ["Accuracy: fused vs each modality"]
    assert at.expander[0].proto.expanded  # open at first; clicking its title collapses it


def test_a_fork_can_show_its_parents_history_before_the_fork(tmp_path, open_page):
    _, child = make_fork(tmp_path)
    at = open_page(tmp_path, "live", run=child)
    assert chart_xs(at) == {40.0}  # the fork's own rows only
    toggle = at.toggle(key="live.with_parent")
    assert "before the fork (epochs 1–2)" in toggle.label
    toggle.set_value(True).run()
    assert not at.exception
    assert chart_xs(at) == {10.0, 20.0, 40.0}  # the parent up to the fork epoch (not its epoch 3), then the fork
