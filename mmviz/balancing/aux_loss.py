"""The multi-loss baseline: fused cross-entropy plus one cross-entropy per modality (Du et al., ICML 2023)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.registry import METHODS
from mmviz.balancing.settings import MethodConfig, modality_map, parse_modality_map
from mmviz.config import param
from mmviz.contracts import ModelOutput, StepInfo, TrainContext


@dataclasses.dataclass(frozen=True)
class AuxLossConfig(MethodConfig):
    """Settings of the multi-loss baseline."""

    weight: float = param(
        1.0, "Weight w of every modality's own cross-entropy (L = CE(fused) + sum_m w_m CE(o^m)).", low=0.0, high=100.0
    )
    weights: tuple[str, ...] = modality_map(
        "Per-modality overrides of 'weight' (e.g. --set method.weights=b=2,a=0.5).", low=0.0, high=100.0, example="b=2"
    )


@METHODS.register("aux_loss", kind="objective")
class AuxLoss(BalancingMethod):
    """Multi-loss baseline (Du et al., "On Uni-Modal Feature Learning in Supervised Multi-Modal Learning", ICML 2023).

    The loss is the fused cross-entropy plus a weighted cross-entropy of each modality's own logits,
    ``L = CE(o, y) + sum_m w_m CE(o^m, y)``, so every encoder receives a learning signal of its own that
    the dominant modality cannot take away. The per-modality logits are the fusion's exact split (head
    columns plus ``b / M`` for concat, each branch for sum, the shared head for shared_head), so no
    extra parameters are added and prediction stays the fused head. Default: all weights 1 (the
    simplest form; per-modality overrides via ``weights``). Needs per-modality logits (concat, sum,
    shared_head). Logs ``aux_loss/loss/<m>`` and ``coef/aux_loss/<m>`` every step.
    """

    config_cls = AuxLossConfig
    requires = frozenset({"unimodal_logits"})

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        overrides = parse_modality_map(self.config, "weights")
        self.weights = {m: overrides.get(m, self.config.weight) for m in ctx.modalities}

    def compute_loss(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> torch.Tensor:
        y = batch["label"]
        loss = F.cross_entropy(out.logits, y)
        for m in self.ctx.modalities:
            uni = F.cross_entropy(out.unimodal_logits[m], y)
            loss = loss + self.weights[m] * uni
            self.log(f"aux_loss/loss/{m}", uni.detach())
            self.log(f"coef/aux_loss/{m}", self.weights[m])
        return loss
