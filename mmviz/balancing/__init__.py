"""Balancing methods: the base class, the registry and one module per method."""

from mmviz.balancing import baseline  # noqa: F401  (registers the methods)
from mmviz.balancing.base import BalancingMethod, mask_batch
from mmviz.balancing.registry import METHODS, create_method

__all__ = ["METHODS", "BalancingMethod", "create_method", "mask_batch"]
