"""Balancing methods: the base class, the registry and one module per method."""

from mmviz.balancing import (
    agm,  # noqa: F401
    amd,  # noqa: F401
    aux_loss,  # noqa: F401
    baseline,  # noqa: F401  (registers the methods)
    cggm,  # noqa: F401
    gblending,  # noqa: F401
    mla,  # noqa: F401
    ogm_ge,  # noqa: F401
    pmr,  # noqa: F401
    relearn,  # noqa: F401
    ume,  # noqa: F401
)
from mmviz.balancing.base import BalancingMethod, mask_batch
from mmviz.balancing.registry import METHODS, create_method

__all__ = ["METHODS", "BalancingMethod", "create_method", "mask_batch"]
