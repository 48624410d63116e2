"""Embedding scatter builders: traces per colour mode, selection highlight, shared ranges, the export figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmviz.viz.embeddings import (
    available_color_modes,
    compute_axis_ranges,
    legend_entries,
    plot_embedding,
    plot_embedding_grid,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    labels = np.repeat(np.arange(3), n // 3)
    parts = []
    for view in ("a", "fused"):
        pred = np.where(rng.random(n) < 0.7, labels, (labels + 1) % 3)
        parts.append(pd.DataFrame({
            "view": view, "x": rng.normal(size=n), "y": rng.normal(size=n), "index": np.arange(500, 500 + n),
            "label": labels, "pred": pred, "correct": (pred == labels).astype(float), "pred_fused": labels,
            "correct_fused": 1.0, "confidence": rng.random(n), "dropped": np.arange(n) % 4 == 0,
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def samples(trace) -> list[int]:
    return [int(row[0]) for row in trace.customdata]


def test_class_mode_draws_one_trace_per_class_carrying_sample_indices(frame):
    rows = frame[frame["view"] == "a"]
    fig = plot_embedding(rows, "class", axis_title="UMAP")
    assert [t.name for t in fig.data] == ["class 0", "class 1", "class 2"]
    assert sorted(i for t in fig.data for i in samples(t)) == list(range(500, 560))
    assert fig.layout.showlegend is False and fig.layout.dragmode == "lasso"
    assert fig.layout.xaxis.title.text == "UMAP 1"
    assert [n for n, _ in legend_entries(rows, "class")] == ["class 0", "class 1", "class 2"]


def test_correct_mode_splits_by_the_panels_own_prediction(frame):
    rows = frame[frame["view"] == "a"]
    fig = plot_embedding(rows, "correct")
    by_name = {t.name: samples(t) for t in fig.data}
    assert sorted(by_name["wrong"]) == sorted(rows.loc[rows["correct"] == 0, "index"])
    assert len(by_name["correct"]) + len(by_name["wrong"]) == len(rows)


def test_confidence_mode_is_one_trace_with_a_colour_scale(frame):
    fig = plot_embedding(frame[frame["view"] == "a"], "confidence")
    assert len(fig.data) == 1 and fig.data[0].marker.colorscale is not None
    assert fig.data[0].marker.cmin == 0 and fig.data[0].marker.cmax == 1


def test_selection_highlights_the_same_samples_and_dims_the_rest(frame):
    chosen = {503, 510, 541}
    for view in ("a", "fused"):
        fig = plot_embedding(frame[frame["view"] == view], "class", selected=chosen)
        highlighted = {samples(t)[i] for t in fig.data for i in t.selectedpoints}
        assert highlighted == chosen
        assert all(t.unselected.marker.opacity < 0.5 for t in fig.data)
    plain = plot_embedding(frame[frame["view"] == "a"], "class", selected=set())
    assert all(t.selectedpoints is None for t in plain.data)


def test_dropped_mode_is_offered_only_when_something_was_dropped(frame):
    assert "dropped" in available_color_modes(frame)
    assert "dropped" not in available_color_modes(frame.assign(dropped=False))


def test_axis_ranges_cover_every_epoch():
    ranges = compute_axis_ranges([np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[-2.0, 5.0]])], pad=0.0)
    assert ranges == ([-2.0, 1.0], [0.0, 5.0])


def test_export_figure_puts_every_view_side_by_side(frame):
    fig = plot_embedding_grid(frame, ["a", "fused"], "class", selected={503}, title="run · epoch 3")
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]
    assert sum(t.showlegend is not False for t in fig.data) == 3  # one legend for all panels
    html = fig.to_html(include_plotlyjs=False)
    assert "epoch 3" in html and "Plotly.newPlot" in html


def _hue_distance_from_red_green(colour: str) -> bool:
    """Whether a hex colour is clearly neither a red nor a green (the pair most colour-blind viewers confuse)."""
    import colorsys

    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360
    return not (hue < 20 or hue > 340 or 80 < hue < 160)


@pytest.mark.parametrize("mode", ["correct", "correct_fused"])
def test_correct_and_wrong_are_colour_blind_safe_and_differ_in_shape_too(frame, mode):
    fig = plot_embedding(frame[frame["view"] == "a"], mode)
    traces = {t.name: t for t in fig.data}
    colours = [traces["correct"].marker.color, traces["wrong"].marker.color]
    assert all(_hue_distance_from_red_green(c) for c in colours), colours  # not green vs red
    assert traces["correct"].marker.symbol != traces["wrong"].marker.symbol


def test_panel_titles_name_the_accuracy_measure():
    from mmviz.ui.embeddings import panel_accuracy_text

    assert panel_accuracy_text("pix", 0.9333, "head") == "head-split accuracy 93.3%"
    assert panel_accuracy_text("fou", 0.5, "ncm") == "NCM accuracy (nearest class mean) 50.0%"
    assert panel_accuracy_text("fused", 0.98, None) == "fused accuracy 98.0%"
    assert panel_accuracy_text("pix", float("nan"), "head") == ""
