"""What the training loop hands to balancing methods and probes: the context built from a run's parts.

The types live in the leaf :mod:`mmviz.contracts`; this module builds them (:func:`create_context`) and keeps
the loop's training clock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmviz.contracts import DataSplit, EvalResult, MultimodalModel, Predict, StepInfo, TrainContext
from mmviz.data.base import MultimodalData
from mmviz.training.evaluate import evaluate

__all__ = ["StepInfo", "TrainClock", "TrainContext", "create_context", "initial_encoder_state"]


class TrainClock:
    """Seconds spent in the epochs' step loops: paused during epoch-end evaluation, probes and checkpoints.

    Per-step probes budget their cost against this clock, so "2% overhead" means 2% of the training steps
    whatever the epoch-end work costs (against wall time they would take a larger share of the steps).
    """

    def __init__(self) -> None:
        self._total = 0.0
        self._start: float | None = None

    def resume(self) -> None:
        """Start counting (at the start of an epoch's steps)."""
        if self._start is None:
            self._start = time.perf_counter()

    def pause(self) -> None:
        """Stop counting (after an epoch's last step)."""
        if self._start is not None:
            self._total += time.perf_counter() - self._start
            self._start = None

    def __call__(self) -> float:
        running = time.perf_counter() - self._start if self._start is not None else 0.0
        return self._total + running


def initial_encoder_state(model: MultimodalModel) -> dict[str, dict[str, torch.Tensor]]:
    """Per modality a CPU copy of the encoder's ``state_dict()`` (the context's ``init_state``)."""
    return {
        m: {k: v.detach().cpu().clone() for k, v in model.encoder(m).state_dict().items()} for m in model.modalities
    }


def create_context(
    model: MultimodalModel,
    data: MultimodalData,
    splits: dict[str, DataSplit],
    device: torch.device,
    *,
    log: Callable[[str, Any], None] | None = None,
    event: Callable[[str, dict], None] | None = None,
    artifact: Callable[..., None] | None = None,
    run_dir: Path | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    batch_size: int = 64,
    eval_batch_size: int = 512,
    seed: int = 0,
    step: Callable[[], StepInfo] | None = None,
    train_clock: Callable[[], float] = time.perf_counter,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    init_state: dict[str, dict[str, torch.Tensor]] | None = None,
    enabled_probes: frozenset[str] = frozenset(),
) -> TrainContext:
    """The :class:`TrainContext` of a run on ``data`` (``init_state`` defaults to the model's current encoders)."""

    def run_evaluate(predict: Predict, split: str) -> EvalResult:
        return evaluate(model, predict, splits[split], eval_batch_size, autocast)

    kw: dict[str, Any] = {}
    if log is not None:
        kw["log"] = log
    if event is not None:
        kw["event"] = event
    if artifact is not None:
        kw["artifact"] = artifact
    return TrainContext(
        model=model,
        modalities=tuple(data.modality_names),
        num_classes=int(data.num_classes),
        splits=splits,
        device=device,
        run_dir=run_dir,
        optimizer=optimizer,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        step=step,
        train_clock=train_clock,
        autocast=autocast,
        init_state=init_state if init_state is not None else initial_encoder_state(model),
        evaluate=run_evaluate,
        num_samples=len(data.y),
        input_shapes={s.name: tuple(s.shape) for s in data.modalities},
        probe_index=np.asarray(data.probe_index, dtype=np.int64),
        enabled_probes=frozenset(enabled_probes),
        **kw,
    )
