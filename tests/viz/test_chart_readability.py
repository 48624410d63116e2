"""Charts that do not mislead (issue 11, defects 4 and 8): constants, single points, sparse probes, units, %."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mmviz.store.keys import parse_key
from mmviz.viz import ChartOptions, assign_panels, metric_groups, panel_by_name, plot_compare, plot_panel

MODS = ["pix", "fou"]


def rows(series: dict[str, list[tuple[int, float, float]]], run: str = "r") -> pd.DataFrame:
    """Tidy rows from ``{key: [(step, epoch, value), ...]}``."""
    out, i = [], 0
    for key, points in series.items():
        split, quantity, modality = parse_key(key, MODS)
        for step, epoch, value in points:
            i += 1
            out.append((run, i, step, epoch, 1000.0 + step, key, split, quantity, modality, value))
    cols = ["run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"]
    return pd.DataFrame(out, columns=cols)


def figure(frame: pd.DataFrame, panel: str, options: ChartOptions | None = None) -> go.Figure:
    groups = assign_panels(metric_groups(frame))[panel]
    fig = plot_panel(frame, panel_by_name(panel), groups, MODS, options or ChartOptions())
    go.Figure(fig.to_dict())  # rebuilt with plotly's validation: every property the builders emit is valid
    return fig


def per_epoch(values, first_step=22) -> list[tuple[int, float, float]]:
    return [(first_step * (i + 1), float(i + 1), v) for i, v in enumerate(values)]


def test_a_constant_learning_rate_is_one_flat_value_with_readable_ticks():
    lr = [0.001, 0.0009999999999999998, 0.001, 0.0010000000000000002] * 10  # the store's float noise
    fig = figure(rows({"lr": per_epoch(lr)}), "other", ChartOptions(smoothing=0.6))
    drawn = np.concatenate([np.asarray(t.y, dtype=float) for t in fig.data])
    assert set(drawn.tolist()) == {0.001}  # raw and smoothed: no spikes out of float noise
    axis = fig.layout.yaxis
    assert axis.autorange is False and axis.range[0] < 0.001 < axis.range[1] and axis.range[0] > 0
    assert axis.tickformat == "~g"
    assert any("constant: 0.001" in a.text for a in fig.layout.annotations)
    assert axis.title.text == "learning rate"


def test_two_timing_points_are_markers_not_a_diagonal_line():
    fig = figure(rows({"sys/step_ms": [(10, 1.0, 58.0), (400, 18.0, 31.0)]}), "other")
    assert [t.mode for t in fig.data] == ["markers"]
    assert fig.layout.yaxis.title.text == "time per step (ms)"


def test_every_legend_entry_of_a_panel_looks_different():
    frame = rows(
        {
            "train/loss": per_epoch(np.linspace(2, 0.1, 20)),
            "val/loss": per_epoch(np.linspace(2, 0.3, 20)),
            "lr": per_epoch([0.001] * 20),
            "sys/step_ms": per_epoch(np.linspace(50, 40, 20)),
            "sys/epoch_s": per_epoch(np.linspace(1, 0.5, 20)),
        }
    )
    for panel in assign_panels(metric_groups(frame)):
        fig = figure(frame, panel)
        looks = [(t.line.color, t.line.dash) for t in fig.data if t.showlegend is not False]
        assert len(looks) == len(set(looks)), (panel, looks)
    other = figure(frame, "other")  # lr, step_ms and epoch_s: three curves without a modality, three colours
    assert len({t.line.color for t in other.data if t.showlegend is not False}) == 3


def test_a_sparse_probe_says_on_the_chart_that_its_cost_budget_skipped_steps():
    cos = [(0, 0.0, 0.9), (20, 0.0, 0.5), (460, 1.0, 0.1)]  # due every 20 steps over 480: 3 of 24 logged
    fig = figure(rows({"conflict/cos/pix": cos, "conflict/cos/fou": cos}), "conflict")
    notes = [a.text for a in fig.layout.annotations if "cost budget" in a.text]
    assert len(notes) == 1 and "3 of 24 due points (every 20 steps)" in notes[0]
    assert {t.mode for t in fig.data} == {"markers"}  # no line across steps that were never measured
    assert fig.layout.yaxis.title.text.startswith("cosine")
    dense = [(20 * i, i / 24, 0.5) for i in range(24)]  # a probe that ran at every due step gets no note
    fig = figure(rows({"conflict/cos/pix": dense}), "conflict")
    assert not [a for a in fig.layout.annotations if "cost budget" in a.text]


def test_the_dominant_modality_is_drawn_by_name():
    fig = figure(
        rows({"imbalance/dominant": per_epoch([0, 0, 1, 0]), "imbalance/index": per_epoch([0.4, 0.3, 0.2, 0.3])}),
        "shapley",
    )
    (dominant,) = [t for t in fig.data if t.name == "dominant modality"]
    assert list(dominant.y) == ["pix", "pix", "fou", "pix"] and dominant.mode == "markers"
    axis = fig.layout[f"yaxis{dominant.yaxis[1:]}"]
    assert axis.type == "category" and list(axis.categoryarray) == MODS


def test_the_dominant_modality_stored_by_name_is_drawn_by_name():
    frame = rows(
        {
            "imbalance/dominant/pix": per_epoch([1, 1, 0, 1]),
            "imbalance/dominant/fou": per_epoch([0, 0, 1, 0]),
            "imbalance/index": per_epoch([0.4, 0.3, 0.2, 0.3]),
        }
    )
    fig = figure(frame, "shapley")
    traces = [t for t in fig.data if t.name == "dominant modality"]
    drawn = sorted((x, y) for t in traces for x, y in zip(t.x, t.y, strict=True))
    assert [y for _, y in drawn] == ["pix", "pix", "fou", "pix"] and sum(t.showlegend is not False for t in traces) == 1


def test_one_point_charts_get_sensible_ranges_and_accuracy_is_in_percent():
    frame = rows({"train/acc/fused": [(54, 1.0, 0.82)], "val/acc/fused": [(54, 1.0, 0.9)]})
    fig = figure(frame, "accuracy")
    assert all(t.mode == "markers" for t in fig.data)
    assert [list(t.y) for t in fig.data] == [[82.0], [90.0]]  # in %
    for axis in (fig.layout.yaxis, fig.layout.yaxis2):  # not -0.2..1.7: the accuracy scale, a little padded
        assert axis.range[0] == pytest.approx(-4.0) and axis.range[1] == pytest.approx(104.0)
        assert axis.ticksuffix == "%" and axis.title.text == "accuracy (%)"
    assert fig.layout.xaxis.rangemode == "tozero"  # not a range of 53..55 around the point
    assert fig.layout.xaxis2.matches == "x"  # both facets on one x range


def test_a_constant_bounded_quantity_sits_on_its_own_scale_not_in_the_middle_of_0_to_2():
    fig = figure(rows({"imbalance/index": per_epoch([1.0] * 5)}), "shapley")
    assert list(fig.layout.yaxis.range) == pytest.approx([-0.04, 1.04])
    assert fig.layout.yaxis.title.text.startswith("imbalance index")


def test_moving_accuracy_is_autoranged_within_0_and_100_percent():
    frame = rows({"val/acc/fused": per_epoch(np.linspace(0.5, 0.99, 30)), "val/acc/pix": per_epoch([0.6] * 30)})
    fig = figure(frame, "accuracy", ChartOptions(smoothing=0))
    options = fig.layout.yaxis.autorangeoptions
    assert options.clipmin == pytest.approx(-4.0) and options.clipmax == pytest.approx(104.0)  # a clamp, not a range
    assert max(max(t.y) for t in fig.data) == pytest.approx(99.0)


def test_facets_share_one_x_range():
    frame = rows({"sep/purity/pix": per_epoch(np.linspace(0.2, 0.9, 10)), "sep/fisher/pix": per_epoch([1.0, 2.0])})
    fig = figure(frame, "separability")
    assert fig.layout.xaxis2.matches == "x" and fig.layout.xaxis.matches is None


def test_zoom_and_legend_state_survive_a_refresh_with_new_rows():
    first = rows({"train/loss": per_epoch(np.linspace(2, 1, 30)), "val/loss": per_epoch(np.linspace(2, 1, 30))})
    later = rows({"train/loss": per_epoch(np.linspace(2, 0.5, 40)), "val/loss": per_epoch(np.linspace(2, 1, 40))})
    a, b = figure(first, "loss"), figure(later, "loss")
    assert a.layout.uirevision and a.layout.uirevision == b.layout.uirevision  # plotly keeps the user's zoom
    assert [t.uid for t in a.data] == [t.uid for t in b.data]  # ... and which legend entries were hidden
    epochs = figure(later, "loss", ChartOptions(x_axis="epoch"))
    assert epochs.layout.uirevision != b.layout.uirevision  # another x axis: the old zoom means nothing there


def test_compare_charts_use_units_percent_and_keep_zoom():
    frame = pd.concat([rows({"val/acc/fused": per_epoch([0.5, 0.7])}, run) for run in ("p", "c")])
    runs = [{"run_id": "p", "name": "parent", "modalities": MODS}, {"run_id": "c", "name": "child", "modalities": MODS}]
    fig = plot_compare(frame, "val", "acc", runs, ChartOptions(smoothing=0))
    go.Figure(fig.to_dict())
    assert list(fig.data[0].y) == [50.0, 70.0] and fig.layout.yaxis.title.text == "val accuracy (%)"
    assert fig.layout.uirevision


def test_val_accuracy_of_many_measures_is_one_facet_per_measure_with_a_few_lines_each():
    measures = ("acc", "acc_ncm", "acc_probe", "shapley")
    keys = [f"val/{q}/{m}" for q in measures for m in MODS] + [
        "val/acc/fused",
        "val/acc_probe/fused",
        "train/acc/fused",
    ]
    fig = figure(rows({k: per_epoch(np.linspace(0.3, 0.9, 20)) for k in keys}), "accuracy", ChartOptions(smoothing=0))
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["<b>train</b>", "<b>val · head split</b>", "<b>val · NCM</b>", "<b>val · linear probe</b>",
                      "<b>val · Shapley</b>"]  # fmt: skip
    per_facet = {}
    for t in fig.data:
        per_facet.setdefault(t.yaxis, []).append(t)
    assert max(len(traces) for traces in per_facet.values()) <= 3  # not 10 lines in 2 colours on one plot
    for traces in per_facet.values():  # inside a facet each line has its own colour: one per modality
        assert len({t.line.color for t in traces}) == len(traces)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["fused", "pix", "fou"]
