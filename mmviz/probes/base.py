"""The Probe base: a stateful diagnostic with a cadence, called at fixed points of the training step.

Probes never change training: they read gradients, parameters and features, restore train/eval mode,
use no global random state and leave no hooks behind. Pure maths lives in ``compute_*`` functions.

Cost budget. A probe is *due* at its cadence (``every_n_steps`` / ``every_n_epochs``), but it also keeps its own
time under ``max_overhead`` of the run's time: each probe times its hooks, keeps a running estimate of one
call's cost, and skips a due call while ``cost > max_overhead * (time since it last ran)``. A per-step probe
counts that time on the loop's training clock (the steps only, ``TrainContext.train_clock``): against wall time,
which includes the per-epoch evaluation and diagnostics, it would take more than its share of each step.
The cadence is thus the highest rate: a cheap probe on a slow model runs at every due point, an expensive one on
a tiny model thins out, and the total overhead stays bounded on any machine. A per-step probe's first run is a
warm-up (one-time start-up costs) and is not counted, unless its class says its first call costs what later ones
do (``first_call_is_warm_up = False``: it only repeats work the training step has already warmed up, as a second
forward and backward does); until a probe has measured itself it assumes its class's ``cost_hint`` (a small CPU
model's cost; ``None`` = due calls simply run). ``max_overhead = 0`` turns the
budget off: the probe then runs at exactly its cadence (deterministic logs).

The per-step probes' default budgets add up to 2.5% (grad_norm 1.2%, score_ratio 0.8%, grad_conflict 0.5%):
their logging and bookkeeping come on top, and DESIGN.md §5 budgets the whole overhead on a step at 5%
(bench/overhead.py).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, ClassVar

from mmviz.contracts import Batch, EvalResult, Hooks, ModelOutput, StepInfo, TrainContext
from mmviz.probes.configs import ProbeConfig
from mmviz.probes.record import Artifact, epoch_record

_HOOKS = ("on_epoch_start", "on_after_backward", "on_before_optimizer_step", "on_epoch_end")
CADENCES = ("step", "epoch")


def _metered(hook):
    """Wrap a hook so that its wall time is added to the probe's running cost (outermost call only)."""

    @functools.wraps(hook)
    def metered(self: Probe, *args: Any, **kwargs: Any) -> Any:
        if self._in_hook:
            return hook(self, *args, **kwargs)
        self._in_hook = True
        start = time.perf_counter()
        try:
            return hook(self, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            self._spent += elapsed
            self.seconds += elapsed
            self._in_hook = False

    return metered


class Probe(Hooks):
    """Base class; subclasses override the hooks they need. Hooks are only called when due (cadence and budget).

    A probe's ``name`` and ``cadence`` (``"step"``: ``on_after_backward`` / ``on_before_optimizer_step`` at due
    steps; ``"epoch"``: ``on_epoch_end`` at due epochs) are declared once, in its registry entry, which sets them
    on the class. ``requires`` lists the model capabilities it needs (:data:`mmviz.contracts.CAPABILITIES`).
    """

    cadence: ClassVar[str] = ""
    config_cls: ClassVar[type[ProbeConfig]] = ProbeConfig
    requires: ClassVar[frozenset[str]] = frozenset()
    # Probes run in ascending ``order`` (then by name); a probe that reads another's results runs after it.
    order: ClassVar[int] = 0
    # Seconds one call is assumed to cost before it has been measured (None: the first due call runs).
    cost_hint: ClassVar[float | None] = None
    # Whether a per-step probe's first run is a warm-up left out of its cost estimate (one-time start-up costs).
    first_call_is_warm_up: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook in _HOOKS:
            if hook in cls.__dict__:
                setattr(cls, hook, _metered(cls.__dict__[hook]))

    def __init__(self, config: ProbeConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self.ctx: TrainContext | None = None
        self._in_hook = False
        self._spent = 0.0  # seconds spent in hooks since the last decision
        self._cost: float | None = None  # running estimate of one call's cost (seconds)
        self._runs = 0  # runs measured so far
        self._since: float | None = None  # perf_counter() when it last ran (or was first due)
        self.skipped = 0  # due calls skipped for the budget
        self.seconds = 0.0  # total wall time spent in this probe's hooks

    @property
    def per_step(self) -> bool:
        """Whether this probe has per-step hooks (cadence ``"step"``)."""
        return self.cadence == "step"

    @property
    def per_epoch(self) -> bool:
        """Whether this probe has a per-epoch hook (cadence ``"epoch"``)."""
        return self.cadence == "epoch"

    def due_step(self, info: StepInfo) -> bool:
        """Whether the per-step hooks run at this step (cadence, then budget)."""
        return self.per_step and info.step % self.config.every_n_steps == 0 and self.within_budget()

    def due_epoch(self, epoch: int) -> bool:
        """Whether the per-epoch hook runs at the end of this epoch (the loop also runs it at the last epoch)."""
        return self.per_epoch and epoch % self.config.every_n_epochs == 0 and self.within_budget()

    def within_budget(self) -> bool:
        """Whether a due call fits the cost budget now; called once per due point (updates the estimate)."""
        now = self.ctx.train_clock() if self.per_step and self.ctx is not None else time.perf_counter()
        if self._spent:  # fold the last run's time into the estimate (a step probe's first run is a warm-up)
            self._runs += 1
            if self._runs > 1 or not self.per_step or not self.first_call_is_warm_up:
                self._cost = self._spent if self._cost is None else 0.5 * (self._cost + self._spent)
            self._spent = 0.0
        if self._since is None:
            self._since = now
        cost = self._cost if self._cost is not None else self.cost_hint
        budget = self.config.max_overhead
        if budget > 0 and cost is not None and cost > budget * (now - self._since):
            self.skipped += 1
            return False
        self._since = now
        return True

    def on_after_backward(self, out: ModelOutput, batch: Batch, info: StepInfo) -> None:
        """Called at due steps after backward, before the method modulates gradients."""

    def on_before_optimizer_step(self, out: ModelOutput, batch: Batch, info: StepInfo) -> None:
        """Called at due steps after the method's gradient modulation, right before the optimiser step."""

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        """Called at due epochs after the epoch's evaluation on val (``evaluation``)."""


class AnalysisProbe(Probe):
    """A per-epoch diagnostic split into *measuring* (needs the live model; runs in the trainer) and *analysing*
    (needs only the measured arrays; runs in the analysis process, or inline when there is none).

    At a due epoch ``on_epoch_end`` adds what :meth:`measure` returns to the epoch's record (one per epoch, shared by
    the analysis probes through ``ctx.probe_cache``); :meth:`analyse` turns a record into ``(key, value)`` rows and
    :meth:`write_files` into files of the run folder (the snapshot), recorded as artifacts.
    Inline (``ctx.analysis_in_process`` False: direct ``fit()`` calls, your own loop, tests) the rows and files are
    made at once; otherwise the trainer writes the record and the analysis process makes the same rows and files
    from the same arrays (DESIGN.md §2, measuring vs analysing).
    """

    per_epoch = True

    def measure(self, epoch: int, info: StepInfo, evaluation: EvalResult, record: dict[str, Any]) -> dict[str, Any]:
        """Called at a due epoch in the trainer: the arrays this probe needs, by record name (see
        :data:`mmviz.measures.record.RECORD_NAMES`); ``record`` holds what earlier probes measured this epoch."""
        return {}

    def analyse(self, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[str, float]]:
        """Pure: the rows of one epoch record (``meta``: epoch, step, modalities, num_classes; ``arrays``)."""
        return []

    def write_files(self, meta: dict[str, Any], arrays: dict[str, Any], run_dir: Path) -> list[Artifact]:
        """The files this probe makes from one epoch record, written (atomically) under ``run_dir``: their
        artifacts ``(epoch, kind, path relative to run_dir, meta)``, recorded with the epoch's rows. Default: none."""
        return []

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        record = epoch_record(self.ctx, epoch, info)
        record.add(self.name, self.measure(epoch, info, evaluation, record.arrays))
        if not self.ctx.analysis_in_process:
            arrays = record.hosted()
            for key, value in self.analyse(record.meta, arrays):
                self.log(key, value)
            if self.ctx.run_dir is not None:
                for artifact in self.write_files(record.meta, arrays, Path(self.ctx.run_dir)):
                    self.ctx.artifact(*artifact)
