"""AppTest of the live page: charts and banner from a real run, incremental reads, and runs that went wrong."""

from __future__ import annotations

import os
import time

import numpy as np

from mmviz.store import open_store
from mmviz.ui.readers import LiveBuffer


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_live_page_shows_status_banner_and_charts(filled_workspace, open_page):
    at = open_page(filled_workspace["workspace"], "live", run=filled_workspace["parent"])
    assert at.selectbox(key="live.run").value == filled_workspace["parent"]
    text = _markdown(at)
    assert "finished" in text and "latest step" in text
    banner = [b.value for b in [*at.warning, *at.info] if "unimodal reference" in b.value]
    assert banner, "the banner offers to launch the missing unimodal references"
    assert any(b.label.startswith("Launch unimodal reference runs") for b in at.button)
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # accuracy, loss, gradients, shapley, ... (whatever the probes logged)
    titles = [e.label for e in at.expander]  # each chart in a section that can be collapsed
    assert "Accuracy: fused vs each modality" in titles and "Loss" in titles
    # chart controls
    assert at.slider(key="live.smoothing").value == 0.6
    assert at.radio(key="live.x_axis").options == ["step", "epoch", "wall time"]
    assert at.toggle(key="live.log_y").value is False
    assert at.slider(key="live.interval").value == 2 and at.toggle(key="live.paused").value is False
    at.radio(key="live.x_axis").set_value("epoch").run()
    assert not at.exception


def test_fork_child_shows_its_fork_event(filled_workspace, open_page):
    at = open_page(filled_workspace["workspace"], "live", run=filled_workspace["child"])
    assert "fork of" in "\n".join(c.value for c in at.caption)
    assert not at.exception


def test_live_buffer_reads_only_newer_rows(tmp_path):
    store = open_store(tmp_path)
    rid = store.create_run(config={}, name="r", dataset="d", method="m", fusion="concat", modalities=["a", "b"])
    store.log_batch(rid, [(s, 0.0, time.time(), "train/loss", 1.0 / (s + 1)) for s in range(5)])
    buf = LiveBuffer(str(tmp_path), rid)
    assert buf.update(store) == 5
    held = buf.after_id
    store.log_batch(rid, [(5, 0.0, time.time(), "train/loss", 0.1), (5, 0.0, time.time(), "grad_norm/a", 2.0)])
    assert buf.update(store) == 2 and buf.after_id > held
    assert buf.update(store) == 0
    assert len(buf.frame) == 7 and sorted(buf.frame["key"].unique()) == ["grad_norm/a", "train/loss"]
    store.log_events(rid, [(5, 0.0, time.time(), "reinit", {"modality": "a"})])
    buf.update(store)
    assert list(buf.events["kind"]) == ["reinit"]


def test_a_refresh_reads_only_the_new_rows_and_keeps_the_series_equal_to_a_fresh_read(tmp_path):
    from mmviz.viz import ChartOptions
    from mmviz.viz.series import prepare_series

    store = open_store(tmp_path)
    rid = store.create_run(config={}, name="r", dataset="d", method="m", fusion="concat", modalities=["a", "b"])
    keys = ("train/loss", "grad_norm/a", "grad_norm/b")
    store.log_batch(rid, [(s, s / 100, 1000.0 + s, k, np.sin(s) + s / 500) for s in range(3000) for k in keys])
    buf = LiveBuffer(str(tmp_path), rid)
    assert buf.update(store) == buf.rows_read == 9000
    store.close()
    store = open_store(tmp_path)  # the store reopened (e.g. by another session): the buffer carries on
    store.log_batch(rid, [(3000, 30.0, 4000.0, k, 5.0) for k in keys])
    assert buf.update(store) == 3 and buf.rows_read == 9003  # one step: three rows read, not the run again
    store.log_batch(rid, [(10, 0.1, 1010.0, "train/loss", -7.0), (5, 0.05, 1005.0, "val/acc/a", 0.5)])
    assert buf.update(store) == 2 and buf.rows_read == 9005  # a late row and a new key
    assert buf.last_step == 3000 and buf.points == 9005
    fresh = store.load_metrics(rid)
    options_list = [ChartOptions(max_points=200), ChartOptions(x_axis="wall time", smoothing=0.0, max_points=1000)]
    options_list.append(ChartOptions(x_axis="epoch", smoothing=0.9, max_points=64))
    for options in options_list:  # epoch and wall time: the columns the first read left out, read when needed
        got = buf.chart_series(options, None, 1000.0)
        want = prepare_series(fresh, options, {rid: 1000.0})
        assert [s.key for s in got] == [s.key for s in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g.x, w.x)
            np.testing.assert_array_equal(g.y, w.y)
            np.testing.assert_array_equal(
                g.y_smooth if g.y_smooth is not None else [], w.y_smooth if w.y_smooth is not None else []
            )
    import pandas as pd  # the held rows as a tidy frame (ids, epochs, wall times read when asked for) are the store's

    pd.testing.assert_frame_equal(
        buf.frame.sort_values("id", ignore_index=True), fresh.sort_values("id", ignore_index=True)
    )


