"""The uni-modal ensemble: each modality trained alone through its own logits, predictions summed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.registry import METHODS
from mmviz.contracts import ModelOutput, StepInfo


@METHODS.register("ume", kind="objective")
class UME(BalancingMethod):
    """Uni-modal ensemble (Du et al., "On Uni-Modal Feature Learning in Supervised Multi-Modal Learning", ICML 2023).

    Training drops the fused loss entirely: the loss is ``sum_m CE(o^m, y)`` over each modality's own
    logits, so no modality competes with another for the learning signal. With the concat fusion the
    head-split logits ``o^m = W^m z^m + b / M`` depend only on modality m, so this is exactly M
    unimodal models that share only the bias; with sum and shared_head each branch is its own classifier.
    Prediction is the sum of the per-modality logits (an ensemble), which for concat, sum and
    shared_head equals the fused output by construction. Needs per-modality logits (concat, sum,
    shared_head). Logs ``ume/loss/<m>`` every step.
    """

    requires = frozenset({"unimodal_logits"})

    def compute_loss(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> torch.Tensor:
        y = batch["label"]
        losses = {m: F.cross_entropy(out.unimodal_logits[m], y) for m in self.ctx.modalities}
        for m, v in losses.items():
            self.log(f"ume/loss/{m}", v.detach())
        return torch.stack(list(losses.values())).sum()

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ModelOutput:
        out = model(batch)
        ensemble = torch.stack([out.unimodal_logits[m] for m in out.features]).sum(0)
        return ModelOutput(features=out.features, logits=ensemble, unimodal_logits=out.unimodal_logits)
