"""Class-prototype geometry of each modality's val features: spread, separation, margin and drift."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from mmviz.contracts import StepInfo
from mmviz.measures import compute_class_means, compute_prototype_drift, compute_prototype_stats
from mmviz.probes.base import AnalysisProbe, EpochProbeConfig
from mmviz.probes.common import record_features, val_arrays
from mmviz.probes.registry import PROBES


@dataclasses.dataclass(frozen=True)
class PrototypesConfig(EpochProbeConfig):
    """Settings of the prototypes probe."""


@PROBES.register(
    "prototypes",
    config=PrototypesConfig,
    cadence="epoch",
    keys=("proto/intra/<m>", "proto/inter/<m>", "proto/margin/<m>", "proto/drift/<m>"),
)
class PrototypesProbe(AnalysisProbe):
    """Geometry of each modality's class prototypes (class means of its val features), per epoch.

    Prototype views of imbalance follow PMR (Fan et al., CVPR 2023), which steers training by distances to class
    prototypes. ``proto/intra/<m>`` is the mean distance of a val sample to its class prototype, ``proto/inter/<m>``
    the mean distance between pairs of prototypes, ``proto/margin/<m>`` their ratio inter / intra (scale-free;
    higher = better separated classes), and ``proto/drift/<m>`` the mean distance each prototype moved since the
    previous evaluated epoch (absent the first time): a modality whose prototypes stop moving has stopped
    learning. Prototypes here are val class means, so the measures describe the val features on their own.
    Default: every epoch.
    """

    config_cls = PrototypesConfig

    def __init__(self, config: PrototypesConfig | None = None) -> None:
        super().__init__(config)
        self.previous: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def measure(self, epoch: int, info: StepInfo, evaluation: Any, record: dict) -> dict[str, Any]:
        return val_arrays(self.ctx, evaluation)

    def analyse(self, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[str, float]]:
        feats, labels = record_features(meta, arrays)
        rows = []
        for m in meta["modalities"]:
            z = feats[m]
            protos, counts = compute_class_means(z.double(), labels, meta["num_classes"])
            present = counts > 0
            stats = compute_prototype_stats(z, labels, protos, present)
            rows.append((f"proto/intra/{m}", stats["intra"]))
            rows.append((f"proto/inter/{m}", stats["inter"]))
            if math.isfinite(stats["margin"]):
                rows.append((f"proto/margin/{m}", stats["margin"]))
            if m in self.previous:
                before, was_present = self.previous[m]
                rows.append((f"proto/drift/{m}", float(compute_prototype_drift(before, protos, present & was_present))))
            self.previous[m] = (protos, present)
        return rows
