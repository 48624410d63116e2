"""The two references every comparison needs: plain joint training and one modality trained alone."""

from __future__ import annotations

import dataclasses

import torch

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.registry import METHODS
from mmviz.config import Config, param
from mmviz.contracts import ModelOutput, StepInfo, mask_batch
from mmviz.errors import ConfigError


@METHODS.register("baseline", kind="reference")
class Baseline(BalancingMethod):
    """Joint training with the fused cross-entropy only (no balancing): the imbalanced reference.

    Every modality's encoder learns only through the fused loss, so the modality that reduces the loss
    fastest takes most of the learning signal and the others stay under-trained.
    """


@dataclasses.dataclass(frozen=True)
class UnimodalConfig(Config):
    """Settings of the unimodal reference."""

    modality: str = param("", "The modality to train alone ('' = the dataset's first modality).")


@METHODS.register("unimodal", config=UnimodalConfig, kind="reference")
class Unimodal(BalancingMethod):
    """One modality trained alone: the reference for what that modality reaches by itself.

    The other modalities' inputs are replaced by zeros in training and evaluation, so the same network
    and fusion head are trained through the chosen modality only.
    """

    config_cls = UnimodalConfig

    @classmethod
    def check_config(cls, config: UnimodalConfig, modalities: tuple[str, ...]) -> None:
        if config.modality and config.modality not in modalities:
            raise ConfigError(
                f"The 'modality' parameter of UnimodalConfig must be one of {', '.join(map(repr, modalities))}. "
                f"Got {config.modality!r} instead."
            )

    def target(self) -> str:
        """The modality being trained."""
        return self.config.modality or self.ctx.modalities[0]

    def transform_batch(self, batch: dict[str, torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        return mask_batch(batch, [m for m in self.ctx.modalities if m != self.target()])

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ModelOutput:
        return model.masked_forward(batch, [m for m in self.ctx.modalities if m != self.target()])
