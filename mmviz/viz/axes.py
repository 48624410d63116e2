"""How each quantity is put on a y axis: its unit, its scale (accuracies in %), its natural bounds, and a range that
does not mislead when a series is constant or has a single point.

Plotly's autorange is right for a curve that moves, and wrong in three cases that a training run hits at once:
a constant (a fixed learning rate: autorange zooms into float noise, ticks read ``0.0009999999999999998``), a single
point (an axis of -0.2..1.7 for one accuracy), and a bounded quantity (an accuracy drawn above 100 %). The rules
here handle those; everything else keeps autorange.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PERCENT_QUANTITIES = frozenset({"acc", "acc_ncm", "acc_probe"})  # fractions in the store, % on the charts
SIGNIFICANT_DIGITS = 10  # values are rounded to this many significant digits: float noise is not a signal


@dataclasses.dataclass(frozen=True)
class AxisSpec:
    """A quantity's y axis: title with unit, scale factor from stored value to drawn value, bounds (drawn units)."""

    title: str
    scale: float = 1.0
    bounds: tuple[float, float] | None = None
    suffix: str = ""


_SPECS: dict[str, AxisSpec] = {
    "acc": AxisSpec("accuracy (%)", 100.0, (0.0, 100.0), "%"),
    "acc_ncm": AxisSpec("accuracy (%)", 100.0, (0.0, 100.0), "%"),
    "acc_probe": AxisSpec("accuracy (%)", 100.0, (0.0, 100.0), "%"),
    "shapley": AxisSpec("Shapley value (accuracy points, %)", 100.0, None, "%"),
    "shapley_share": AxisSpec("share of the Shapley contribution", 1.0, (0.0, 1.0)),
    "loss": AxisSpec("loss (cross-entropy, nats)"),
    "lr": AxisSpec("learning rate"),
    "grad_norm": AxisSpec("gradient L2 norm"),
    "grad_norm_pre": AxisSpec("gradient L2 norm"),
    "param_dist": AxisSpec("L2 distance from initial weights"),
    "dropout_p": AxisSpec("dropout probability", 1.0, (0.0, 1.0)),
    "ratio": AxisSpec("confidence score ratio"),
    "score": AxisSpec("confidence score (sum of softmax)"),
    "sys/step_ms": AxisSpec("time per step (ms)"),
    "sys/epoch_s": AxisSpec("time per epoch (s)"),
    "imbalance/index": AxisSpec("imbalance index (0 = balanced)", 1.0, (0.0, 1.0)),
    "imbalance/share": AxisSpec("share of the Shapley contribution", 1.0, (0.0, 1.0)),
    "imbalance/dominant": AxisSpec("dominant modality (largest Shapley value)"),
    "sep/purity": AxisSpec("k-means purity", 1.0, (0.0, 1.0)),
    "sep/silhouette": AxisSpec("silhouette", 1.0, (-1.0, 1.0)),
    "sep/fisher": AxisSpec("Fisher ratio (between / within)"),
    "conflict/cos": AxisSpec("cosine (unimodal vs fused gradient)", 1.0, (-1.0, 1.0)),
}
_PREFIXES = {  # unit of a family of quantities
    "proto/": AxisSpec("distance in feature space"),
    "coef/": AxisSpec("coefficient"),
}


def axis_spec(quantity: str) -> AxisSpec:
    """The y axis of ``quantity`` (e.g. ``'acc'`` -> accuracy in %); unknown quantities get their own name."""
    if quantity in _SPECS:
        return _SPECS[quantity]
    for prefix, spec in _PREFIXES.items():
        if quantity.startswith(prefix):
            return spec
    return AxisSpec(quantity)


def clean_values(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``values * scale`` rounded to :data:`SIGNIFICANT_DIGITS` significant digits (NaN and inf pass through).

    A constant learning rate comes back from the store and the smoother as 0.001 and 0.0009999999999999998; rounded,
    it is one value again, and the chart draws a flat line instead of spikes.

    >>> clean_values(np.array([0.001, 0.0009999999999999998])).tolist()
    [0.001, 0.001]
    """
    values = np.asarray(values, dtype=np.float64) * scale
    finite = np.isfinite(values) & (values != 0)
    out = values.copy()
    magnitude = np.floor(np.log10(np.abs(values[finite])))
    factor = 10.0 ** (SIGNIFICANT_DIGITS - 1 - magnitude)
    out[finite] = np.round(values[finite] * factor) / factor
    return out


def y_axis_range(values: np.ndarray, spec: AxisSpec, log_y: bool = False) -> dict:
    """Layout properties of a y axis for ``values`` (drawn units, every series of the facet).

    - constant or one value: an explicit range around it (a bounded quantity: its bounds), so a fixed learning rate
      is a flat line in the middle with readable ticks, not float noise or a value at the edge of 0..2;
    - a bounded quantity that moves: autorange, but never past its bounds (accuracy never above 100 %);
    - otherwise: plotly's autorange.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    props: dict = {"ticksuffix": spec.suffix} if spec.suffix else {}
    if log_y or values.size == 0:
        return props
    lo, hi = float(values.min()), float(values.max())
    if spec.bounds is not None:
        b_lo, b_hi = spec.bounds
        pad = 0.04 * (b_hi - b_lo)
        if hi - lo <= 1e-9 * max(1.0, abs(hi)):
            return {**props, "range": [b_lo - pad, b_hi + pad], "autorange": False}
        return {**props, "autorangeoptions": {"clipmin": b_lo - pad, "clipmax": b_hi + pad}}
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # constant (or one value)
        half = 0.5 * abs(hi) if hi != 0 else 1.0
        return {**props, "range": [lo - half, hi + half], "autorange": False, "tickformat": "~g"}
    return props


def x_axis_props(x_axis: str) -> dict:
    """x axis properties shared by every chart: steps, epochs and seconds start at 0 (one point is not a range)."""
    return {"rangemode": "tozero"}
