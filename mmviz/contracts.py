"""The contract every plug-in depends on: what a model offers, what the loop hands over, the hook surface.

This module is the leaf of mmviz: it imports torch and numpy but no other mmviz module, so balancing methods,
probes, models and the training loop can all depend on it without depending on each other
(``training/`` imports ``balancing/`` and ``probes/``; they import this module, never ``training/``).

What is here:

- **Batches and outputs.** A batch is ``dict[str, Tensor]`` keyed by modality name plus ``"label"`` (and
  ``"index"``, the absolute sample index, where the data has one). :class:`ModelOutput` is what a forward returns.
- **The model contract** (:class:`MultimodalModel`): modality names, one encoder module per modality (its
  parameters are the modality's group for gradient norms, parameter distance and re-initialisation), a forward
  from a dict batch to :class:`ModelOutput`, ``encode`` (features only), masked evaluation
  (:meth:`MultimodalModel.masked_forward`), and declared :data:`CAPABILITIES` for what some methods need beyond
  that (``fuse`` precomputed features, a linear head split per modality, one head shared by all modalities, the
  final linear layer). A method or probe declares the capabilities it needs (``requires``) and is refused before
  training with one sentence naming the missing one; it uses nothing else of a model.
- **The run's context** (:class:`TrainContext`, :class:`StepInfo`, :class:`EvalResult`, :class:`DataSplit`):
  every field a method or probe may read, named and typed.
- **The hook surface** (:class:`Hooks`): the same hook names and signatures for methods and probes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

Batch = dict[str, torch.Tensor]
"""A batch: modality name -> input ``(B, *shape)``, plus ``"label"`` ``(B,)`` and ``"index"`` ``(B,)``."""

# Capabilities a model may declare beyond the core contract; the value completes "needs ...".
CAPABILITIES: dict[str, str] = {
    "unimodal_logits": "per-modality logits",
    "fuse": "a fusion that takes precomputed per-modality features (encode and fuse apart)",
    "head_split": "a linear head whose weight splits into one block per modality",
    "shared_head": "one linear head applied to every modality's features",
    "final_linear": "a final linear layer producing the logits",
}
# What a method may require of the run besides model capabilities; the value completes "works with ...".
RUN_REQUIREMENTS: dict[str, str] = {
    "two_modalities": "exactly two modalities",
    "equal_feature_dims": "equal feature sizes in every encoder",
}


def mask_batch(batch: Batch, modalities: Sequence[str]) -> Batch:
    """A copy of ``batch`` with the inputs of ``modalities`` replaced by zeros (the input batch is not mutated)."""
    out = dict(batch)
    for m in modalities:
        out[m] = torch.zeros_like(batch[m])
    return out


@dataclasses.dataclass
class ModelOutput:
    """What a model returns for a batch.

    Attributes:
        features: per modality the pooled encoder output ``(B, D_m)``.
        logits: fused logits ``(B, C)``.
        unimodal_logits: per modality exact logits ``(B, C)`` where the fusion allows a split, else ``None``.
    """

    features: dict[str, torch.Tensor]
    logits: torch.Tensor
    unimodal_logits: dict[str, torch.Tensor | None]


class MultimodalModel(nn.Module):
    """The model contract: all a balancing method or a probe may use of a model.

    A subclass sets ``modalities`` (the fixed iteration order) and ``capabilities`` (a subset of
    :data:`CAPABILITIES`) and implements :meth:`encoder`, :meth:`encode` and :meth:`forward`; the methods of
    the capabilities it declares (:meth:`fuse`, :meth:`head_weight`, :meth:`shared_head`, :meth:`final_linear`)
    must then work. :class:`models.MultimodalNet` implements it; :class:`mmviz.adapter.ModelAdapter` wraps a
    model written without mmviz in mind.
    """

    modalities: tuple[str, ...] = ()
    num_classes: int = 0
    capabilities: frozenset[str] = frozenset()

    def encoder(self, modality: str) -> nn.Module:
        """The module that encodes ``modality`` (its parameters are that modality's group)."""
        raise NotImplementedError

    def encoder_parameters(self, modality: str) -> list[nn.Parameter]:
        """The parameters of one modality's encoder."""
        return list(self.encoder(modality).parameters())

    @property
    def feature_dims(self) -> dict[str, int]:
        """Each modality's feature size ``D_m``."""
        raise NotImplementedError

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-modality features ``{m: (B, D_m)}`` of a batch."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102 (documented on the class)
        raise NotImplementedError

    def check_batch(self, batch: Batch) -> None:
        """Check the model on a batch before training (an adapter checks its wrapping here); raise one sentence."""

    def masked_forward(self, batch: Batch, absent: Sequence[str]) -> ModelOutput:
        """The forward with the inputs of ``absent`` modalities zeroed (Shapley, target-only evaluation)."""
        return self(mask_batch(batch, absent))

    def fuse(self, features: dict[str, torch.Tensor]) -> ModelOutput:
        """Capability ``fuse``: the output for precomputed features ``{m: (B, D_m)}``."""
        raise NotImplementedError

    def head_weight(self, modality: str) -> torch.Tensor:
        """Capability ``head_split``: the block ``(C, D_m)`` of the linear head's weight that reads ``modality``."""
        raise NotImplementedError

    def shared_head(self) -> nn.Linear:
        """Capability ``shared_head``: the one linear head applied to every modality's features."""
        raise NotImplementedError

    def final_linear(self) -> nn.Linear:
        """Capability ``final_linear``: the last linear layer producing the logits."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a compatibility check knows of a model: available from a run config before the model is built.

    Attributes:
        modalities: modality names in order.
        capabilities: the model's declared capabilities.
        feature_dims: each modality's feature size.
        label: how messages name the model, e.g. ``"fusion 'film'"`` or ``"model 'AVClassifier'"``.
        hints: per capability what the user can do to get it (one short sentence), e.g. ``"Use 'concat'."``.
    """

    modalities: tuple[str, ...]
    capabilities: frozenset[str]
    feature_dims: dict[str, int]
    label: str
    hints: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, model: MultimodalModel) -> ModelSpec:
        """The spec of a built model."""
        return cls(
            tuple(model.modalities), frozenset(model.capabilities), dict(model.feature_dims),
            f"model {getattr(model, 'display_name', type(model).__name__)!r}",
        )  # fmt: skip

    def missing(self, needs: frozenset[str] | set[str] | Sequence[str]) -> str | None:
        """The first capability in ``needs`` (sorted) that the model lacks, or None (run requirements are skipped)."""
        for cap in sorted(needs):
            if cap in CAPABILITIES and cap not in self.capabilities:
                return cap
        return None

    def need_text(self, capability: str) -> str:
        """What ``capability`` means, to complete "needs ..."."""
        return CAPABILITIES[capability]

    def lacks(self, capability: str) -> str:
        """The end of a refusal: ``"fusion 'film' does not offer it. Use 'concat' or 'sum'."``."""
        hint = self.hints.get(capability, "")
        return f"{self.label} does not offer it." + (f" {hint}" if hint else "")


