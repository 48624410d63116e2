"""What the training loop hands to balancing methods and probes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmviz.data.base import MultimodalData, TensorSplit


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


@dataclasses.dataclass
class TrainContext:
    """Shared handles for methods and probes during one run.

    ``log(key, value)`` records a metric at the current step (values may be tensors; they are synced at
    flush time); ``event(kind, payload)`` records a timeline event (re-init, fork, stop, ...).
    """

    model: torch.nn.Module
    data: MultimodalData
    splits: dict[str, TensorSplit]
    device: torch.device
    config: Any
    run_dir: Path | None
    log: Callable[[str, Any], None]
    event: Callable[[str, dict], None]
    optimizer: torch.optim.Optimizer | None = None
    batch_size: int = 64
    seed: int = 0
    step: Callable[[], StepInfo] | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    train_clock: Callable[[], float] = time.perf_counter  # the loop passes its TrainClock

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in the fixed order."""
        return self.data.modality_names

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.data.num_classes
