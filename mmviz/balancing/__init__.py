"""Balancing methods: the registry, each method's declaration (torch-free) and one implementation module per method.

Importing this package does not import torch: it declares every method (:mod:`mmviz.balancing.configs`); an
implementation is imported when first used (``METHODS.get(name).factory``). ``BalancingMethod`` and ``mask_batch``
are imported on first access.
"""

from typing import Any

from mmviz.balancing import configs  # noqa: F401  (declares the methods)
from mmviz.balancing.registry import METHODS, create_method

__all__ = ["METHODS", "BalancingMethod", "create_method", "mask_batch"]


def __getattr__(name: str) -> Any:
    if name in ("BalancingMethod", "mask_batch"):
        from mmviz.balancing import base

        return getattr(base, name)
    raise AttributeError(f"module 'mmviz.balancing' has no attribute {name!r}")
