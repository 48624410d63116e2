"""The lesson controls as data: what each one sets, its range, and how it is read from and written to a URL.

Controls are grouped: lessons 1, 2, 3 and 5 share the ``imbalance`` group (the same data and method, so
lesson 2 reads lesson 1's run and lesson 5 lesson 3's), lesson 4 has its own ``colearning`` group. A group's
data-knob defaults come from its preset.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from mmviz.teach.presets import PRESETS, DataKnobs

METHOD_CHOICES = ("ogm_ge", "pmr", "mla", "dropout")
METHOD_LABELS = {
    "ogm_ge": "OGM-GE (damp the leading modality's gradient)",
    "pmr": "PMR (prototype loss for the slower modality)",
    "mla": "MLA (train the modalities in turns, shared head)",
    "dropout": "Modality dropout (zero one modality on random batches)",
}
METHOD_SHORT = {"ogm_ge": "OGM-GE", "pmr": "PMR", "mla": "MLA", "dropout": "modality dropout"}
GROUP_PRESET = {"imbalance": "dominant", "colearning": "cotrain"}
KNOB_NAMES = ("strength_a", "strength_b", "sub_a", "sub_b", "noise_a", "noise_b", "classes")


@dataclasses.dataclass(frozen=True)
class Control:
    """One lesson control.

    Attributes:
        name: its key in the URL and in the lesson values.
        label: the widget label.
        kind: ``float`` / ``int`` (sliders) or ``choice`` (radio).
        default: its value when the URL does not set it (data knobs take the group preset's value instead).
        low, high, step: the slider range (numbers only).
        options: the allowed values of a ``choice``.
        help: the widget's help text.
        when: ``(control, allowed values)``: the control only applies when that other control has one of them.
    """

    name: str
    label: str
    kind: str
    default: Any
    low: float = 0.0
    high: float = 1.0
    step: float = 1.0
    options: tuple[str, ...] = ()
    help: str = ""
    when: tuple[str, tuple[str, ...]] | None = None

    def parse(self, text: Any) -> Any:
        """Read a URL value; out-of-range numbers are clamped and snapped to the step.

        Raises:
            ValueError: the text is not a number / not one of the options.
        """
        if self.kind == "choice":
            value = str(text)
            if value not in self.options:
                raise ValueError(f"{self.name}={text!r} (one of {', '.join(self.options)})")
            return value
        try:
            number = float(text)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{self.name}={text!r} (a number from {self.low:g} to {self.high:g})")
        number = min(max(number, self.low), self.high)
        number = self.low + round((number - self.low) / self.step) * self.step
        number = min(max(number, self.low), self.high)
        return int(round(number)) if self.kind == "int" else round(number, 6)

    def format(self, value: Any) -> str:
        """The URL text of a value (``3.0`` -> ``"3"``, ``0.8`` -> ``"0.8"``)."""
        if self.kind == "choice":
            return str(value)
        if self.kind == "int":
            return str(int(value))
        return f"{float(value):g}"

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether this control matters given the other values (see ``when``)."""
        return self.when is None or values.get(self.when[0]) in self.when[1]


def _knob(name: str, label: str, kind: str, low: float, high: float, step: float, help_: str) -> Control:
    return Control(name, label, kind, getattr(DataKnobs(), name), low, high, step, help=help_)


CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control(
            "preset",
            "Data preset",
            "choice",
            "dominant",
            options=("dominant", "balanced"),
            help="'dominant': a is linear and learned first, b needs non-linear features. 'balanced': both linear "
            "and equally strong (the control: no imbalance expected). Choosing a preset resets the data knobs.",
        ),
        _knob(
            "strength_a",
            "How easy is a (signal strength)",
            "float",
            0.0,
            8.0,
            0.5,
            "Distance of a's class means from the origin: 0 = no signal, higher = easier to classify.",
        ),
        _knob("strength_b", "Signal strength of b", "float", 0.0, 8.0, 0.5, "Class-mean norm of b."),
        _knob(
            "sub_a",
            "Non-linearity of a (clusters per class)",
            "int",
            1,
            8,
            1,
            "1 = each class is one blob (linearly separable); more = each class is split into several blobs.",
        ),
        _knob(
            "sub_b",
            "Non-linearity of b (clusters per class)",
            "int",
            1,
            8,
            1,
            "1 = each class is one blob (linearly separable); more = each class is split into several blobs.",
        ),
        _knob("noise_a", "Noise dimensions in a", "int", 0, 128, 16, "Pure-noise features appended to a."),
        _knob("noise_b", "Noise dimensions in b", "int", 0, 128, 16, "Pure-noise features appended to b."),
        _knob("classes", "Number of classes", "int", 2, 20, 1, "Number of classes of both modalities."),
        Control(
            "method",
            "Balancing method",
            "choice",
            "pmr",
            options=METHOD_CHOICES,
            help="The method the balanced run uses (lessons 3 and 5).",
        ),
        Control(
            "alpha",
            "Strength alpha",
            "float",
            1.0,
            0.1,
            3.0,
            0.1,
            when=("method", ("ogm_ge", "pmr")),
            help="OGM-GE: how strongly the leading modality's gradient is damped. PMR: weight of the slower "
            "modality's prototype loss.",
        ),
        Control(
            "drop_p",
            "Drop probability",
            "float",
            0.5,
            0.1,
            0.9,
            0.1,
            when=("method", ("dropout",)),
            help="Share of training batches on which one modality (chosen at random) is zeroed.",
        ),
        Control(
            "p",
            "Helper drop probability p",
            "float",
            0.8,
            0.0,
            1.0,
            0.1,
            help="Share of training batches on which the helper b is replaced by zeros (aggressive modality "
            "dropout: p >= 0.8).",
        ),
    )
}
GROUP_CONTROLS: dict[str, tuple[str, ...]] = {
    "imbalance": ("preset", *KNOB_NAMES, "method", "alpha", "drop_p"),
    "colearning": (*KNOB_NAMES, "p"),
}
SEED = Control("seed", "Seed", "int", 0, 0, 9999, 1, help="Seed of the data and of training (same seed, same runs).")


def group_defaults(group: str) -> dict[str, Any]:
    """The default value of every control of ``group`` (data knobs from the group's preset)."""
    knobs = dataclasses.asdict(PRESETS[GROUP_PRESET[group]])
    out = {}
    for name in GROUP_CONTROLS[group]:
        out[name] = knobs[name] if name in knobs else CONTROLS[name].default
    return out


def preset_values(preset: str) -> dict[str, Any]:
    """The data-knob values of a preset, e.g. for resetting the knobs when the preset changes."""
    return dataclasses.asdict(PRESETS[preset])


def knobs_from(values: Mapping[str, Any]) -> DataKnobs:
    """The :class:`DataKnobs` held in a lesson's values."""
    return DataKnobs(**{k: values[k] for k in KNOB_NAMES})
