"""The BalancingMethod base: the shared hook surface (:class:`mmviz.contracts.Hooks`) plus a method's own hooks.

Per step (DESIGN.md §3): ``transform_batch`` -> forward -> ``compute_loss`` -> backward ->
probes then ``on_after_backward`` -> probes then ``on_before_optimizer_step`` -> optimizer step.
Per epoch: ``on_epoch_start`` before its first step; after evaluation and the epoch probes, ``on_epoch_end``.
A method that replaces the whole step (MLA) sets ``replaces_step = True`` and implements ``training_step``.
What a method needs of the model is declared in ``requires`` (model capabilities from
:data:`mmviz.contracts.CAPABILITIES` and run requirements from :data:`mmviz.contracts.RUN_REQUIREMENTS`) and
checked before the first step; a method uses the model only through the contract.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmviz.balancing.settings import check_modality_names
from mmviz.config import Config, EmptyConfig
from mmviz.contracts import (
    Batch,
    EvalResult,
    Hooks,
    ModelOutput,
    ModelSpec,
    StepInfo,
    TrainContext,
    mask_batch,
)
from mmviz.errors import ConfigError

__all__ = ["BalancingMethod", "check_requirements", "mask_batch"]


def check_requirements(kind: str, name: str, requires: frozenset[str], model: ModelSpec) -> None:
    """Raise a one-sentence ConfigError naming the first of ``requires`` that ``model`` does not meet."""
    cap = model.missing(requires)
    if cap is not None:
        raise ConfigError(f"{kind} {name!r} needs {model.need_text(cap)}, but {model.lacks(cap)}")
    if "two_modalities" in requires and len(model.modalities) != 2:
        raise ConfigError(
            f"{kind} {name!r} works with exactly two modalities; the data give "
            f"{len(model.modalities)} ({', '.join(model.modalities)})."
        )
    if "equal_feature_dims" in requires and len(set(model.feature_dims.values())) != 1:
        raise ConfigError(f"{kind} {name!r} needs equal feature sizes per modality; got {model.feature_dims}.")


class BalancingMethod(Hooks):
    """Base class: fused cross-entropy with no modulation. Subclasses override the hooks they need."""

    config_cls: ClassVar[type[Config]] = EmptyConfig
    requires: ClassVar[frozenset[str]] = frozenset()
    replaces_step: ClassVar[bool] = False

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self.ctx: TrainContext | None = None

    # ----- validation ---------------------------------------------------------------------------
    @classmethod
    def check_compatible(cls, config: Config, model: ModelSpec) -> None:
        """Raise ConfigError when this method cannot run on ``model``; called before anything starts."""
        check_requirements("Method", cls.name, cls.requires, model)
        check_modality_names(config, model.modalities)
        cls.check_config(config, model.modalities)

    @classmethod
    def check_config(cls, config: Config, modalities: tuple[str, ...]) -> None:
        """Checks that need the dataset's modality names (e.g. a target modality); override when needed."""

    # ----- lifecycle ----------------------------------------------------------------------------
    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules the method owns and the main optimiser trains (e.g. extra heads); saved in checkpoints."""
        return {}

    def transform_batch(self, batch: Batch, info: StepInfo) -> Batch:
        """Called before the forward pass; returns the batch to use (never mutate the input)."""
        return batch

    def compute_loss(self, out: ModelOutput, batch: Batch, info: StepInfo) -> torch.Tensor:
        """Called after the forward pass; returns the loss to back-propagate."""
        return F.cross_entropy(out.logits, batch["label"])

    def training_step(self, batch: Batch, info: StepInfo, hooks: Any) -> tuple[ModelOutput, torch.Tensor]:
        """Called instead of the default step when ``replaces_step`` is True; must step the optimiser itself.

        ``hooks.on_after_backward(out, batch, info)`` and ``hooks.on_before_optimizer_step(out, batch, info)``
        call the due probes around each of its optimiser steps.
        """
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        """Called after evaluation and the epoch probes of each epoch (before the checkpoint is written)."""

    def predict(self, model: nn.Module, batch: Batch) -> ModelOutput:
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
    def encoder_params(self, modality: str) -> list[nn.Parameter]:
        """Parameters of one modality's encoder."""
        return self.ctx.model.encoder_parameters(modality)
