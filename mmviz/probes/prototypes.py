"""Class-prototype geometry of each modality's val features: spread, separation, margin and drift."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from mmviz.contracts import StepInfo
from mmviz.measures import compute_class_means, compute_prototype_drift, compute_prototype_stats
from mmviz.probes.base import EpochProbeConfig, Probe
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
class PrototypesProbe(Probe):
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

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: Any) -> None:
        labels = evaluation.labels
        for m in self.ctx.modalities:
            z = evaluation.features[m]
            protos, counts = compute_class_means(z.double(), labels, self.ctx.num_classes)
            present = counts > 0
            stats = compute_prototype_stats(z, labels, protos, present)
            self.log(f"proto/intra/{m}", stats["intra"])
            self.log(f"proto/inter/{m}", stats["inter"])
            if math.isfinite(stats["margin"]):
                self.log(f"proto/margin/{m}", stats["margin"])
            if m in self.previous:
                before, was_present = self.previous[m]
                self.log(f"proto/drift/{m}", compute_prototype_drift(before, protos, present & was_present))
            self.previous[m] = (protos, present)
