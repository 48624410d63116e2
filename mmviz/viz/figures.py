"""Plotly figure builders: tidy metric rows in, ``go.Figure`` out (no Streamlit here).

Every chart draws each series twice when smoothing is on: the raw line faint, the debiased EMA on top, in the same
colour and legend group (clicking the legend toggles both). Events (fork, stop, re-init) are vertical dotted lines
on every facet. Facets are laid out by hand (``make_subplots`` costs ~25 ms a figure, too slow for live refresh).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mmviz.viz.axes import AxisSpec, axis_spec, clean_values, x_axis_props, y_axis_range
from mmviz.viz.panels import (
    ACCURACY_QUANTITIES,
    DASHES,
    EVENT_COLORS,
    MEASUREMENT_DASH,
    MEASUREMENTS,
    NEUTRAL_PALETTE,
    PanelSpec,
    facet_title,
    measurement_label,
    modality_color,
    run_color,
)
from mmviz.viz.series import X_TITLES, ChartOptions, Series, prepare_series
from mmviz.viz.text import plotly_text

ROW_HEIGHT = 290
MAX_COLS = 3
SPLIT_ORDER = {"train": 0, "": 1, "val": 2}
MEASURE_ORDER = {"acc": 0, "acc_ncm": 1, "acc_probe": 2, "shapley": 3}
MARKERS_BELOW = 60  # series this short get markers: per-epoch signals of a short run are a handful of points
LINES_FROM = 3  # a series of fewer points is drawn as markers only: a line through two points invents a trend
SPARSE_NOTE_BELOW = 0.5  # a per-step series with fewer than this share of its due points gets a note on the chart
DOMINANT = "imbalance/dominant"  # stored by name (imbalance/dominant/<m> = 1 when m dominates); drawn as the name


def make_figure(data: list[dict], layout: dict) -> go.Figure:
    """``go.Figure(data, layout)`` without plotly's per-property validation.

    Validation costs about a third of a live refresh (every array goes through narwhals); the builders here emit
    a fixed set of properties, which the tests check by rebuilding each figure with validation on.
    """
    try:
        return go.Figure(data=data, layout=layout, _validate=False)
    except TypeError:  # a plotly without the switch
        return go.Figure(data=data, layout=layout)


def _axis_suffix(i: int) -> str:
    return "" if i == 0 else str(i + 1)


def _grid_layout(
    titles: Sequence[str], options: ChartOptions, y_titles: Sequence[str] = (), revision: str = ""
) -> dict:
    """Layout dict with one x/y axis pair per facet on a grid of at most ``MAX_COLS`` columns.

    Every facet's x axis follows the first one (``matches``), so facets of one chart share their x range, and
    ``uirevision`` keeps the user's zoom and legend choices across live refreshes (plotly keeps UI state while the
    revision stays the same; it changes with the x axis and log-y choices, where the old zoom would be meaningless).
    """
    n = max(1, len(titles))
    cols = min(n, MAX_COLS)
    rows = math.ceil(n / cols)
    height = ROW_HEIGHT * rows + 40
    h_gap, v_gap = 0.09, min(0.25, 90 / height)
    width = (1 - h_gap * (cols - 1)) / cols
    row_h = (1 - v_gap * (rows - 1)) / rows
    layout: dict = {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 40 if len(titles) > 1 else 20, "b": 10},
        "hovermode": "x unified" if n == 1 else "closest",
        "legend": {"tracegroupgap": 2, "font": {"size": 11}},
        "annotations": [],
        "shapes": [],
        "uirevision": f"{revision}|{options.x_axis}|{options.log_y}",
    }
    for i in range(n):
        r, c = divmod(i, cols)
        x0 = c * (width + h_gap)
        y1 = 1 - r * (row_h + v_gap)
        s = _axis_suffix(i)
        layout[f"xaxis{s}"] = {
            "domain": [x0, min(1.0, x0 + width)],
            "anchor": f"y{s}",
            "title": {"text": X_TITLES[options.x_axis] if r == rows - 1 else ""},
            "showgrid": True,
            **x_axis_props(options.x_axis),
            **({"matches": "x"} if i else {}),
        }
        layout[f"yaxis{s}"] = {
            "domain": [max(0.0, y1 - row_h), y1],
            "anchor": f"x{s}",
            "type": "log" if options.log_y else "linear",
            "title": {"text": y_titles[i] if i < len(y_titles) else "", "font": {"size": 11}},
            "showgrid": True,
        }
        if len(titles) > 1:
            layout["annotations"].append(
                {
                    "text": f"<b>{titles[i]}</b>",
                    "xref": f"x{s} domain",
                    "yref": f"y{s} domain",
                    "x": 0.5,
                    "y": 1.0,
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"size": 12},
                }
            )
    return layout


def _facet_spec(quantities: Sequence[str]) -> AxisSpec:
    """One y axis for the quantities of a facet: the first one's title and scale, bounds only if all share them."""
    specs = [axis_spec(q) for q in quantities] or [AxisSpec("")]
    bounds = specs[0].bounds if all(s.bounds == specs[0].bounds for s in specs) else None
    return AxisSpec(specs[0].title, specs[0].scale, bounds, specs[0].suffix)


