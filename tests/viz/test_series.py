"""Smoothing and down-sampling against hand-written references."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmviz.viz.series import ChartOptions, compute_debiased_ema, compute_minmax_indices, export_frame, prepare_series

ROOT = Path(__file__).resolve().parents[2]


def tensorboard_smooth(values, weight):
    """TensorBoard's smoothing loop (tensorboard/plugins/scalar/vz_line_chart2), transcribed."""
    last, count, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        count += 1
        out.append(last / (1 - weight**count))
    return out


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.6, 0.95, 0.999])
def test_ema_matches_tensorboard(weight):
    values = np.random.default_rng(0).normal(size=500).cumsum()
    values[[10, 200]] = [np.nan, np.inf]
    np.testing.assert_allclose(compute_debiased_ema(values, weight), tensorboard_smooth(values, weight), rtol=1e-9)


@pytest.mark.parametrize("weight", [1e-6, 0.001, 0.3, 0.6, 0.9, 0.99, 0.999])
def test_a_long_ema_matches_tensorboard_across_its_blocks(weight):
    values = np.random.default_rng(1).normal(size=20_000).cumsum()  # a random walk: values up to ~300
    values[[7, 5000, 5001]] = [np.nan, -np.inf, np.nan]
    np.testing.assert_allclose(
        compute_debiased_ema(values, weight), tensorboard_smooth(values, weight), rtol=1e-9, atol=1e-9
    )


def test_ema_of_huge_values_stays_finite():
    values = np.full(5000, 3.4e38)  # float32's largest (a diverging loss)
    np.testing.assert_allclose(compute_debiased_ema(values, 0.6), 3.4e38, rtol=1e-12)
    np.testing.assert_allclose(compute_debiased_ema(values * 1e150, 0.99), 3.4e188, rtol=1e-12)


def test_smoothing_needs_no_scipy():
    """The charts' smoothing is numpy only: importing scipy.signal took 0.7-0.9 s of a server's first live view."""
    code = (
        "import sys, numpy as np\n"
        "from mmviz.viz.live_series import RunningEma\n"
        "from mmviz.viz.series import compute_debiased_ema\n"
        "compute_debiased_ema(np.arange(100.0), 0.6)\n"
        "RunningEma(0.6).update(np.arange(100.0))\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ema_is_unbiased_at_the_start_and_keeps_constants():
    assert compute_debiased_ema(np.array([5.0]), 0.9)[0] == pytest.approx(5.0)
    np.testing.assert_allclose(compute_debiased_ema(np.full(1000, 2.5), 0.99), 2.5)


def test_minmax_keeps_extremes_ends_and_is_deterministic():
    y = np.random.default_rng(1).normal(size=100_000)
    y[12_345], y[67_890] = 50.0, -50.0
    idx = compute_minmax_indices(y, 1000)
    assert len(idx) <= 1000 and idx[0] == 0 and idx[-1] == len(y) - 1
    assert {12_345, 67_890} <= set(idx.tolist())
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, compute_minmax_indices(y.copy(), 1000))
    np.testing.assert_array_equal(compute_minmax_indices(y[:50], 1000), np.arange(50))


def test_minmax_handles_nan_buckets():
    y = np.full(1000, np.nan)
    y[500] = 1.0
    idx = compute_minmax_indices(y, 10)
    assert 500 in idx and idx[-1] == 999


def _frame(n=3000):
    steps = np.arange(n)
    return pd.DataFrame(
        {
            "run_id": "r",
            "id": steps + 1,
            "step": steps,
            "epoch": steps / 100,
            "wall_time": 1000.0 + steps * 0.1,
            "key": "train/loss",
            "split": "train",
            "quantity": "loss",
            "modality": None,
            "value": np.exp(-steps / 500),
        }
    )


def test_prepare_series_downsamples_smooths_and_maps_x():
    (s,) = prepare_series(_frame(), ChartOptions(x_axis="wall time", smoothing=0.9, max_points=200))
    assert s.n_raw == 3000 and len(s.x) <= 200 and s.x[0] == 0.0 and s.x[-1] == pytest.approx(299.9)
    assert s.y_smooth is not None and len(s.y_smooth) == len(s.y)
    (raw,) = prepare_series(_frame(5), ChartOptions(smoothing=0.9))
    assert raw.y_smooth is None  # a handful of points is drawn raw


def test_export_has_every_raw_point_with_x_and_smoothed():
    out = export_frame(_frame(), [("train", "loss")], ChartOptions(x_axis="epoch", smoothing=0.5))
    assert len(out) == 3000 and {"x", "smoothed"} <= set(out.columns)
    assert out["x"].iloc[-1] == pytest.approx(29.99)
