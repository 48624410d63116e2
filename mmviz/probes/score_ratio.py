"""The OGM-GE confidence score of each modality and its ratio to the others, per step."""

from __future__ import annotations

import dataclasses

import torch

from mmviz.config import param
from mmviz.contracts import ModelOutput, StepInfo, TrainContext
from mmviz.measures import compute_confidence_scores, compute_score_ratios
from mmviz.probes.base import Probe, ProbeConfig
from mmviz.probes.registry import PROBES


@dataclasses.dataclass(frozen=True)
class ScoreRatioConfig(ProbeConfig):
    """Settings of the score_ratio probe."""

    every_n_steps: int = param(1, "Run at most every N optimiser steps.", low=1, high=1_000_000)
    max_overhead: float = param(
        0.008,
        "Largest share of the training steps' time this probe may take (0 = no budget).",
        low=0.0,
        high=1.0,
        step=0.0005,
    )


@PROBES.register("score_ratio", config=ScoreRatioConfig, cadence="step", keys=("score/<m>", "ratio/<m>"))
class ScoreRatioProbe(Probe):
    """OGM-GE confidence score ``s_m = sum_i softmax(o^m_i)[y_i]`` over the batch and its ratio to the others.

    From OGM-GE (Peng et al., CVPR 2022), where the ratio ``s_a / s_v`` decides how much the dominant
    modality's gradient is damped; here it is logged for every method. ``ratio/<m>`` is ``s_m`` over the lowest
    score among the other modalities (with two modalities simply ``s_a / s_b``; the rule OGM-GE and PMR act on,
    :mod:`mmviz.measures.scores`): above 1 the modality is the more
    confident one on the training batch. Uses the training forward's head-split per-modality logits, so the keys
    are absent for fusions without an exact split (FiLM, gated): a masked extra forward in train mode would move
    BatchNorm statistics and cost a forward per step, and PMR's trick of reusing the fused logits makes the ratio
    exactly 1, which says nothing. Default: at most every step, within 0.8% of the training steps' time.
    """

    config_cls = ScoreRatioConfig

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.modalities = ctx.modalities

    def on_after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        logits = [out.unimodal_logits.get(m) for m in self.modalities]
        if any(o is None for o in logits):
            return
        scores = compute_confidence_scores(logits, batch["label"])
        ratios = compute_score_ratios(scores)
        for m, s, r in zip(self.modalities, scores.unbind(), ratios.unbind(), strict=True):
            self.log(f"score/{m}", s)
            self.log(f"ratio/{m}", r)