def test_failed_lost_and_old_runs_do_not_break_the_page(tmp_path, open_page):
    store = open_store(tmp_path)
    failed = store.create_run(config={}, name="crashed", dataset="d", method="m", fusion="f", modalities=["a"])
    store.set_status(failed, "running", pid=99999999)
    store.log_batch(failed, [(1, 1.0, time.time(), "val/acc/fused", 0.5), (1, 1.0, time.time(), "new_probe/x/a", 3.0)])
    store.set_status(failed, "failed", error="RuntimeError: boom")
    lost = store.create_run(
        config={"train": {"epochs": 5}}, name="killed", dataset="d", method="m", fusion="f", modalities=["a"]
    )
    store.set_status(lost, "running", pid=99999999)  # no such process: shown as lost
    at = open_page(tmp_path, "live", run=failed)
    assert any("boom" in e.value for e in at.error)
    assert any(e.label == "Other signals" for e in at.expander)  # an unknown key still gets a chart
    at.selectbox(key="live.run").select(lost).run()
    assert not at.exception and "lost" in _markdown(at)


def test_two_tabs_share_one_buffer_and_read_only_new_rows(filled_workspace, open_page):
    from mmviz.ui.readers import live_buffer

    ws, run = filled_workspace["workspace"], filled_workspace["parent"]
    first = open_page(ws, "live", run=run)
    buf = live_buffer(str(ws), run)
    held, updates, read = len(buf.frame), buf.updates, buf.rows_read
    assert held == len(open_store(ws).load_metrics(run)) == read
    second = open_page(ws, "live", run=run)  # another browser session on the same run
    assert live_buffer(str(ws), run) is buf and buf.updates == updates + 1 and len(buf.frame) == held
    assert buf.rows_read == read  # the second tab read no row again
    steps = [m.value for at in (first, second) for m in at.markdown if "latest step" in m.value]
    assert len(steps) == 2 and steps[0].split("latest step")[1][:6] == steps[1].split("latest step")[1][:6]


def _chart_steps(at, index: int = 0) -> set[float]:
    """The x values of every trace of the ``index``-th chart (plotly sends arrays base64-encoded)."""
    import base64
    import json

    import numpy as np

    spec = json.loads(at.get("plotly_chart")[index].proto.spec)
    xs = set()
    for trace in spec["data"]:
        x = trace["x"]
        if isinstance(x, dict):
            x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        xs.update(float(v) for v in x)
    return xs


def test_a_refresh_shows_rows_logged_since_the_last_one(tmp_path, open_page):
    store = open_store(tmp_path)
    rid = store.create_run(config={}, name="r", dataset="d", method="m", fusion="f", modalities=["a"])
    store.set_status(rid, "running", pid=os.getpid())
    store.log_batch(rid, [(10, 1.0, time.time(), "val/acc/fused", 0.5), (10, 1.0, time.time(), "val/acc/a", 0.4)])
    at = open_page(tmp_path, "live", run=rid)
    assert _chart_steps(at) == {10.0}
    store.log_batch(rid, [(20, 2.0, time.time(), "val/acc/fused", 0.6)])
    store.heartbeat(rid)
    at.run()
    assert _chart_steps(at) == {10.0, 20.0}
    assert "latest step 20" in _markdown(at)
    store.set_status(rid, "stopped")


def test_the_page_says_which_epochs_await_the_analysis_process(tmp_path, open_page):
    store = open_store(tmp_path)
    rid = store.create_run(config={}, name="r", dataset="d", method="m", fusion="f", modalities=["a"])
    store.set_status(rid, "running", pid=os.getpid())
    store.log_batch(
        rid,
        [(10, 1.0, time.time(), "val/acc/fused", 0.5)],
        artifacts=[(1, "record", "records/epoch_0001.npz", {}), (2, "record", "records/epoch_0002.npz", {})],
    )
    store.log_batch(rid, [], artifacts=[(1, "analysis", "records/epoch_0001.npz", {})])
    at = open_page(tmp_path, "live", run=rid)
    captions = "\n".join(c.value for c in at.caption)
    assert "Analysis pending for epoch 2:" in captions and "epochs 1" not in captions
    store.log_batch(rid, [], artifacts=[(2, "analysis", "records/epoch_0002.npz", {})])
    store.heartbeat(rid)
    at.run()
    assert "Analysis pending" not in "\n".join(c.value for c in at.caption)
    store.set_status(rid, "stopped")
