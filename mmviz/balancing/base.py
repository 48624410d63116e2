"""The BalancingMethod base: no-op hooks the training loop calls in a fixed order.

Per step (DESIGN.md §3): ``transform_batch`` -> forward -> ``compute_loss`` -> backward ->
probes(after_backward) -> ``on_after_backward`` -> probes(before_optimizer_step) -> optimizer step.
Per epoch, after evaluation and the epoch probes: ``on_epoch_end``. A method that replaces the whole
step (MLA) sets ``replaces_step = True`` and implements ``training_step``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmviz.balancing.settings import check_modality_names
from mmviz.config import Config, EmptyConfig
from mmviz.errors import ConfigError
from mmviz.training.context import StepInfo, TrainContext
from models import ModelOutput

# What a method may require of the model; checked before the first step.
REQUIREMENTS = {
    "unimodal_logits": "per-modality logits",
    "two_modalities": "exactly two modalities",
    "equal_feature_dims": "equal feature sizes in every encoder",
}


def mask_batch(batch: dict[str, torch.Tensor], modalities: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
    """A copy of ``batch`` with the inputs of ``modalities`` replaced by zeros (the input batch is not mutated)."""
    out = dict(batch)
    for m in modalities:
        out[m] = torch.zeros_like(batch[m])
    return out


class BalancingMethod:
    """Base class: fused cross-entropy with no modulation. Subclasses override the hooks they need."""

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[Config]] = EmptyConfig
    requires: ClassVar[frozenset[str]] = frozenset()
    replaces_step: ClassVar[bool] = False
    fusions: ClassVar[tuple[str, ...] | None] = None  # fusions that work, when restricted

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self.ctx: TrainContext | None = None

    # ----- validation ---------------------------------------------------------------------------
    @classmethod
    def check_compatible(
        cls, config: Config, fusion: str, has_unimodal: bool, modalities: tuple[str, ...], feature_dims: dict[str, int]
    ) -> None:
        """Raise ConfigError when this method cannot run on the given model; called before anything starts."""
        if cls.fusions is not None and fusion not in cls.fusions:
            raise ConfigError(
                f"Method {cls.name!r} needs fusion {' or '.join(map(repr, cls.fusions))}, but the run uses {fusion!r}. "
                f"Set model.fusion={cls.fusions[0]}."
            )
        if "unimodal_logits" in cls.requires and not has_unimodal:
            from models import FUSIONS

            ok = [n for n, (c, _) in FUSIONS.items() if c.has_unimodal]
            raise ConfigError(
                f"Method {cls.name!r} needs per-modality logits, but fusion {fusion!r} has none. "
                f"Use {' or '.join(map(repr, ok))}."
            )
        if "two_modalities" in cls.requires and len(modalities) != 2:
            raise ConfigError(
                f"Method {cls.name!r} works with exactly two modalities; the dataset gives "
                f"{len(modalities)} ({', '.join(modalities)})."
            )
        if "equal_feature_dims" in cls.requires and len(set(feature_dims.values())) != 1:
            raise ConfigError(f"Method {cls.name!r} needs equal feature sizes per modality; got {feature_dims}.")
        check_modality_names(config, modalities)
        cls.check_config(config, modalities)

    @classmethod
    def check_config(cls, config: Config, modalities: tuple[str, ...]) -> None:
        """Checks that need the dataset's modality names (e.g. a target modality); override when needed."""

    # ----- lifecycle ----------------------------------------------------------------------------
    def setup(self, ctx: TrainContext) -> None:
        """Called once before the first step, after the model and optimiser exist."""
        self.ctx = ctx

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules the method owns and the main optimiser trains (e.g. extra heads); saved in checkpoints."""
        return {}

    def transform_batch(self, batch: dict[str, torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """Called before the forward pass; returns the batch to use (never mutate the input)."""
        return batch

    def compute_loss(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> torch.Tensor:
        """Called after the forward pass; returns the loss to back-propagate."""
        return F.cross_entropy(out.logits, batch["label"])

    def on_after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        """Called after backward and the after-backward probes, before the optimiser step (gradient modulation)."""

    def training_step(
        self, batch: dict[str, torch.Tensor], info: StepInfo, hooks: Any
    ) -> tuple[ModelOutput, torch.Tensor]:
        """Called instead of the default step when ``replaces_step`` is True; must step the optimiser itself."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, info: StepInfo) -> None:
        """Called after evaluation and the epoch probes of each epoch (before the checkpoint is written)."""

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Called for evaluation; the default is the model's own fused prediction."""
        return model(batch)

    # ----- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (plain tensors / numbers / lists / dicts only)."""
        return {name: mod.state_dict() for name, mod in self.extra_modules().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        for name, mod in self.extra_modules().items():
            if name in state:
                mod.load_state_dict(state[name])

    # ----- helpers ------------------------------------------------------------------------------
    def log(self, key: str, value: Any) -> None:
        """Record a metric at the current step through the run's logger."""
        if self.ctx is not None:
            self.ctx.log(key, value)

    def encoder_params(self, modality: str) -> list[nn.Parameter]:
        """Parameters of one modality's encoder."""
        return self.ctx.model.encoder_parameters(modality)