@dataclasses.dataclass
class StepInfo:
    """Where training is: global step (0-based, counts optimiser steps), epoch (1-based) and batch index."""

    step: int
    epoch: int
    batch_index: int
    batches_per_epoch: int
    total_epochs: int

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return ((self.epoch - 1) * self.batches_per_epoch + self.batch_index) / max(
            1, self.total_epochs * self.batches_per_epoch
        )


@dataclasses.dataclass
class EvalResult:
    """One evaluation pass over a split (all tensors on the CPU).

    Attributes:
        loss: mean fused cross-entropy.
        acc: fused accuracy.
        acc_uni: per modality head-split accuracy (only modalities whose logits exist).
        features: per modality pooled features ``(N, D_m)``.
        logits: fused logits ``(N, C)``; ``unimodal_logits`` per modality ``(N, C)`` where available.
        labels: ``(N,)``; index: absolute sample indices ``(N,)``.
        model_forward: whether the evaluation forward was the model's own (a method that does not override
            ``predict``): the features are then the model's encoder features of the unmodified inputs, which
            probes reuse without checking them.
    """

    loss: float
    acc: float
    acc_uni: dict[str, float]
    features: dict[str, torch.Tensor]
    logits: torch.Tensor
    unimodal_logits: dict[str, torch.Tensor]
    labels: torch.Tensor
    index: torch.Tensor
    model_forward: bool = False


Predict = Callable[[nn.Module, Batch], ModelOutput]
"""An evaluation forward ``(model, batch) -> ModelOutput`` (a method's ``predict``)."""


@runtime_checkable
class DataSplit(Protocol):
    """One split of the run's data as methods and probes see it: batches in order or shuffled, or chosen samples.

    Batches hold every modality, ``"label"`` and ``"index"``, already on the run's device.
    """

    def __len__(self) -> int: ...

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches per pass."""
        ...

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Batch]:
        """Yield batches; shuffled with ``generator`` when given, else in order."""
        ...

    def subset(self, positions: np.ndarray | Sequence[int]) -> Batch:
        """The samples at the given positions (0-based within the split), as one batch."""
        ...

    @property
    def labels(self) -> torch.Tensor:
        """Every sample's label ``(N,)``, in split order."""
        ...


class EpochCache:
    """Values several epoch probes need once per epoch (train features, Shapley values), shared between them.

    Epoch probes run one after the other on the same weights, so a value computed by one is reused by the next;
    :meth:`current` empties the cache when the step changes.
    """

    def __init__(self) -> None:
        self._tag: Any = None
        self._values: dict[Any, Any] = {}

    def current(self, tag: Any) -> dict[Any, Any]:
        """The cache for ``tag`` (e.g. ``(epoch, step)``), emptied when the tag differs from the last call's."""
        if tag != self._tag:
            self._tag, self._values = tag, {}
        return self._values


def _no_log(key: str, value: Any) -> None:
    """A log that keeps nothing."""


