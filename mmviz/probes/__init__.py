"""Diagnostic probes: per-modality signals of modality imbalance, logged while a run trains.

Importing this package does not import torch: it declares every probe (:mod:`mmviz.probes.configs`); an
implementation is imported when first used (``PROBES.get(name).factory``). ``Probe`` is imported on first access.
"""

from typing import Any

from mmviz.probes import configs  # noqa: F401  (declares the probes)
from mmviz.probes.configs import EpochProbeConfig, ProbeConfig
from mmviz.probes.registry import PROBES, create_probes

__all__ = ["PROBES", "EpochProbeConfig", "Probe", "ProbeConfig", "create_probes"]


def __getattr__(name: str) -> Any:
    if name == "Probe":
        from mmviz.probes.base import Probe

        return Probe
    raise AttributeError(f"module 'mmviz.probes' has no attribute {name!r}")
