"""Setting types several balancing methods share, declared once: the modulation window and the modality map.
Torch-free: the declarations in :mod:`mmviz.balancing.configs` use them.

- :class:`ModulationWindow`: a config mixin for methods that act only in an epoch window. It declares the
  ``modulation_starts`` / ``modulation_ends`` fields once (defaults: the whole run), their one ordering check and
  :meth:`ModulationWindow.active`; a method's config derives from it and declares neither field again (list it
  before :class:`mmviz.recipes.RecipeSetting` among the bases, so the form shows ``recipe`` first, then the window).
- :func:`modality_map`: a per-modality setting written as ``modality=value`` entries (``--set
  method.weights=b=2,a=0.5``), with numeric bounds. Its syntax and bounds are checked when the config is built
  (:class:`MethodConfig`), its names once against the dataset's modalities before a run starts
  (:func:`check_modality_names`, called by ``BalancingMethod.check_compatible``), and
  :func:`parse_modality_map` reads it as ``{modality: float}``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mmviz.config import Config, param
from mmviz.errors import ConfigError

_MAP = "modality_map"  # field metadata key: (low, high) bounds of the values


class MethodConfig(Config):
    """Base of a method's config: checks its modality-map settings when it is built (subclasses that override
    ``check`` call ``super().check()``)."""

    def check(self) -> None:
        check_modality_maps(self)


@dataclasses.dataclass(frozen=True)
class ModulationWindow(MethodConfig):
    """Mixin declaring the epoch window ``modulation_starts`` .. ``modulation_ends`` (1-based, inclusive) in which a
    method acts (OGM-GE's and AGM's gradient modulation, PMR's prototypical loss)."""

    modulation_starts: int = param(
        1,
        "First epoch (1-based, inclusive) in which the method acts (its modulation or extra loss).",
        low=1,
        high=100000,
    )
    modulation_ends: int = param(
        100000, "Last epoch (1-based, inclusive) in which the method acts (default: the whole run).", low=1, high=100000
    )

    def check(self) -> None:
        super().check()
        if self.modulation_ends < self.modulation_starts:
            raise ConfigError(
                f"The 'modulation_ends' parameter of {self.title()} must be >= 'modulation_starts' "
                f"({self.modulation_starts}). Got {self.modulation_ends!r} instead."
            )

    def active(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` lies in the window."""
        return self.modulation_starts <= epoch <= self.modulation_ends


def modality_map(help: str, *, low: float, high: float, example: str) -> Any:
    """Declare a ``modality=value`` setting (a tuple of entries; empty by default) with values in [low, high]."""
    field = param((), f"{help} Entries 'modality=value' with value in [{low:g}, {high:g}], e.g. '{example}'.")
    return dataclasses.field(default=(), metadata={**field.metadata, _MAP: (low, high)})


def modality_map_fields(config: Config) -> list[str]:
    """Names of the modality-map settings of ``config``."""
    return [f.name for f in dataclasses.fields(config) if _MAP in f.metadata]


def parse_modality_map(config: Config, name: str) -> dict[str, float]:
    """``{modality: value}`` of the modality-map setting ``name``; ConfigError (one sentence) on a bad entry."""
    low, high = next(f.metadata[_MAP] for f in dataclasses.fields(config) if f.name == name)
    out: dict[str, float] = {}
    for item in getattr(config, name):
        modality, eq, text = str(item).partition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not eq or not modality.strip() or not low <= value <= high or modality.strip() in out:
            raise ConfigError(
                f"The {name!r} parameter of {config.title()} must hold entries 'modality=value', each modality once, "
                f"with value in [{low:g}, {high:g}]. Got {item!r} instead."
            )
        out[modality.strip()] = value
    return out


def check_modality_maps(config: Config) -> None:
    """Check the syntax and bounds of every modality-map setting of ``config`` (at construction)."""
    for name in modality_map_fields(config):
        parse_modality_map(config, name)


def check_modality_names(config: Config, modalities: tuple[str, ...]) -> None:
    """Check that every modality-map setting names only the dataset's modalities (before a run starts)."""
    for name in modality_map_fields(config):
        for m in parse_modality_map(config, name):
            if m not in modalities:
                raise ConfigError(
                    f"The {name!r} parameter of {config.title()} names modality {m!r}, which the dataset does not "
                    f"have. Use {', '.join(map(repr, modalities))}."
                )
