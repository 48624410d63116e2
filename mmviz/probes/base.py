"""The Probe base: a stateful diagnostic with a cadence, called at fixed points of the training step.

Probes never change training: they read gradients, parameters and features, restore train/eval mode,
use no global random state and leave no hooks behind. Pure maths lives in ``compute_*`` functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from mmviz.config import Config, param
from mmviz.training.context import StepInfo, TrainContext
from models import ModelOutput


@dataclasses.dataclass(frozen=True)
class ProbeConfig(Config):
    """Settings every probe has: on/off and a cadence."""

    enabled: bool = param(True, "Whether this probe runs.")
    every_n_steps: int = param(1, "Run the per-step part every N optimiser steps.", low=1, high=1_000_000)
    every_n_epochs: int = param(1, "Run the per-epoch part every N epochs.", low=1, high=100_000)


class Probe:
    """Base class; subclasses override the hooks they need. Hooks are only called when due (cadence)."""

    name: ClassVar[str] = "probe"
    config_cls: ClassVar[type[ProbeConfig]] = ProbeConfig
    per_step: ClassVar[bool] = False
    per_epoch: ClassVar[bool] = False
    # Probes run in ascending ``order`` (then by name); a probe that reads another's results runs after it.
    order: ClassVar[int] = 0

    def __init__(self, config: ProbeConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self.ctx: TrainContext | None = None

    def setup(self, ctx: TrainContext) -> None:
        """Called once before the first step."""
        self.ctx = ctx

    def due_step(self, info: StepInfo) -> bool:
        """Whether the per-step hooks run at this step."""
        return self.per_step and info.step % self.config.every_n_steps == 0

    def due_epoch(self, epoch: int) -> bool:
        """Whether the per-epoch hook runs at the end of this epoch (the last epoch always counts)."""
        return self.per_epoch and epoch % self.config.every_n_epochs == 0

    def after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        """Called after backward, before the method modulates gradients."""

    def before_optimizer_step(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        """Called after the method's gradient modulation, right before the optimiser step."""

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: dict[str, Any]) -> None:
        """Called after the epoch's evaluation on val."""

    def log(self, key: str, value: Any) -> None:
        """Record a metric at the current step."""
        self.ctx.log(key, value)
