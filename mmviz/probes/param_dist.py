"""Distance of each encoder's weights from their values at initialisation."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from mmviz.contracts import StepInfo, TrainContext
from mmviz.measures import compute_group_norm
from mmviz.probes.base import EpochProbeConfig, Probe
from mmviz.probes.registry import PROBES


@dataclasses.dataclass(frozen=True)
class ParamDistConfig(EpochProbeConfig):
    """Settings of the param_dist probe."""


@PROBES.register("param_dist", config=ParamDistConfig, cadence="epoch", keys=("param_dist/<m>",))
class ParamDistProbe(Probe):
    """How far each encoder's weights have moved from their initial values, ``||theta_m - theta_m_0||`` (per epoch).

    An encoder that barely moves is not learning (the under-optimised modality of OGM-GE and of Diagnosing &
    Re-learning, Wei et al., ECCV 2024, whose soft re-initialisation pulls encoders back towards ``theta_0``).
    The initial weights are the run's ``init_state`` (for a fork, the parent's), over the encoder's trainable
    parameters (buffers such as BatchNorm statistics are left out). Default: every epoch.
    """

    config_cls = ParamDistConfig

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.groups = {m: [p for _, p in ctx.model.encoder(m).named_parameters()] for m in ctx.modalities}
        self.init = {
            m: [ctx.init_state[m][n].detach().to(device=p.device, dtype=p.dtype) for n, p in named]
            for m, named in ((m, list(ctx.model.encoder(m).named_parameters())) for m in ctx.modalities)
        }

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: Any) -> None:
        for m, params in self.groups.items():
            diffs = torch._foreach_sub([p.detach() for p in params], self.init[m])
            self.log(f"param_dist/{m}", compute_group_norm(diffs))
