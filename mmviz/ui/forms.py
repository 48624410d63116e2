"""Forms built from config dataclasses: one widget per field, with its help text, range and choices.

A new balancing method, probe or dataset gets its form from its config's field metadata
(:meth:`mmviz.config.Config.field_specs`); nothing here knows any method by name.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Mapping
from typing import Any

import streamlit as st

from mmviz.config import Config, FieldSpec


def _range_help(spec: FieldSpec) -> str:
    if spec.type not in (int, float) or (spec.low is None and spec.high is None):
        return ""
    lo = "(" if spec.low_open else "["
    low = "-inf" if spec.low is None else f"{spec.low:g}"
    high = "inf" if spec.high is None else f"{spec.high:g}"
    return f" Range {lo}{low}, {high}]."


def _clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value


def _shown_value(spec: FieldSpec, value: Any) -> Any:
    """``value`` as the field's type, or the default when it cannot be (a run stored by an older version)."""
    try:
        if spec.type in (int, float):
            number = spec.type(value)
            return spec.default if isinstance(number, float) and math.isnan(number) else number
        if spec.type is tuple:
            return tuple(value) if isinstance(value, (list, tuple)) else spec.default
        if spec.type is bool:
            return bool(value)
        return value if isinstance(value, str) else spec.default
    except (TypeError, ValueError):
        return spec.default


def render_field(spec: FieldSpec, value: Any, key: str) -> Any:
    """One widget for a config field, showing ``value``; returns what the user entered (typed like the field)."""
    label = spec.name
    value = _shown_value(spec, value)
    help_text = (spec.help or "") + _range_help(spec)
    if spec.type is bool:
        return st.checkbox(label, value=bool(value), key=key, help=help_text)
    if spec.type is tuple:
        items = [str(v) for v in (value or ())]
        if spec.choices:
            picked = st.multiselect(
                label, list(spec.choices), default=[v for v in items if v in spec.choices], key=key, help=help_text
            )
            return tuple(picked)
        text = st.text_input(label, value=", ".join(items), key=key, help=help_text + " Comma-separated.")
        return tuple(v.strip() for v in text.split(",") if v.strip())
    if spec.type is str:
        if spec.choices:
            options = list(spec.choices)
            index = options.index(value) if value in options else 0
            shown = lambda v: v if v != "" else "'' (see help)"  # noqa: E731 - an empty choice still reads
            return st.selectbox(label, options, index=index, key=key, help=help_text, format_func=shown)
        return st.text_input(label, value="" if value is None else str(value), key=key, help=help_text)
    if spec.type is int:
        low = None if spec.low is None else int(math.floor(spec.low)) + (1 if spec.low_open else 0)
        high = None if spec.high is None else int(spec.high)
        start = int(_clamp(int(value), low, high))
        step = int(spec.step) if spec.step else 1
        return int(
            st.number_input(label, min_value=low, max_value=high, value=start, step=step, key=key, help=help_text)
        )
    if spec.type is float:
        low = None if spec.low is None or spec.low_open else float(spec.low)
        high = None if spec.high is None else float(spec.high)
        start = float(_clamp(float(value), low, high))
        if spec.step:
            step = float(spec.step)
        elif spec.log:
            step = float(10.0 ** math.floor(math.log10(abs(start)))) if start else 1e-4
        else:
            span = (spec.high or 1.0) - (spec.low or 0.0)
            step = 0.01 if span <= 10 else 0.1
        return float(
            st.number_input(
                label, min_value=low, max_value=high, value=start, step=step, format="%g", key=key, help=help_text
            )
        )
    return st.text_input(label, value=str(value), key=key, help=help_text)


def _inherited_fields(cls: type) -> set[str]:
    """Fields a config inherits from a base config (e.g. the split settings every dataset shares): shown last."""
    names: set[str] = set()
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            names.update(f.name for f in dataclasses.fields(base))
    return names


