"""The registry of balancing methods."""

from __future__ import annotations

from mmviz.config import Config
from mmviz.registry import Registry

METHODS: Registry = Registry("balancing method", class_flags=("requires", "paper_recipe"))


def create_method(name: str, config: Config | None = None):
    """Instantiate balancing method ``name`` with ``config`` (its defaults when None)."""
    entry = METHODS.get(name)
    return entry.factory(config if config is not None else entry.config_cls())