def _no_event(kind: str, payload: dict) -> None:
    """An event sink that keeps nothing."""


def _no_artifact(epoch: int, kind: str, path: str, meta: dict | None = None) -> None:
    """An artifact sink that keeps nothing."""


@dataclasses.dataclass
class TrainContext:
    """Everything a balancing method or probe may use during one run, each field named and typed.

    Attributes:
        model: the model, through the contract (:class:`MultimodalModel`).
        modalities: modality names in the fixed order.
        num_classes: number of classes ``C``.
        splits: ``train`` / ``val`` / ``test`` as :class:`DataSplit` on ``device``.
        device: where the model and batches live.
        log: ``log(key, value)`` records a metric at the current step (tensors are synced at flush time).
        event: ``event(kind, payload)`` records a timeline event (re-init, reweight, ...).
        artifact: ``artifact(epoch, kind, path, meta)`` records a file written under ``run_dir`` (path relative).
        run_dir: the run's folder, or None (then nothing is written to disk).
        optimizer: the main optimiser (set after the method's ``setup``, before the probes' and the first step).
        batch_size: training batch size; eval_batch_size: batch size of evaluation passes.
        seed: the run's seed (methods derive their own generators from it).
        step: returns the current :class:`StepInfo`.
        train_clock: seconds spent in the epochs' training steps (probes budget their per-step cost against it).
        autocast: a context-manager factory for the run's mixed precision (a no-op on the CPU).
        init_state: per modality the encoder's ``state_dict()`` at initialisation (for a fork: the parent's),
            keyed by the encoder's own parameter and buffer names, on the CPU.
        evaluate: ``evaluate(predict, split)`` runs one eval-mode pass of ``predict`` over a split.
        num_samples: size of the absolute sample index space (``batch["index"] < num_samples``).
        input_shapes: per modality the per-sample input shape.
        probe_index: absolute indices of the fixed probe subset of val (snapshots).
        enabled_probes: names of the probes this run runs.
        dropped_mask: published by a method that zeroes modality inputs (AMD): per modality a bool tensor over
            absolute sample indices, True where the input was zeroed in the current epoch; None otherwise.
        probe_cache: the epoch probes' shared per-epoch values (:class:`EpochCache`).
        analysis_in_process: True when a separate analysis process computes the analysis probes' rows from the
            epoch records (the trainer only measures); False: they are analysed inline, at each probe's turn.
    """

    model: MultimodalModel
    modalities: tuple[str, ...]
    num_classes: int
    splits: dict[str, DataSplit]
    device: torch.device
    log: Callable[[str, Any], None] = _no_log
    event: Callable[[str, dict], None] = _no_event
    artifact: Callable[..., None] = _no_artifact
    run_dir: Path | None = None
    optimizer: torch.optim.Optimizer | None = None
    batch_size: int = 64
    eval_batch_size: int = 512
    seed: int = 0
    step: Callable[[], StepInfo] | None = None
    train_clock: Callable[[], float] = time.perf_counter
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    init_state: dict[str, dict[str, torch.Tensor]] = dataclasses.field(default_factory=dict)
    evaluate: Callable[[Predict, str], EvalResult] | None = None
    num_samples: int = 0
    input_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    probe_index: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    enabled_probes: frozenset[str] = frozenset()
    dropped_mask: dict[str, torch.Tensor] | None = None
    probe_cache: EpochCache = dataclasses.field(default_factory=EpochCache)
    analysis_in_process: bool = False


class Hooks:
    """The hook surface shared by balancing methods and probes: same names, same arguments, all no-ops here.

    Per step (DESIGN.md §3): method ``transform_batch`` -> forward -> method ``compute_loss`` -> backward ->
    probes then method ``on_after_backward`` -> probes then method ``on_before_optimizer_step`` -> optimiser
    step. Per epoch: ``on_epoch_start`` before its first step; after its evaluation on val, probes then method
    ``on_epoch_end``. A plug-in's ``name`` is set by its registry entry (declared once, there).
    """

    name: ClassVar[str] = ""

    def setup(self, ctx: TrainContext) -> None:
        """Called once before the first step, after the model and optimiser exist."""
        self.ctx = ctx

    def on_epoch_start(self, info: StepInfo) -> None:
        """Called before the first step of each epoch (``info`` is that step's)."""

    def on_after_backward(self, out: ModelOutput, batch: Batch, info: StepInfo) -> None:
        """Called after backward, before the optimiser step (probes first, then the method's gradient modulation)."""

    def on_before_optimizer_step(self, out: ModelOutput, batch: Batch, info: StepInfo) -> None:
        """Called right before the optimiser step, after every ``on_after_backward`` (probes first, then method)."""

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        """Called after the epoch's evaluation on val (``evaluation``), probes first, then the method."""

    def log(self, key: str, value: Any) -> None:
        """Record a metric at the current step through the run's logger."""
        ctx = getattr(self, "ctx", None)
        if ctx is not None:
            ctx.log(key, value)