def render_config(
    cls: type[Config],
    key: str,
    values: Mapping[str, Any] | None = None,
    *,
    columns: int = 1,
    skip: tuple = (),
    choices: Mapping[str, tuple] | None = None,
) -> dict[str, Any]:
    """Widgets for every field of ``cls`` (initial values from ``values``, else the defaults); returns them all.

    Args:
        cls: the config dataclass.
        key: widget-key prefix; include whatever should reset the widgets when it changes (e.g. a run id).
        values: initial values (missing fields use the defaults).
        columns: lay the fields out in this many columns.
        skip: field names not to show.
        choices: narrower choices for some fields (e.g. the fusions a method works with); such a widget gets its own
            key per set of choices, so it never holds a value it no longer offers.
    """
    values = dict(values or {})
    inherited = _inherited_fields(cls)
    specs = [s for s in cls.field_specs() if s.name not in skip]
    specs = [s for s in specs if s.name not in inherited] + [s for s in specs if s.name in inherited]
    if not specs:
        st.caption("No settings.")
        return {}
    cols = st.columns(columns) if columns > 1 else [st.container()]
    current = {**values, **{s.name: _peek(s, values, key) for s in specs}}
    specs = [s for s in specs if s.applies(current)]  # e.g. no momentum under Adam, no step_size with schedule none
    out: dict[str, Any] = {}
    for i, spec in enumerate(specs):
        wkey = f"{key}.{spec.name}"
        narrow = (choices or {}).get(spec.name)
        if narrow is not None and tuple(narrow) != tuple(spec.choices or ()):
            spec = dataclasses.replace(spec, choices=tuple(narrow))
            wkey = f"{wkey}.{'|'.join(map(str, narrow))}"
        with cols[i % len(cols)]:
            out[spec.name] = render_field(spec, values.get(spec.name, spec.default), wkey)
    return out


def modality_choices(cls: type[Config], modalities: list[str] | tuple[str, ...] | None) -> dict[str, tuple]:
    """Choices for the fields of ``cls`` that name modalities (``param(modalities=True)``): the data set's
    modality names ('' first for a single name: the field's "none / default"). Empty when the names are unknown."""
    if not modalities:
        return {}
    return {
        s.name: tuple(modalities) if s.type is tuple else ("", *modalities) for s in cls.field_specs() if s.modalities
    }


def _peek(spec: FieldSpec, values: Mapping[str, Any], key: str) -> Any:
    """A field's current value before its widget is drawn: the widget's state when it has one, else ``values``."""
    return st.session_state.get(f"{key}.{spec.name}", values.get(spec.name, spec.default))


def changed_fields(values: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``base`` (tuples and lists compare equal item by item)."""
    out = {}
    for name, value in values.items():
        old = base.get(name)
        same = (
            list(value) == list(old)
            if isinstance(value, (tuple, list)) and isinstance(old, (tuple, list))
            else value == old
        )
        if not same:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def defaults_of(cls: type[Config]) -> dict[str, Any]:
    """The default value of every field of ``cls``."""
    return {s.name: s.default for s in cls.field_specs()}


def cli_argv(
    dataset: str, method: str, overrides: Mapping[str, Mapping[str, Any]], name: str = "", tags: tuple = ()
) -> list[str]:
    """The arguments of ``python -m mmviz train`` equivalent to a form's choices."""
    argv = ["python", "-m", "mmviz", "train", "--dataset", dataset, "--method", method]
    for section, fields in overrides.items():
        if section == "probes":
            for probe, pf in fields.items():
                argv += [arg for k, v in pf.items() for arg in ("--set", f"probes.{probe}.{k}={_cli_value(v)}")]
        else:
            argv += [arg for k, v in fields.items() for arg in ("--set", f"{section}.{k}={_cli_value(v)}")]
    if name:
        argv += ["--name", name]
    for tag in tags:
        argv += ["--tag", tag]
    return argv


def cli_command(
    dataset: str, method: str, overrides: Mapping[str, Mapping[str, Any]], name: str = "", tags: tuple = ()
) -> str:
    """:func:`cli_argv` as one shell-quoted line (for pasting into a terminal: a path with spaces or ``;`` stays one
    argument)."""
    return shlex.join(cli_argv(dataset, method, overrides, name, tags))


def _cli_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)
