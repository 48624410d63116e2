"""The training loop: one readable ``fit()`` with a fixed hook order (DESIGN.md §3).

Per epoch start: probes then ``method.on_epoch_start``.
Per step: ``transform_batch`` -> forward -> ``compute_loss`` -> backward -> probes then method ``on_after_backward``
-> probes then method ``on_before_optimizer_step`` -> optimizer step -> flush logs.
Per epoch end: LR schedule -> evaluation on val -> epoch probes then ``method.on_epoch_end`` -> checkpoint.
Methods and probes share these hook names and arguments (:class:`mmviz.contracts.Hooks`).
At the end the best-on-val checkpoint is evaluated on the test split (val is never the test set).

Logs and the heartbeat go through one store transaction after each epoch whose diagnostics ran (their rows and the
epoch's record for the analysis process; with diagnostics every epoch this gave better whole-run and per-step ratios
in bench/overhead.py than one write per 0.5 s, issue 15), and otherwise about every 0.5 s
(``MetricLogger.flush_interval``): at an epoch end when the interval would pass during the next epoch (the steps of
epochs shorter than the interval write nothing, unless twice the interval has passed), between steps of longer
epochs, at the last epoch and at the end. The store's stop flag is read at each write and at every epoch end, so a
Stop from the dashboard ends the run at the next epoch end at the latest.
Checkpoints are written by a background thread (a copy taken at the epoch end; the write overlaps the next
epoch) and recorded with the next flush. A SIGTERM (``should_stop``) is seen at the next step. A non-finite training loss is seen in the step where it
appears (:class:`_NonFiniteWatch`, no per-step device sync) and ends the run there as diverged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmviz.contracts import MultimodalModel
from mmviz.data import create_dataset
from mmviz.data.base import MultimodalData
from mmviz.data.loader import LoaderData
from mmviz.probes import create_probes
from mmviz.probes.base import AnalysisProbe
from mmviz.probes.record import AnalysisSupervisor, EpochRecorder
from mmviz.store.contract import MetricSink
from mmviz.training.build import (
    build_method,
    build_model,
    build_optimizer,
    build_scheduler,
    check_run_config,
    resolve_device,
)
from mmviz.training.checkpoint import (
    CheckpointWriter,
    checkpoint_path,
    checkpoint_stop_path,
    load_checkpoint,
    load_optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mmviz.training.config import RunConfig
from mmviz.training.context import StepInfo, TrainClock, create_context, initial_encoder_state
from mmviz.training.evaluate import EvalResult, evaluate
from mmviz.training.logger import MetricLogger


class StopTraining(Exception):
    """Raised inside the loop when a stop was requested (store flag or SIGTERM)."""


class Diverged(Exception):
    """Raised when the training loss (or, after an epoch, the validation loss) is NaN or infinite."""

    def __init__(self, step: int, value: float, what: str = "training loss") -> None:
        super().__init__(f"The {what} became {value} at step {step}.")
        self.step = step


class NullStore:
    """A :class:`~mmviz.store.contract.MetricSink` that keeps nothing (benchmarks and in-process experiments):
    everything ``fit`` asks of a store, so it is complete (``tests/store/test_contract.py`` checks it)."""

    def log_batch(self, run_id, rows, *, events=(), artifacts=(), heartbeat=None) -> int:
        """Drop the rows; return how many there were."""
        return len(list(rows))

    def add_artifact(self, run_id, epoch, kind, path, meta=None) -> None:
        """Record nothing."""

    def stop_requested(self, run_id) -> bool:
        """Never asked to stop."""
        return False


@dataclasses.dataclass
class Resume:
    """Where a fork starts: the parent's checkpoint file and its init-weights file."""

    checkpoint: Path
    init_state: Path | None
    same_method: bool


@dataclasses.dataclass
class FitResult:
    """What ``fit`` reports back."""

    epochs_done: int
    steps: int
    best_epoch: int
    best_val_acc: float
    test: dict[str, float]
    model: torch.nn.Module
    method: Any


class _ProbeHooks:
    """The probe calls a method that replaces the step must make around its own optimizer steps."""

    def __init__(self, probes: list, info: StepInfo) -> None:
        self.probes = [p for p in probes if p.due_step(info)]

    def on_after_backward(self, out, batch, info) -> None:
        for p in self.probes:
            p.on_after_backward(out, batch, info)

    def on_before_optimizer_step(self, out, batch, info) -> None:
        for p in self.probes:
            p.on_before_optimizer_step(out, batch, info)


