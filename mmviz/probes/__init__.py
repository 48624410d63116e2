"""Diagnostic probes: per-modality signals of modality imbalance, logged while a run trains."""

# Importing the probe modules registers them (explicitly, no discovery by file name).
from mmviz.probes import (  # noqa: E402, F401, I001
    grad_conflict,
    grad_norm,
    imbalance,
    param_dist,
    prototypes,
    score_ratio,
    separability,
    shapley,
    snapshots,
    unimodal_acc,
)
from mmviz.probes.base import Probe, ProbeConfig
from mmviz.probes.registry import PROBES, create_probes

__all__ = ["PROBES", "Probe", "ProbeConfig", "create_probes"]
