"""Figure builders of the teach page, and the class-separation score of lesson 5."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmviz.teach.embeddings import compute_class_separation
from mmviz.viz.teach import Line, plot_bars, plot_embeddings, plot_lines


def test_plot_lines_smooths_and_draws_reference_lines():
    x = np.arange(50) / 10
    fig = plot_lines([Line(x, np.random.default_rng(0).random(50), "a", "#111", smoothing=0.8),
                      Line(x[:5], [0.1, 0.2, 0.3, 0.4, 0.5], "b", "#222")], "y",
                     hlines=[(1.0, "one", "#333"), (float("nan"), "skip", "#333")])  # fmt: skip
    assert [t.name for t in fig.data] == [None, "a", "b"]  # raw faint line (no legend), smoothed, short raw
    assert fig.data[0].opacity == 0.2 and len(fig.layout.shapes) == 1


def test_plot_bars_prints_values():
    fig = plot_bars(["a", "b"], {"joint": [0.8, 0.5], "alone": [0.82, float("nan")]}, patterns={"alone": "/"})
    assert [t.name for t in fig.data] == ["joint", "alone"]
    assert list(fig.data[0].text) == ["80%", "50%"] and list(fig.data[1].text) == ["82%", ""]
    assert fig.data[1].marker.pattern.shape == "/"


def test_plot_embeddings_grid():
    rows = pd.DataFrame(
        {"modality": ["a", "a", "b", "b"], "x": [0, 1, 0, 1.0], "y": [0, 1, 1, 0.0], "label": [0, 1, 0, 1]}
    )
    fig = plot_embeddings({"baseline": rows, "PMR": rows}, scores={("PMR", "b"): "probe 90%"})
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["a · baseline", "a · PMR", "b · baseline", "b · PMR · probe 90%"]
    assert sum(t.showlegend for t in fig.data) == 2  # one legend entry per class


def test_class_separation():
    labels = np.array([0, 0, 1, 1])
    assert compute_class_separation(np.array([[0, 0], [0, 0], [5, 5], [5, 5.0]]), labels) == 1.0
    assert compute_class_separation(np.array([[0, 0], [1, 1], [0, 0], [1, 1.0]]), labels) == 0.0
    assert compute_class_separation(np.zeros((4, 2)), labels) == 0.0
