"""Diagnostic probes: per-modality signals of modality imbalance, logged while a run trains."""

from mmviz.probes.base import Probe, ProbeConfig
from mmviz.probes.registry import PROBES, create_probes

__all__ = ["PROBES", "Probe", "ProbeConfig", "create_probes"]
