"""Per-encoder gradient norms before and after the balancing method modulates them."""

from __future__ import annotations

import dataclasses

import torch

from mmviz.config import param
from mmviz.contracts import ModelOutput, StepInfo, TrainContext
from mmviz.measures import compute_group_norm
from mmviz.probes.base import Probe, ProbeConfig
from mmviz.probes.common import encoder_groups
from mmviz.probes.registry import PROBES


@dataclasses.dataclass(frozen=True)
class GradNormConfig(ProbeConfig):
    """Settings of the grad_norm probe."""

    every_n_steps: int = param(1, "Run at most every N optimiser steps.", low=1, high=1_000_000)
    max_overhead: float = param(
        0.012,
        "Largest share of the training steps' time this probe may take (0 = no budget).",
        low=0.0,
        high=1.0,
        step=0.0005,
    )


@PROBES.register("grad_norm", config=GradNormConfig, cadence="step", keys=("grad_norm_pre/<m>", "grad_norm/<m>"))
class GradNormProbe(Probe):
    """L2 norm of each modality encoder's gradient, before and after the method's modulation (per step).

    The modality that reduces the fused loss fastest receives the larger gradient and starves the others
    (OGM-GE, Peng et al., CVPR 2022; the dashboard signal of METHODS.md §0). ``grad_norm_pre/<m>`` is measured
    right after backward, before the balancing method touches the gradients; ``grad_norm/<m>`` right before the
    optimiser step, after it has — for the baseline both are equal, for OGM-GE or CGGM the gap is the
    modulation. Values stay on the device and are synced when the logger flushes. When no gradient was replaced
    or modified in place in between (same tensors, unchanged autograd version counters), the second value is the
    first one, not recomputed. Default: at most every step, within 1.2% of the training steps' time.
    """

    config_cls = GradNormConfig

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.groups = encoder_groups(ctx)
        self._pre: dict[str, tuple[torch.Tensor, list]] = {}

    def on_after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        self._pre = {}
        for m, params in self.groups.items():
            grads = [p.grad for p in params]
            norm = compute_group_norm(grads, self.ctx.device)
            self._pre[m] = (norm, [(g, None if g is None else g._version) for g in grads])
            self.log(f"grad_norm_pre/{m}", norm)

    def on_before_optimizer_step(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        pre, self._pre = self._pre, {}
        for m, params in self.groups.items():
            if m in pre and all(
                p.grad is g and (g is None or g._version == v) for p, (g, v) in zip(params, pre[m][1], strict=True)
            ):
                norm = pre[m][0]  # untouched since after_backward
            else:
                norm = compute_group_norm([p.grad for p in params], self.ctx.device)
            self.log(f"grad_norm/{m}", norm)