def _set_y_axes(layout: dict, data: list[dict], specs: Sequence[AxisSpec], options: ChartOptions) -> None:
    """Each facet's y range from the values drawn on it (see :func:`mmviz.viz.axes.y_axis_range`)."""
    for i, spec in enumerate(specs):
        s = _axis_suffix(i)
        if layout[f"yaxis{s}"].get("type") == "category":
            continue
        drawn = [np.asarray(t["y"], dtype=np.float64) for t in data if t["yaxis"] == f"y{s}"]
        values = np.concatenate(drawn) if drawn else np.array([])
        layout[f"yaxis{s}"].update(y_axis_range(values, spec, options.log_y))
        finite = values[np.isfinite(values)]
        if finite.size > 1 and finite.min() == finite.max():  # say it in words: a flat line is easy to misread
            layout["annotations"].append(
                _corner_note(i, f"constant: {finite[0]:.6g}{spec.suffix} at every point", 0.99)
            )


def _corner_note(axis: int, text: str, y: float = 0.01) -> dict:
    """A small grey note inside facet ``axis``, at its bottom (``y`` 0.01) or top (0.99) left corner."""
    suffix = _axis_suffix(axis)
    return {
        "text": text,
        "xref": f"x{suffix} domain",
        "yref": f"y{suffix} domain",
        "x": 0.01,
        "y": y,
        "xanchor": "left",
        "yanchor": "bottom" if y < 0.5 else "top",
        "showarrow": False,
        "align": "left",
        "font": {"size": 10, "color": "#6b6b6b"},
        "bgcolor": "rgba(255,255,255,0.7)",
    }


