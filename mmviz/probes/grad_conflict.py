"""Gradient conflict between each modality's unimodal loss and the fused loss, on that modality's encoder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from mmviz.contracts import ModelOutput, StepInfo, TrainContext
from mmviz.measures import compute_grad_cosine
from mmviz.probes.base import Probe
from mmviz.probes.common import autocast_factory, encoder_groups
from mmviz.probes.configs import GradConflictConfig


@contextlib.contextmanager
def preserved_state(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Restore the model's buffers (BatchNorm running statistics) and the global RNG (dropout) on exit."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for b, copy in saved:
                b.copy_(copy)


class GradConflictProbe(Probe):
    """Cosine between the gradients of the unimodal loss CE(o^m, y) and the fused loss CE(o, y) on encoder m.

    Gradient alignment between unimodal and multimodal objectives is the quantity CGGM (Guo et al., NeurIPS
    2024) and gradient-integration methods act on: near 1 the fused loss trains encoder m as if it were alone;
    near 0 or negative the fused objective pulls the encoder away from what its own modality would learn (the
    fused loss is satisfied by another modality). When due it repeats the step's forward on the same batch in the
    same (train) mode and takes both gradients with ``torch.autograd.grad`` (two backward passes: encoder m's
    unimodal logits depend on no other encoder, so one backward of the summed unimodal losses serves all) —
    parameters' ``.grad`` are never touched, BatchNorm buffers and the global RNG are restored afterwards, so
    training is unchanged. Uses head-split logits: absent for FiLM and gated fusions. A call costs about one training
    step; default: at most every 20 steps, within 0.5% of the training steps' time, its first call included (it is
    no warm-up: the step before it has warmed up the same forward and backward).
    """

    config_cls = GradConflictConfig
    first_call_is_warm_up = False  # a forward and two backward passes, warmed up by the training step before it

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.groups = {m: [p for p in ps if p.requires_grad] for m, ps in encoder_groups(ctx).items()}
        self.enabled = "unimodal_logits" in ctx.model.capabilities

    def on_after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        if not self.enabled:
            return
        model, labels = self.ctx.model, batch["label"]
        mods = [m for m in self.ctx.modalities if self.groups[m]]
        flat = [p for m in mods for p in self.groups[m]]
        with preserved_state(model, self.ctx.device), torch.enable_grad():
            with autocast_factory(self.ctx)():
                again = model(batch)
            fused = F.cross_entropy(again.logits.float(), labels)
            # encoder m's unimodal logits depend on no other encoder, so one backward of the summed unimodal
            # losses gives every encoder its own unimodal gradient
            uni = sum(F.cross_entropy(again.unimodal_logits[m].float(), labels) for m in mods)
            g_fused = torch.autograd.grad(fused, flat, retain_graph=True, allow_unused=True)
            g_uni = torch.autograd.grad(uni, flat, allow_unused=True)
        start = 0
        for m in mods:
            n = len(self.groups[m])
            self.log(
                f"conflict/cos/{m}",
                compute_grad_cosine(g_uni[start : start + n], g_fused[start : start + n], device=self.ctx.device),
            )
            start += n