class _RunningAccuracy:
    """The epoch's training accuracy, reduced every ``chunk`` steps instead of with four tensor ops per step.

    Keeps the detached logits and labels of the last ``chunk`` batches (no graph, so little memory) and
    reduces them in one pass; on a small model the per-step ops cost a few percent of the step.
    """

    def __init__(self, device: torch.device, chunk: int = 32) -> None:
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0
        self.chunk = chunk
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._pending.append((logits.detach(), labels))
        self.seen += labels.shape[0]
        if len(self._pending) >= self.chunk:
            self._reduce()

    def _reduce(self) -> None:
        if self._pending:
            logits = torch.cat([lg for lg, _ in self._pending])
            labels = torch.cat([y for _, y in self._pending])
            self.correct += (logits.argmax(1) == labels).sum()
            self._pending = []

    def value(self) -> torch.Tensor:
        self._reduce()
        return self.correct.float() / max(1, self.seen)


class _NonFiniteWatch:
    """Finds the first step whose training loss is NaN or infinite without a per-step device sync.

    On the CPU reading a 0-d tensor is a memory read, not a sync, so every step is checked at once. On CUDA each
    loss is copied to one of a few pinned host slots with a non-blocking copy and an event, and read once its event
    has completed (usually a step or two later); a slot still busy skips that step's check, which the flush-time
    check (``MetricLogger.nonfinite``) still covers.
    """

    def __init__(self, device: torch.device, slots: int = 4) -> None:
        self.cuda = device.type == "cuda"
        self._free: deque = deque()
        self._pending: deque = deque()
        if self.cuda:
            for _ in range(slots):
                self._free.append((torch.empty((), dtype=torch.float32, pin_memory=True), torch.cuda.Event()))

    def check(self, loss: torch.Tensor, step: int) -> tuple[int, float] | None:
        """Queue ``loss`` of ``step``; return ``(step, value)`` of the first non-finite loss seen so far, else None."""
        if not self.cuda:
            value = float(loss)
            return None if math.isfinite(value) else (step, value)
        if self._free:
            host, event = self._free.popleft()
            host.copy_(loss.float().reshape(()), non_blocking=True)
            event.record()
            self._pending.append((step, host, event))
        while self._pending and self._pending[0][2].query():
            seen, host, event = self._pending.popleft()
            self._free.append((host, event))
            value = float(host)
            if not math.isfinite(value):
                return seen, value
        return None


def _log_eval(logger: MetricLogger, split: str, ev: EvalResult) -> None:
    logger.log(f"{split}/loss", ev.loss)
    logger.log(f"{split}/acc/fused", ev.acc)
    for m, acc in ev.acc_uni.items():
        logger.log(f"{split}/acc/{m}", acc)


def fit(
    cfg: RunConfig,
    store: MetricSink | None = None,
    run_id: str = "",
    run_dir: Path | None = None,
    *,
    resume: Resume | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[StepInfo, dict], None] | None = None,
    save_checkpoints: bool = True,
    data: MultimodalData | LoaderData | None = None,
    model: MultimodalModel | None = None,
    analysis_process: bool = False,
) -> FitResult:
    """Train ``cfg``'s model with its balancing method, logging to ``store`` under ``run_id``.

    With ``analysis_process`` (and a store and run folder), the epoch diagnostics that need only measured arrays
    are computed by a separate analysis process (:mod:`mmviz.probes.record`); otherwise inline.

    Raises :class:`StopTraining` when stopped (after finishing the step, flushing and checkpointing) and
    :class:`Diverged` on a non-finite loss.

    ``data`` replaces ``cfg``'s dataset: an in-memory :class:`MultimodalData` (the fast path) or a
    :class:`LoaderData` of the user's ``Dataset`` per split, batched by ``DataLoader`` workers. ``model`` replaces
    the network ``cfg.model`` describes: any :class:`mmviz.contracts.MultimodalModel`, e.g. a user's model in a
    :class:`mmviz.adapter.ModelAdapter`; it is checked on a val batch and against the method's and probes' needs
    before the first step.
    """
    # the analysis process first, before the data and the model: its start-up (a process started as a program
    # imports torch, ~1.5 s of CPU) overlaps the trainer's set-up (in a new process 1.1-1.4 s of it is torch
    # importing torch._dynamo at the first optimiser call), and CUDA is not initialised yet, so a GPU run forks it too (see AnalysisSupervisor)
    probes = create_probes(cfg.probes)
    supervisor = None
    if (
        analysis_process
        and run_dir is not None
        and hasattr(store, "workspace")
        and not isinstance(store, NullStore)
        and any(isinstance(p, AnalysisProbe) for p in probes)
    ):
        supervisor = AnalysisSupervisor(store.workspace, run_id, Path(run_dir))
        supervisor.ensure_running()
    try:
        return _fit(
            cfg, store, run_id, run_dir, resume=resume, should_stop=should_stop, progress=progress,
            save_checkpoints=save_checkpoints, data=data, model=model, probes=probes, supervisor=supervisor,
        )  # fmt: skip
    except BaseException:
        if supervisor is not None:  # failed before training ended (e.g. a bad data folder): no record will come
            supervisor.abandon()
        raise


