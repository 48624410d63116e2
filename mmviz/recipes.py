"""Training recipes: one setting (``method.recipe``) that picks the optimiser, schedule, epochs, batch size and the
method's own windows of a paper's official code, or mmviz's quick defaults for small data.

A method with a published recipe derives its config from :class:`RecipeSetting` (so ``recipe`` is an ordinary
``config.param`` field: the CLI's ``--set method.recipe=paper``, the dashboard's Method tab and validation get it)
and declares ``paper_recipe``, a :class:`Recipe`. :func:`resolve_recipe` runs inside
:func:`mmviz.training.config.build_run_config`: the chosen recipe's values are written into the run config
unless the same call sets that field explicitly, so the stored config is the resolved one and a fork keeps it.
The ``quick`` recipe is the defaults of the same fields (choosing it undoes ``paper`` in a fork or restart).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mmviz.config import Config, param

RECIPES = ("quick", "paper")
RECIPE_SECTIONS = ("model", "optim", "train", "method")


@dataclasses.dataclass(frozen=True)
class RecipeSetting(Config):
    """Base of the configs of methods that have a published recipe: adds the ``recipe`` field (shown first)."""

    recipe: str = param(
        "quick",
        "Training recipe: 'quick' = mmviz's defaults for small data (Adam 1e-3, batch 64, 30 epochs, the method's "
        "windows over the whole run); 'paper' = the optimiser, schedule, epochs, batch and windows of the paper's "
        "official code (the settings it implies are listed below and stored with the run; explicit settings win).",
        choices=RECIPES,
    )


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The settings of one published recipe, by run-config section, with where each value comes from.

    Args:
        settings: ``{section: {field: value}}`` with sections from :data:`RECIPE_SECTIONS` (``method`` = the
            method's own config). Epoch windows are 1-based and inclusive, as everywhere in mmviz.
        source: the repository, commit and lines the values were read from (shown with the recipe).
        notes: what the recipe cannot reproduce (e.g. a scheduler mmviz does not have).
    """

    settings: Mapping[str, Mapping[str, Any]]
    source: str
    notes: str = ""

    def items(self) -> list[tuple[str, str, Any]]:
        """``(section, field, value)`` for every setting, sections in :data:`RECIPE_SECTIONS` order."""
        return [(s, k, v) for s in RECIPE_SECTIONS for k, v in (self.settings.get(s) or {}).items()]


def _paper(method: Any) -> Recipe | None:
    """The paper recipe of a method's registry entry (its ``paper_recipe`` flag) or class (set from it)."""
    flags = getattr(method, "flags", None)
    return flags.get("paper_recipe") if flags is not None else getattr(method, "paper_recipe", None)


def method_recipe(method_cls: type, recipe: str) -> Recipe | None:
    """The :class:`Recipe` named ``recipe`` of a method class (``quick``: the defaults of the paper's fields)."""
    paper: Recipe | None = _paper(method_cls)
    if paper is None or recipe not in RECIPES:
        return None
    if recipe == "paper":
        return paper
    from mmviz.training.config import ModelConfig, OptimConfig, TrainConfig

    classes = {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig, "method": method_cls.config_cls}
    quick: dict[str, dict[str, Any]] = {}
    for section, field, _ in paper.items():
        default = next(s.default for s in classes[section].field_specs() if s.name == field)
        quick.setdefault(section, {})[field] = default
    return Recipe(quick, "mmviz's defaults (quick recipe)")


def resolve_recipe(
    d: dict[str, Any], explicit: Mapping[str, Mapping[str, Any]], base: Mapping[str, Any] | None
) -> list[tuple[str, str, Any]]:
    """Write the chosen recipe's values into the raw run-config dict ``d`` (in place); returns what was applied.

    ``paper`` is applied when the run is new for this method (no base, or the base is another method) or when the
    base used ``quick``; ``quick`` is applied (the defaults of the paper recipe's fields) only to undo a base's
    ``paper`` recipe of the same method, so a fork into another method inherits its parent's optimiser. A fork or
    restart keeping the same recipe keeps the base's (already resolved) values. A field set explicitly in this call
    (``explicit``, by ``--set`` section) is never changed.

    Args:
        d: the merged raw config (sections ``model``, ``optim``, ``train``, ``method_params``).
        explicit: the fields this call sets, ``{section: {field: value}}`` (``method`` for the method's).
        base: the stored config a fork/restart starts from, or None.
    """
    from mmviz.balancing import METHODS

    method_cls = METHODS.get(d["method"])  # its declaration (torch-free): name, config_cls and the paper recipe
    if _paper(method_cls) is None:
        return []
    chosen = str(d["method_params"].get("recipe", "quick"))
    same_method = bool(base) and base.get("method") == d["method"]
    base_recipe = str((base or {}).get("method_params", {}).get("recipe", "quick")) if same_method else None
    if chosen == "quick" and base_recipe != "paper":
        return []  # quick keeps what is there: the defaults, or what a fork or restart inherits
    if same_method and base_recipe == chosen:
        return []
    recipe = method_recipe(method_cls, chosen)
    if recipe is None:  # an invalid name: validation of the method config names it
        return []
    applied = []
    for section, field, value in recipe.items():
        if field in (explicit.get(section) or {}):
            continue
        d["method_params" if section == "method" else section][field] = value
        applied.append((section, field, value))
    return applied


def describe_recipe(method_cls: type, config: Mapping[str, Any]) -> str:
    """One paragraph naming the recipe a stored config uses and the values of the recipe's fields in it.

    Args:
        method_cls: the method's class.
        config: a run config dict (``RunConfig.to_dict()``).
    """
    paper: Recipe | None = _paper(method_cls)
    if paper is None:
        return ""
    chosen = str(config.get("method_params", {}).get("recipe", "quick"))
    parts = []
    for section, field, _ in paper.items():
        values = config.get("method_params" if section == "method" else section, {})
        parts.append(f"{section}.{field}={values.get(field)!r}")
    text = f"Recipe {chosen!r} of {method_cls.name}: " + ", ".join(parts) + "."
    if chosen == "paper":
        text += f" Source: {paper.source}."
        if paper.notes:
            text += f" Not reproduced: {paper.notes}"
    return text


def recipe_summary(method_cls: type) -> str:
    """What ``recipe=paper`` sets for a method, for the dashboard's form (empty when it has no paper recipe)."""
    paper: Recipe | None = _paper(method_cls)
    if paper is None:
        return ""
    items = ", ".join(f"{s}.{k}={v!r}" for s, k, v in paper.items())
    return f"recipe=paper sets {items} (source: {paper.source})." + (
        f" Not reproduced: {paper.notes}" if paper.notes else ""
    )
