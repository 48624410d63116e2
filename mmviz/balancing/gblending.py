"""G-Blending: per-head loss weights from each head's generalisation and overfitting (METHODS.md §7.2)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.registry import METHODS
from mmviz.config import Config, param
from mmviz.contracts import EvalResult, ModelOutput, StepInfo, TrainContext
from mmviz.measures import eval_mode

FUSED = "fused"


@dataclasses.dataclass(frozen=True)
class GBlendingConfig(Config):
    """Settings of G-Blending."""

    super_epoch: int = param(
        5,
        "Epochs per re-estimation window of the blending weights (BalanceMM: 10 of 30 epochs; 5 suits our short runs).",
        low=1,
        high=10000,
    )
    min_delta_o: float = param(
        0.01,
        "Lower clip of |Delta O| in w ~ Delta G / Delta O^2 (keeps a head that does not "
        "overfit from taking every weight at 1 / 0).",
        low=0.0,
        low_open=True,
        high=10.0,
        log=True,
    )
    min_weight: float = param(
        0.05,
        "Floor of every head's weight: w = floor + (1 - K floor) * w_raw (keeps the fused "
        "head, used for prediction, trained).",
        low=0.0,
        high=0.25,
    )


def compute_blend_weights(
    delta_g: torch.Tensor, delta_o: torch.Tensor, min_delta_o: float, min_weight: float = 0.0
) -> torch.Tensor | None:
    """G-Blending weights ``w_k ~ max(Delta G_k, 0) / max(|Delta O_k|, eps)^2``, normalised to sum to 1.

    Args:
        delta_g: ``(K,)`` generalisation gain per head, ``L_val(N) - L_val(N + n)``.
        delta_o: ``(K,)`` change of overfitting per head, ``O(N + n) - O(N)`` with ``O = L_val - L_train``.
        min_delta_o: lower clip of ``|Delta O|``.
        min_weight: floor per head: ``w = min_weight + (1 - K * min_weight) * w_raw``.

    Returns:
        ``(K,)`` weights, or None when no head generalised better (every ``Delta G <= 0``).
    """
    raw = delta_g.clamp_min(0.0) / delta_o.abs().clamp_min(min_delta_o) ** 2
    total = raw.sum()
    if not total > 0:
        return None
    k = raw.numel()
    return min_weight + (1.0 - k * min_weight) * raw / total


@METHODS.register("gblending", kind="objective")
class GBlending(BalancingMethod):
    """G-Blending (Wang, Tran, Feiszli, "What Makes Training Multi-modal Classification Networks Hard?", CVPR 2020).

    Besides the fused head, every modality gets its own linear head on its pooled features (trained by
    the main optimiser); the loss is ``sum_k w_k CE(o_k, y)`` over the fused and the unimodal heads, so
    each encoder also learns from its own head. Every ``super_epoch`` epochs the weights are re-estimated
    from how each head behaved over the last window: with ``O_k = L^val_k - L^train_k``,
    ``Delta O_k = O_k(N+n) - O_k(N)`` and ``Delta G_k = L^val_k(N) - L^val_k(N+n)``, ``w_k ~ Delta G_k / Delta O_k^2``
    (a head that improves on held-out data without overfitting gets more weight), normalised to 1.
    Default: the online variant measured on the jointly trained heads themselves (no per-head copies;
    BalanceMM instead trains a copy of each head for a super-epoch per estimate, (M+1) x the cost), so an
    estimate reflects training under the previous weights; the weights start uniform, and
    ``super_epoch`` defaults to 5 (BalanceMM: 10 of its 30 epochs) so our short runs get several estimates. Pitfalls decided:
    the losses are full eval-mode passes over the train and val splits (means, not BalanceMM's sums over
    different batch counts), taken at initialisation and at the end of every window (BalanceMM's first
    "before" point is after the first super-epoch); ``|Delta O|`` is clipped below by ``min_delta_o``,
    negative ``Delta G`` gives weight 0 before the ``min_weight`` floor, and when no head improved the
    previous weights are kept. Uses the held-out val split (never test), which is also the split for
    model selection. Prediction is the fused head. Works with any fusion. Logs ``coef/gblending/<m>`` and
    ``coef/gblending/fused`` and ``gblending/loss/<k>`` every step; ``gblending/delta_o/<k>``,
    ``gblending/delta_g/<k>``, ``gblending/ogr/<k>`` (``|Delta O / Delta G|``) and ``gblending/overfit/<k>``
    at each re-estimate, with a ``reweight`` event.
    """

    config_cls = GBlendingConfig

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.heads = nn.ModuleDict(
            {m: nn.Linear(ctx.model.feature_dims[m], ctx.num_classes) for m in ctx.modalities}
        ).to(ctx.device)
        self.names = (FUSED, *ctx.modalities)
        self.weights = torch.full((len(self.names),), 1.0 / len(self.names), device=ctx.device)
        self.anchor = self.measure_losses()

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"heads": self.heads} if hasattr(self, "heads") else {}

    def head_logits(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        """Logits of every head: the fused output and each modality's own head on its features."""
        return {FUSED: out.logits, **{m: self.heads[m](out.features[m]) for m in self.ctx.modalities}}

    @torch.no_grad()
    def measure_losses(self) -> dict[str, torch.Tensor]:
        """Mean cross-entropy of every head on the full train and val splits, in eval mode: ``{split: (K,)}``."""
        ctx = self.ctx
        model = ctx.model
        result = {}
        with eval_mode(model, self.heads):
            for split in ("train", "val"):
                total = torch.zeros(len(self.names), device=ctx.device)
                n = 0
                for batch in ctx.splits[split].batches(ctx.eval_batch_size):
                    with ctx.autocast():
                        logits = self.head_logits(model(batch))
                    y = batch["label"]
                    total += torch.stack([F.cross_entropy(logits[k].float(), y, reduction="sum") for k in self.names])
                    n += int(y.shape[0])
                result[split] = total / max(1, n)
        return result

    def compute_loss(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> torch.Tensor:
        y = batch["label"]
        logits = self.head_logits(out)
        losses = torch.stack([F.cross_entropy(logits[k], y) for k in self.names])
        for i, k in enumerate(self.names):
            self.log(f"gblending/loss/{k}", losses[i].detach())
            self.log(f"coef/gblending/{k}", self.weights[i])
        return (self.weights.to(losses.dtype) * losses).sum()

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        if epoch % self.config.super_epoch:
            return
        now = self.measure_losses()
        overfit_then = self.anchor["val"] - self.anchor["train"]
        overfit_now = now["val"] - now["train"]
        delta_o = overfit_now - overfit_then
        delta_g = self.anchor["val"] - now["val"]
        new = compute_blend_weights(delta_g, delta_o, self.config.min_delta_o, self.config.min_weight)
        if new is not None:
            self.weights = new
        self.anchor = now
        ogr = delta_o.abs() / delta_g.abs().clamp_min(1e-8)
        for i, k in enumerate(self.names):
            self.log(f"gblending/delta_o/{k}", delta_o[i])
            self.log(f"gblending/delta_g/{k}", delta_g[i])
            self.log(f"gblending/ogr/{k}", ogr[i])
            self.log(f"gblending/overfit/{k}", overfit_now[i])
            self.log(f"coef/gblending/{k}", self.weights[i])
        self.ctx.event(
            "reweight",
            {
                "epoch": epoch,
                "kept_previous": new is None,
                "weights": dict(zip(self.names, self.weights.tolist(), strict=True)),
            },
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "heads": self.heads.state_dict(),
            "weights": self.weights.detach().cpu().clone(),
            "anchor": {k: v.detach().cpu().clone() for k, v in self.anchor.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.ctx.device if self.ctx is not None else "cpu"
        self.heads.load_state_dict(state["heads"])
        self.weights = state["weights"].to(device)
        self.anchor = {k: v.to(device) for k, v in state["anchor"].items()}
