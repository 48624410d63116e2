"""Figure builders: panels, facets, labels, raw + smoothed lines, event markers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mmviz.viz import ChartOptions, assign_panels, metric_groups, panel_by_name, plot_compare, plot_panel


def _rows(
    run="r",
    keys=(
        "val/acc/fused",
        "val/acc/a",
        "val/acc_probe/a",
        "val/acc/b",
        "grad_norm/a",
        "grad_norm_pre/a",
        "sep/purity/a",
        "sep/fisher/b",
        "brand_new/thing/a",
        "test/acc/fused",
    ),
    n=40,
):
    from mmviz.store.keys import parse_key

    rows = []
    for k, key in enumerate(keys):
        split, quantity, modality = parse_key(key, ["a", "b"])
        for i in range(n):
            rows.append((run, k * n + i, i * 10, i / 4, 100.0 + i, key, split, quantity, modality, 0.5 + 0.01 * i))
    cols = ["run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"]
    return pd.DataFrame(rows, columns=cols)


def valid(fig: go.Figure) -> go.Figure:
    """Rebuild with plotly's validation on (the builders skip it for speed): raises on any bad property."""
    return go.Figure(fig.to_dict())


def test_keys_are_grouped_into_panels_and_unknown_ones_are_not_lost():
    panels = assign_panels(metric_groups(_rows()))
    assert panels["accuracy"] == [("val", "acc"), ("val", "acc_probe")]
    assert panels["gradients"] == [(None, "grad_norm"), (None, "grad_norm_pre")]
    assert panels["separability"] == [(None, "sep/fisher"), (None, "sep/purity")]
    assert panels["other"] == [(None, "brand_new/thing")]
    assert all(g[0] != "test" for groups in panels.values() for g in groups)


def test_accuracy_panel_labels_each_measurement_and_keeps_raw_faint():
    frame = _rows()
    events = pd.DataFrame(
        [
            {
                "id": 1,
                "run_id": "r",
                "step": 100,
                "epoch": 2.5,
                "wall_time": 110.0,
                "kind": "reinit",
                "payload": {"modality": "a"},
            }
        ]
    )
    fig = plot_panel(
        frame,
        panel_by_name("accuracy"),
        [("val", "acc"), ("val", "acc_probe")],
        ["a", "b"],
        ChartOptions(smoothing=0.6),
        events,
        {"r": 100.0},
    )
    assert isinstance(valid(fig), go.Figure)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["fused", "a", "b"]  # colour = modality; the facet says how it was measured
    assert [a.text for a in fig.layout.annotations][:2] == ["<b>val · head split</b>", "<b>val · linear probe</b>"]
    raw = [t for t in fig.data if t.name.endswith("(raw)")]
    assert raw and all(t.opacity == 0.25 and t.hoverinfo == "skip" for t in raw)
    assert [s.x0 for s in fig.layout.shapes] == [100, 100]  # on each facet
    assert fig.layout.annotations[-1].text == "reinit"


def test_quantity_facets_log_y_and_event_on_every_facet():
    frame = _rows()
    events = pd.DataFrame(
        [{"id": 1, "run_id": "r", "step": 50, "epoch": 1.0, "wall_time": 105.0, "kind": "fork", "payload": {}}]
    )
    fig = plot_panel(
        frame,
        panel_by_name("separability"),
        [(None, "sep/fisher"), (None, "sep/purity")],
        ["a", "b"],
        ChartOptions(x_axis="epoch", log_y=True),
        events,
    )
    valid(fig)
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert [s.xref for s in fig.layout.shapes] == ["x", "x2"] and fig.layout.shapes[0].x0 == 1.0
    assert [a.text for a in fig.layout.annotations][:2] == ["<b>fisher</b>", "<b>purity</b>"]


def test_long_series_are_downsampled_in_the_figure():
    frame = _rows(keys=("train/loss",), n=50_000)
    fig = plot_panel(frame, panel_by_name("loss"), [("train", "loss")], [], ChartOptions(smoothing=0, max_points=500))
    (trace,) = fig.data
    assert len(trace.x) <= 500 and trace.x[-1] == 499_990


def test_compare_has_one_facet_per_modality_and_one_colour_per_run():
    frame = pd.concat([_rows("p"), _rows("c")])
    runs = [
        {"run_id": "p", "name": "parent", "modalities": ["a", "b"]},
        {"run_id": "c", "name": "child", "modalities": ["a", "b"]},
    ]
    fig = plot_compare(frame, "val", "acc", runs, ChartOptions(smoothing=0))
    valid(fig)
    facets = [a.text for a in fig.layout.annotations]
    assert facets == ["<b>fused</b>", "<b>a</b>", "<b>b</b>"]
    legend = [(t.name, t.line.color) for t in fig.data if t.showlegend]
    assert [n for n, _ in legend] == ["parent", "child"] and legend[0][1] != legend[1][1]
    assert len(fig.data) == 6 and np.all(np.diff(fig.data[0].x) > 0)
