"""Frozen dataclass configs with per-field metadata, validation and dict round-trips.

Every configurable object (dataset, model, optimiser, training loop, balancing method, probe) declares
a frozen dataclass deriving from :class:`Config`. Each field is made with :func:`param`, which records
help text, a numeric range, choices and a log-scale hint; the dashboard builds its forms from this
metadata, and :meth:`Config.validate` enforces it at construction time, so a bad setting fails before
the first training step. :meth:`Config.to_dict` / :meth:`Config.from_dict` are the only way a config
enters or leaves the store; unknown keys are an error listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from mmviz.errors import ConfigError, did_you_mean

_MISSING = dataclasses.MISSING


def param(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple | None = None,
    log: bool = False,
    step: float | None = None,
    when: Mapping[str, tuple] | None = None,
    modalities: bool = False,
) -> Any:
    """Declare a config field with a default and the metadata the validator and the UI use.

    Args:
        default: default value (tuples for sequences so configs stay hashable).
        help: one-line help text shown in the dashboard form.
        low, high: inclusive numeric bounds (``low_open=True`` makes the low bound exclusive).
        choices: allowed values for strings (or for each element of a tuple of strings).
        log: hint for the UI to use a log-scale input.
        step: hint for the UI's number input step.
        when: ``{other_field: allowed values}``: the field applies only when each named field of the same config
            has one of those values (e.g. ``momentum`` only with ``name='sgd'``); forms hide it otherwise.
        modalities: the value is a modality name (a string; '' allowed) or a tuple of them: forms offer the
            dataset's modalities to pick from (the method's ``check_config`` still validates the names).
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "choices": choices, "log": log, "step": step}
    if when:
        meta["when"] = {k: tuple(v) for k, v in when.items()}
    if modalities:
        meta["modalities"] = True
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What the UI and the validator know about one config field."""

    name: str
    type: type
    default: Any
    help: str
    low: float | None
    high: float | None
    low_open: bool
    choices: tuple | None
    log: bool
    step: float | None
    when: Mapping[str, tuple] | None = None
    modalities: bool = False

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the field matters given the values of the other fields of its config (see ``param(when=...)``)."""
        return all(values.get(k) in allowed for k, allowed in (self.when or {}).items())


def _type_name(tp: type) -> str:
    if tp is tuple:
        return "list of strings"
    return {int: "an integer", float: "a float", bool: "a boolean", str: "a string"}.get(tp, str(tp))


def _range_text(spec: FieldSpec) -> str:
    lo = "(" if spec.low_open else "["
    low = "-inf" if spec.low is None else f"{spec.low:g}"
    high = "inf" if spec.high is None else f"{spec.high:g}"
    return f"{lo}{low}, {high}]"


def _base_type(annotation: Any) -> type:
    origin = typing.get_origin(annotation)
    if origin is tuple or annotation is tuple:
        return tuple
    if annotation in (int, float, bool, str):
        return annotation
    raise TypeError(f"Unsupported config field type {annotation!r}")


def coerce_value(spec: FieldSpec, value: Any, owner: str) -> Any:
    """Convert ``value`` (possibly a string from ``--set``) to the field's type, or raise ConfigError."""
    tp = spec.type
    bad = ConfigError(
        f"The {spec.name!r} parameter of {owner} must be {_type_name(tp)}"
        + (f" in {_range_text(spec)}" if tp in (int, float) and (spec.low is not None or spec.high is not None) else "")
        + (f" from {', '.join(map(repr, spec.choices))}" if spec.choices else "")
        + f". Got {value!r} instead."
    )
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise bad
        if tp is int:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                return int(value)
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise bad
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise bad
            return value
        if tp is tuple:
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, (list, tuple)):
                items = [str(v) for v in value]
            else:
                raise bad
            return tuple(items)
    except (TypeError, ValueError):
        raise bad from None
    raise bad


class Config:
    """Mixin for frozen dataclass configs: validation, dict round-trip and field specs."""

    _title: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for spec in self.field_specs():
            value = coerce_value(spec, getattr(self, spec.name), self.title())
            object.__setattr__(self, spec.name, value)
        self.validate()

    @classmethod
    def title(cls) -> str:
        """Name used in error messages (the class name unless overridden)."""
        return cls._title or cls.__name__

    @classmethod
    def field_specs(cls) -> list[FieldSpec]:
        """Return the metadata of every field, in declaration order."""
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            m = f.metadata
            specs.append(
                FieldSpec(
                    name=f.name,
                    type=_base_type(hints[f.name]),
                    default=f.default,
                    help=m.get("help", ""),
                    low=m.get("low"),
                    high=m.get("high"),
                    low_open=m.get("low_open", False),
                    choices=m.get("choices"),
                    log=m.get("log", False),
                    step=m.get("step"),
                    when=m.get("when"),
                    modalities=m.get("modalities", False),
                )
            )
        return specs

    def validate(self) -> None:
        """Check every field against its range and choices; raise ConfigError naming the first bad one."""
        owner = self.title()
        for spec in self.field_specs():
            value = getattr(self, spec.name)
            if spec.type in (int, float):
                ok = not (isinstance(value, float) and math.isnan(value))
                if spec.low is not None:
                    ok = ok and (value > spec.low if spec.low_open else value >= spec.low)
                if spec.high is not None:
                    ok = ok and value <= spec.high
                if not ok:
                    raise ConfigError(
                        f"The {spec.name!r} parameter of {owner} must be {_type_name(spec.type)} in "
                        f"{_range_text(spec)}. Got {value!r} instead."
                    )
            if spec.choices is not None:
                values = value if spec.type is tuple else (value,)
                for v in values:
                    if v not in spec.choices:
                        raise ConfigError(
                            f"The {spec.name!r} parameter of {owner} must be one of "
                            f"{', '.join(map(repr, spec.choices))}. Got {v!r} instead.{did_you_mean(v, spec.choices)}"
                        )
        self.check()

    def check(self) -> None:
        """Cross-field checks; override in subclasses (raise ConfigError)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the field values (tuples become lists)."""
        return {s.name: list(v) if isinstance(v := getattr(self, s.name), tuple) else v for s in self.field_specs()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, *, where: str | None = None):
        """Build from a dict; unknown keys are an error that lists the valid ones."""
        data = dict(data or {})
        names = [s.name for s in cls.field_specs()]
        for key in data:
            if key not in names:
                prefix = f"{where}." if where else ""
                raise ConfigError(
                    f"Unknown setting {prefix + key!r} for {cls.title()}."
                    f"{did_you_mean(prefix + key, [prefix + n for n in names])} "
                    f"Valid keys: {', '.join(prefix + n for n in names) or '(none)'}."
                )
        return cls(**data)

    def replace(self, **changes: Any):
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class EmptyConfig(Config):
    """A config with no fields (for methods and probes without parameters)."""