def _sparse_note(s: Series, options: ChartOptions) -> str | None:
    """Why a per-step series has few points, or None: a probe skips due steps to stay within its cost budget."""
    if options.x_axis != "step" or s.n_raw < 2 or s.n_raw != s.x.size:
        return None
    gaps = np.diff(s.x)
    cadence = float(gaps[gaps > 0].min()) if (gaps > 0).any() else 0.0
    if cadence <= 1:
        return None
    due = int((s.x[-1] - s.x[0]) // cadence) + 1
    if s.n_raw >= SPARSE_NOTE_BELOW * due:
        return None
    return (
        f"{s.n_raw} of {due} due points (every {cadence:g} steps): the probe skips due steps to stay within its "
        "cost budget (max_overhead; 0 logs every due step)"
    )


def _event_marks(
    layout: dict,
    events: pd.DataFrame | None,
    options: ChartOptions,
    t0: Mapping[str, float] | None,
    n_facets: int,
    colors: Mapping[str, str] | None = None,
) -> None:
    """Add a vertical dotted line per event on every facet, labelled once on the first facet."""
    if events is None or events.empty:
        return
    for ev in events.to_dict("records"):
        if options.x_axis == "wall time":
            start = None if t0 is None else t0.get(ev["run_id"])
            if start is None:
                continue  # no run start to measure from
            x = float(ev["wall_time"]) - start
        else:
            x = float(ev["step"] if options.x_axis == "step" else ev["epoch"])
        color = (colors or {}).get(ev["run_id"], EVENT_COLORS.get(ev["kind"], "#7f7f7f"))
        for i in range(n_facets):
            s = _axis_suffix(i)
            layout["shapes"].append(
                {
                    "type": "line",
                    "xref": f"x{s}",
                    "yref": f"y{s} domain",
                    "x0": x,
                    "x1": x,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": color, "width": 1.5, "dash": "dot"},
                }
            )
        payload = ev.get("payload") or {}
        detail = ", ".join(f"{k}={v}" for k, v in payload.items()) if isinstance(payload, dict) else ""
        layout["annotations"].append(
            {
                "text": str(ev["kind"]),
                "hovertext": f"{ev['kind']} at step {int(ev['step'])}" + (f" ({detail})" if detail else ""),
                "xref": "x",
                "yref": "y domain",
                "x": x,
                "y": 1.0,
                "yanchor": "top",
                "xanchor": "left",
                "showarrow": False,
                "font": {"size": 10, "color": color},
            }
        )


def _traces(
    s: Series, axis: int, name: str, color: str, dash: str, show_legend: bool, spec: AxisSpec | None = None
) -> list[dict]:
    """The faint raw line (when smoothing) and the main line of one series, in the axis' units (% for accuracies).

    Each trace has a stable ``uid`` (its name), so plotly keeps a legend click (a hidden line) across refreshes.
    """
    suffix = _axis_suffix(axis)
    scale = spec.scale if spec is not None else 1.0
    unit = spec.suffix if spec is not None else ""
    y, y_smooth = clean_values(s.y, scale), None if s.y_smooth is None else clean_values(s.y_smooth, scale)
    mode = "markers" if s.x.size < LINES_FROM else "lines+markers" if s.x.size <= MARKERS_BELOW else "lines"
    common = {"type": "scatter", "x": s.x, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "legendgroup": name}
    main = {
        **common,
        "uid": f"{name}|{axis}",
        "y": y if y_smooth is None else y_smooth,
        "mode": mode,
        "name": name,
        "showlegend": show_legend,
        "line": {"color": color, "dash": dash, "width": 2},
        "marker": {"size": 5 if s.x.size >= LINES_FROM else 8, "color": color},
        "hovertemplate": f"{name}: %{{y:.4g}}{unit}<extra></extra>",
    }
    if y_smooth is None:
        return [main]
    raw = {
        **common,
        "uid": f"{name}|{axis}|raw",
        "y": y,
        "mode": mode,
        "name": f"{name} (raw)",
        "showlegend": False,
        "opacity": 0.25,
        "line": {"color": color, "dash": dash, "width": 1},
        "marker": {"size": 3, "color": color},
        "hoverinfo": "skip",
    }
    return [raw, main]


def _dominant_traces(s: Series, axis: int, modalities: list[str], show_legend: bool) -> list[dict]:
    """The dominant modality per evaluation as markers on a category axis of modality names (not 0/1 on -1..1).

    ``imbalance/dominant/<m>`` is 1 at the evaluations where m dominated: one trace per modality, drawn there.
    Runs stored before the name was in the key logged ``imbalance/dominant`` as the modality's position.
    """
    if s.modality is not None:
        keep = [i for i, v in enumerate(s.y) if np.isfinite(v) and v >= 0.5]
        names, x = [s.modality] * len(keep), [s.x[i] for i in keep]
    else:
        names = [modalities[int(v)] if 0 <= int(v) < len(modalities) else f"#{int(v)}" for v in s.y if np.isfinite(v)]
        x = [x for x, v in zip(s.x, s.y, strict=True) if np.isfinite(v)]
    suffix = _axis_suffix(axis)
    return [
        {
            "type": "scatter",
            "uid": f"dominant|{axis}|{s.modality or ''}",
            "x": x,
            "y": names,
            "xaxis": f"x{suffix}",
            "yaxis": f"y{suffix}",
            "mode": "markers",
            "name": "dominant modality",
            "showlegend": show_legend,
            "marker": {"size": 7, "symbol": "square", "color": [modality_color(n, modalities) for n in names]},
            "hovertemplate": "dominant: %{y}<extra></extra>",
        }
    ]


def plot_panel(
    frame: pd.DataFrame,
    panel: PanelSpec,
    groups: Sequence[tuple[str | None, str]],
    modalities: list[str],
    options: ChartOptions,
    events: pd.DataFrame | None = None,
    t0: Mapping[str, float] | None = None,
    hidden: Collection[str] = (),
) -> go.Figure:
    """One live chart of one run: the ``groups`` (split, quantity) of ``panel``, faceted as the panel says.

    Args:
        frame: tidy rows of one run (other keys are ignored).
        panel: the panel spec (title, facet rule).
        groups: the ``(split, quantity)`` groups to draw, e.g. from :func:`mmviz.viz.panels.assign_panels`.
        modalities: the run's modality names, for stable colours.
        options: x axis, smoothing, log-y and points per series.
        events: the run's events, drawn as vertical lines.
        t0: run start time per run id, for the wall-time axis.
        hidden: keys not to draw (what does not apply to the run, e.g. another modality's accuracy in a unimodal run).
    """
    series = prepare_series(frame, options, dict(t0) if t0 else None, groups=list(groups))
    return plot_panel_series(series, panel, groups, modalities, options, events, t0, hidden)


def plot_panel_series(
    series: list[Series],
    panel: PanelSpec,
    groups: Sequence[tuple[str | None, str]],
    modalities: list[str],
    options: ChartOptions,
    events: pd.DataFrame | None = None,
    t0: Mapping[str, float] | None = None,
    hidden: Collection[str] = (),
) -> go.Figure:
    """:func:`plot_panel` from series already down-sampled (e.g. kept up to date by a live buffer)."""
    series = [s for s in series if s.key not in hidden]
    if panel.facet == "split":
        facets = sorted({g[0] or "" for g in groups}, key=lambda s: SPLIT_ORDER.get(s, 9))
        facet_of = {g: facets.index(g[0] or "") for g in groups}
        titles = [f or "all" for f in facets]
    elif panel.facet == "measure":  # one facet per split and measure: a handful of lines each, colour = modality
        ordered = sorted(groups, key=lambda g: (SPLIT_ORDER.get(g[0] or "", 9), MEASURE_ORDER.get(g[1], 9), g[1]))
        facet_of = {g: i for i, g in enumerate(ordered)}
        split_only = {g for g in ordered if g[1] == "acc"}  # fused accuracy alone: no "head split" to name
        split_only -= {(s.split, s.quantity) for s in series if s.modality not in (None, "fused")}
        titles = [g[0] or "accuracy" if g in split_only else " · ".join(filter(None, (g[0], MEASUREMENTS[g[1]])))
                  for g in ordered]  # fmt: skip
    elif panel.facet == "quantity":
        facets = sorted({g[1] for g in groups})
        facet_of = {g: facets.index(g[1]) for g in groups}
        titles = [facet_title(None, q) for q in facets]
    else:
        facet_of = dict.fromkeys(groups, 0)
        titles = [panel.title]
    quantities = sorted({g[1] for g in groups})
    specs = [_facet_spec(sorted({g[1] for g in groups if facet_of[g] == i})) for i in range(len(titles))]
    layout = _grid_layout(titles, options, [spec.title for spec in specs], revision=f"panel|{panel.name}")
    data: list[dict] = []
    seen: set[str] = set()
    rank = {m: i for i, m in enumerate(["fused", *modalities])}
    series.sort(
        key=lambda s: (
            facet_of[(s.split, s.quantity)],
            rank.get(s.modality or "fused", len(rank)),
            s.modality or "",
            quantities.index(s.quantity),
        )
    )
    neutral: dict[str, str] = {}  # curves without a modality (loss, lr, timings) each get their own colour
    notes: dict[int, str] = {}
    for s in series:
        axis = facet_of[(s.split, s.quantity)]
        if s.quantity == DOMINANT:
            data.extend(_dominant_traces(s, axis, modalities, "dominant modality" not in seen))
            seen.add("dominant modality")
            layout[f"yaxis{_axis_suffix(axis)}"].update(type="category", categoryarray=modalities, range=None)
            continue
        if panel.facet == "measure":  # the facet title names split and measure; the legend names the modality
            name = s.modality or "fused"
        elif panel.facet == "quantity":  # the facet title names the quantity; the legend names the modality
            name = s.modality or facet_title(s.split, s.quantity)
        else:
            name = measurement_label(s.split, s.quantity, s.modality)
        if panel.facet not in ("split", "measure") and s.split and len({g[0] for g in groups}) > 1:
            name = f"{s.split} · {name}"
        if panel.facet == "measure":
            dash = "solid"
        elif panel.facet == "quantity":
            dash = MEASUREMENT_DASH.get(s.quantity, "solid")
        else:
            dash = MEASUREMENT_DASH.get(s.quantity, DASHES[quantities.index(s.quantity) % len(DASHES)])
        if panel.facet != "split" and s.split == "val" and s.quantity == "loss":
            dash = "dash"
        if s.modality is None and not (s.quantity == "acc" or s.quantity in ACCURACY_QUANTITIES):
            color = neutral.setdefault(name, NEUTRAL_PALETTE[len(neutral) % len(NEUTRAL_PALETTE)])
        else:
            color = modality_color(s.modality, modalities)
        note = _sparse_note(s, options)
        traces = _traces(s, axis, name, color, dash, name not in seen, specs[axis])
        if note:  # a line across the skipped steps would draw values that were never measured
            notes.setdefault(axis, note)
            for trace in traces:
                trace["mode"] = "markers"
        data.extend(traces)
        seen.add(name)
    _set_y_axes(layout, data, specs, options)
    for axis, note in notes.items():
        text = note if len(note) < 70 else note[: note.index(":") + 1] + "<br>" + note[note.index(":") + 2 :]
        layout["annotations"].append(_corner_note(axis, text))
    _event_marks(layout, events, options, t0, len(titles))
    return make_figure(data, layout)


def plot_compare(
    frame: pd.DataFrame,
    split: str | None,
    quantity: str,
    runs: Sequence[Mapping],
    options: ChartOptions,
    events: pd.DataFrame | None = None,
    t0: Mapping[str, float] | None = None,
) -> go.Figure:
    """Overlay one metric across runs, one facet per modality (fused first), one colour per run.

    Args:
        frame: tidy rows of the runs (other keys are ignored).
        split, quantity: the metric, e.g. ``('val', 'acc')`` or ``(None, 'grad_norm')``.
        runs: run dicts (``run_id``, ``name``, ``modalities``) in legend order.
        options: x axis, smoothing, log-y and points per series.
        events: the runs' events (forks mark where a child left its parent).
        t0: run start time per run id, for the wall-time axis.
    """
    series = prepare_series(frame, options, dict(t0) if t0 else None, groups=[(split, quantity)])
    order: list[str] = []
    for run in runs:
        for m in run.get("modalities") or []:
            if m not in order:
                order.append(m)
    present = {s.modality or "" for s in series}
    facets = [m for m in ("", "fused", *order) if m in present] + sorted(present - {"", "fused", *order})
    titles = [f or quantity for f in facets] or [quantity]
    spec = axis_spec(quantity)
    y_title = f"{split} {spec.title}" if split else spec.title
    layout = _grid_layout(titles, options, [y_title] * len(titles), revision=f"compare|{split}|{quantity}")
    index = {run["run_id"]: i for i, run in enumerate(runs)}
    names = {run["run_id"]: plotly_text(run.get("name") or run["run_id"]) for run in runs}
    data: list[dict] = []
    seen: set[str] = set()
    for s in sorted(series, key=lambda s: index.get(s.run_id, len(index))):
        name = names.get(s.run_id, s.run_id)
        color = run_color(index.get(s.run_id, len(index)))
        data.extend(_traces(s, facets.index(s.modality or ""), name, color, "solid", name not in seen, spec))
        seen.add(name)
    _set_y_axes(layout, data, [spec] * len(titles), options)
    colors = {rid: run_color(i) for rid, i in index.items()}
    _event_marks(layout, events, options, t0, len(titles), colors)
    return make_figure(data, layout)