def _fit(
    cfg: RunConfig,
    store: MetricSink | None,
    run_id: str,
    run_dir: Path | None,
    *,
    resume: Resume | None,
    should_stop: Callable[[], bool],
    progress: Callable[[StepInfo, dict], None] | None,
    save_checkpoints: bool,
    data: MultimodalData | LoaderData | None,
    model: MultimodalModel | None,
    probes: list,
    supervisor: AnalysisSupervisor | None,
) -> FitResult:
    """:func:`fit`'s body, with the probes made and the analysis process (``supervisor``) started."""
    # ---- set-up: data, model, method, probes, optimiser -------------------------------------------
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    store = store if store is not None else NullStore()
    device = resolve_device(cfg.train.device)
    if model is None:
        data = check_run_config(cfg, data)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data).to(device)
        splits = data.to_splits(device)
    else:
        data = data if data is not None else create_dataset(cfg.dataset, cfg.data)
        splits = data.to_splits(device)
        if isinstance(model, MultimodalModel):
            model = model.to(device)
            model.check_batch(splits["val"].subset(range(min(8, len(splits["val"])))))
        check_run_config(cfg, data, model)
    method = build_method(cfg)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    logger = MetricLogger(store, run_id)
    run_dir = Path(run_dir) if run_dir is not None else None
    save_checkpoints = save_checkpoints and run_dir is not None
    use_amp = device.type == "cuda" and cfg.train.amp and torch.cuda.is_bf16_supported()
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext

    if resume is not None and resume.init_state is not None and resume.init_state.is_file():
        full_init = load_checkpoint(resume.init_state)  # the parent's initial weights
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(full_init)
        init_state = initial_encoder_state(model)
        model.load_state_dict(current)
    else:
        full_init = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        init_state = initial_encoder_state(model)
    if run_dir is not None:
        save_checkpoint(run_dir / "init.pt", full_init)

    info = StepInfo(0, 1, 0, splits["train"].num_batches(cfg.train.batch_size), cfg.train.epochs)
    train_clock = TrainClock()
    ctx = create_context(
        model,
        data,
        splits,
        device,
        log=logger.log,
        event=logger.event,
        artifact=logger.artifact,  # probes record files they write in run_dir (paths relative to it)
        run_dir=run_dir,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        seed=cfg.train.seed,
        step=lambda: info,
        train_clock=train_clock,
        autocast=autocast,
        init_state=init_state,
        enabled_probes=frozenset(p.name for p in probes),
    )
    method.setup(ctx)
    extra_params = [p for mod in method.extra_modules().values() for p in mod.parameters()]
    model_params = list(model.parameters())
    optimizer = build_optimizer(cfg.optim, [model_params, extra_params])
    ctx.optimizer = optimizer
    scheduler = build_scheduler(cfg.optim, optimizer, cfg.train.epochs)
    recorder = EpochRecorder(ctx, supervisor) if supervisor is not None else None
    ctx.analysis_in_process = recorder is not None  # else the analysis probes analyse inline, at their turn
    for p in probes:
        p.setup(ctx)
    # train.threads unset: leave one core to the analysis process beside CPU training (on 2 cores, two OpenMP threads
    # beside it made every step 2-3x slower, bench/overhead.py; one thread: 1.04x), the caller's count restored after
    threads_before = torch.get_num_threads()
    reserved = not cfg.train.threads and supervisor is not None and device.type == "cpu" and threads_before > 1
    if reserved:
        torch.set_num_threads(threads_before - 1)
    step_probes = [p for p in probes if p.per_step]
    epoch_probes = [p for p in probes if p.per_epoch]

    # ---- resume from a checkpoint (fork) or write the epoch-0 checkpoint ----------------------------
    start_epoch, step, best_epoch, best_acc = 1, 0, 0, -1.0  # -1: nothing evaluated yet (never stored)
    if resume is not None:
        ck = load_checkpoint(resume.checkpoint)
        model.load_state_dict(ck["model"])
        if ck.get("optimizer_name") == cfg.optim.name:
            same = resume.same_method and ck["optimizer"]["param_groups"].__len__() == len(optimizer.param_groups)
            load_optimizer_state(optimizer, ck["optimizer"], len(model_params), same)
        if scheduler is not None and ck.get("scheduler") is not None and ck.get("schedule") == cfg.optim.schedule:
            scheduler.load_state_dict(ck["scheduler"])
        if resume.same_method:
            method.load_state_dict(ck["method"])
        set_rng_state(ck["rng"], generator)
        start_epoch, step = ck["epoch"] + 1, ck["step"]  # best-on-val is tracked over this run's own epochs
        logger.step, logger.epoch = step, float(ck["epoch"])
        logger.event("fork", {"from_epoch": ck["epoch"], "same_method": resume.same_method})

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "optimizer_name": cfg.optim.name,
            "schedule": cfg.optim.schedule,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "method": method.state_dict(),
            "method_name": cfg.method,
            "rng": rng_state(generator),
            "best_epoch": best_epoch,
            "best_val_acc": best_acc,
        }

    writer = CheckpointWriter(background=True)

    def _artifact(epoch: int, path: Path):
        relative = str(path.relative_to(run_dir))
        # runs on the writer's thread once the file is complete; recorded with the logger's next flush (one commit)
        return lambda: logger.artifact_from_thread(epoch, "checkpoint", relative)

    if resume is None and save_checkpoints:
        writer.submit(checkpoint_path(run_dir, 0), checkpoint(0), _artifact(0, checkpoint_path(run_dir, 0)))
        writer.wait()  # before the first step: a disk that cannot take a checkpoint fails the run at once

    def copy_state() -> dict[str, Any]:
        model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"model": model_state, "method": copy.deepcopy(method.state_dict())}

    best_state = copy_state()

    def flush_and_check(epoch_done: int | None = None, **fields: Any) -> None:
        logger.flush(heartbeat={"step": step, **fields})  # converts the buffered losses: a non-finite one
        if logger.nonfinite is not None:  # ends the run as diverged
            raise Diverged(*logger.nonfinite)
        if should_stop() or store.stop_requested(run_id):
            raise StopTraining()

    watch = _NonFiniteWatch(device)
    completed = start_epoch - 1  # whole epochs done: what the stop checkpoint is labelled with
    step_grace = 0.0  # seconds past the flush interval a step waits for the epoch end's flush
    mid_epoch = False  # whether steps were taken since the last whole epoch (the stop point is then in between)
    try:
        for epoch in range(start_epoch, cfg.train.epochs + 1):
            # ---- one epoch of training --------------------------------------------------------------
            model.train()
            t_epoch = time.perf_counter()
            t_flush, steps_since = time.perf_counter(), 0
            train_acc = _RunningAccuracy(device)
            train_clock.resume()
            info = StepInfo(step, epoch, 0, info.batches_per_epoch, cfg.train.epochs)
            logger.step, logger.epoch = step, float(epoch - 1)
            for p in probes:
                p.on_epoch_start(info)
            method.on_epoch_start(info)
            for bi, batch in enumerate(splits["train"].batches(cfg.train.batch_size, generator)):
                info = StepInfo(step, epoch, bi, info.batches_per_epoch, cfg.train.epochs)
                logger.step, logger.epoch = step, epoch - 1 + bi / info.batches_per_epoch
                mid_epoch = True
                if method.replaces_step:
                    out, loss = method.training_step(batch, info, _ProbeHooks(step_probes, info))
                else:
                    batch = method.transform_batch(batch, info)
                    with autocast():
                        out = model(batch)
                        loss = method.compute_loss(out, batch, info)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    due = [p for p in step_probes if p.due_step(info)]
                    for p in due:
                        p.on_after_backward(out, batch, info)
                    method.on_after_backward(out, batch, info)
                    for p in due:
                        p.on_before_optimizer_step(out, batch, info)
                    method.on_before_optimizer_step(out, batch, info)
                    optimizer.step()
                loss_d = loss.detach()
                logger.log("train/loss", loss_d)
                bad = watch.check(loss_d, step)
                if bad is not None:  # stop at the step where the loss broke, with its rows written
                    logger.flush(heartbeat={"step": step + 1})
                    raise Diverged(*bad)
                train_acc.add(out.logits, batch["label"])
                step += 1
                steps_since += 1
                if progress is not None:
                    progress(info, {"loss": loss_d})
                if logger.due(ahead=-step_grace):
                    now = time.perf_counter()
                    logger.log("sys/step_ms", 1000.0 * (now - t_flush) / max(1, steps_since))
                    t_flush, steps_since = now, 0
                    flush_and_check()
                elif should_stop():
                    flush_and_check()

            # ---- end of epoch: schedule, evaluation, probes, method, checkpoint -------------------------
            if steps_since:  # the steps' time since it was last logged (short epochs flush only at their ends)
                logger.log("sys/step_ms", 1000.0 * (time.perf_counter() - t_flush) / steps_since)
            train_clock.pause()
            logger.epoch = float(epoch)
            logger.log("train/acc/fused", train_acc.value())
            logger.log("lr", optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
            ev = evaluate(model, method.predict, splits["val"], cfg.train.eval_batch_size, autocast)
            if not math.isfinite(ev.loss):  # diverged weights: stop before probing them, with the first bad step
                flush_and_check()
                raise Diverged(step, ev.loss, "validation loss")  # the last step broke the weights
            _log_eval(logger, "val", ev)
            probed = False
            for p in epoch_probes:
                if p.due_epoch(epoch) or epoch == cfg.train.epochs:
                    p.on_epoch_end(epoch, info, ev)
                    probed = True
            if recorder is not None:  # the epoch's record goes to the analysis process (inline: already analysed)
                recorder.end_epoch(epoch, info)
            if ev.acc > best_acc:  # keep the weights that were evaluated, before the method's epoch-end changes
                best_epoch, best_acc = epoch, ev.acc
                best_state = copy_state()
            method.on_epoch_end(epoch, info, ev)
            epoch_s = time.perf_counter() - t_epoch
            logger.log("sys/epoch_s", epoch_s)
            if save_checkpoints and (epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs):
                path = checkpoint_path(run_dir, epoch)
                writer.submit(path, checkpoint(epoch), _artifact(epoch, path))
            if progress is not None:
                progress(info, {"val_acc": ev.acc, "epoch_done": epoch, "logged": logger.pending()})
            completed, mid_epoch = epoch, False
            # after an epoch whose diagnostics ran, a write now (their rows and the record's listing); else one write
            # per flush interval, made here at an epoch end when the interval would pass during the next epoch, so
            # that steps of epochs shorter than the interval do not write (only if twice the interval has passed)
            step_grace = logger.flush_interval if epoch_s < logger.flush_interval else 0.0
            if (
                probed
                or logger.due(ahead=epoch_s)
                or should_stop()
                or epoch == cfg.train.epochs
                or store.stop_requested(run_id)  # one read: a Stop is seen at this epoch's end
            ):
                flush_and_check(epochs_done=epoch, best_val_acc=best_acc, best_epoch=best_epoch)
    except StopTraining:
        # finish cleanly: the step is done; write what we have and a checkpoint of the current state
        logger.event("stop", {"step": step})
        if save_checkpoints:
            # labelled with the whole epochs done; a stop seen at an epoch's end is that epoch's own checkpoint too
            save_checkpoint(checkpoint_stop_path(run_dir), checkpoint(completed))
            logger.artifact(completed, "checkpoint_stop", "checkpoints/stopped.pt", {"step": step})
            writer.wait()  # a queued write of this epoch's checkpoint is on disk before we look for it
            if not mid_epoch and not checkpoint_path(run_dir, completed).is_file():
                save_checkpoint(checkpoint_path(run_dir, completed), checkpoint(completed))
                logger.artifact(completed, "checkpoint", str(checkpoint_path(run_dir, completed).relative_to(run_dir)))
        logger.flush()  # rows, the stop event and the checkpoint record in one transaction
        raise
    finally:
        if reserved:
            torch.set_num_threads(threads_before)
        writer.close()
        if recorder is not None:  # every epoch's diagnostics are in the store before the run ends
            recorder.close(logger.flush)

    # ---- final test of the best-on-val weights ---------------------------------------------------
    model.load_state_dict(best_state["model"])
    method.load_state_dict(best_state["method"])
    test = evaluate(model, method.predict, splits["test"], cfg.train.eval_batch_size, autocast)
    _log_eval(logger, "test", test)
    logger.flush()
    result = {"test_acc": test.acc, "test_loss": test.loss, **{f"test_acc_{m}": a for m, a in test.acc_uni.items()}}
    return FitResult(cfg.train.epochs, step, best_epoch, best_acc, result, model, method)
