"""A run of the user's own training loop, written to the store exactly as a built-in run.

The per-step and per-epoch calls mirror ``fit()``'s hook order (DESIGN.md §3) and call the same method and probe
objects, so the maths is the same code:

``transform`` -> (your forward) -> ``loss`` -> (your ``backward()``) -> ``after_backward``: probes(after_backward)
-> method gradient modulation -> probes(before_optimizer_step) -> (your ``optimizer.step()``);
``end_epoch(val_loader)``: evaluation on val -> epoch probes -> the method's epoch end.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from mmviz import __version__
from mmviz.api import lifecycle
from mmviz.api.context import describe_data, null_autocast
from mmviz.balancing import METHODS
from mmviz.balancing.base import BalancingMethod
from mmviz.contracts import EvalResult, ModelSpec, MultimodalModel, StepInfo
from mmviz.data.loader import LoaderSplit, check_batch
from mmviz.errors import ConfigError, MmvizError
from mmviz.probes import PROBES, create_probes
from mmviz.store import open_store
from mmviz.training.build import check_probes
from mmviz.training.context import TrainClock, create_context
from mmviz.training.evaluate import evaluate
from mmviz.training.logger import MetricLogger
from mmviz.training.loop import _ProbeHooks, _RunningAccuracy
from mmviz.training.runner import _Heartbeat


def _probe_configs(probes: dict[str, Any] | None) -> dict[str, Any]:
    """Every registered probe's config (its defaults), with ``probes``' changes: ``{name: False | {field: v}}``."""
    probes = dict(probes or {})
    for name in probes:
        PROBES.get(name)  # unknown names: the registry's one sentence with a did-you-mean
    out = {}
    for entry in PROBES:
        change = probes.get(entry.name, {})
        if change is False or change is True:
            change = {"enabled": change}
        out[entry.name] = entry.config_cls.from_dict(dict(change), where=f"probes.{entry.name}")
    return out


class Run:
    """Your training loop's run in an mmviz workspace: open it, feed it, close it (see :func:`mmviz.api.watch`)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        train_loader: torch.utils.data.DataLoader,
        epochs: int,
        val_loader: torch.utils.data.DataLoader | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        method: str = "baseline",
        method_params: dict[str, Any] | None = None,
        probes: dict[str, Any] | None = None,
        workspace: str | os.PathLike | None = None,
        name: str = "",
        dataset: str = "own",
        num_classes: int | None = None,
        settings: dict[str, Any] | None = None,
        seed: int = 0,
        eval_batch_size: int = 512,
        probe_size: int = 500,
        num_samples: int | None = None,
        origin: str = "api",
    ) -> None:
        # ---- every check before anything is written ------------------------------------------------------
        if not isinstance(model, MultimodalModel):
            raise ConfigError(
                f"The model {type(model).__name__!r} does not follow mmviz's model contract; wrap it with "
                "mmviz.adapter.ModelAdapter (naming its encoders, fusion and head) or build a models.MultimodalNet."
            )
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(
                f"The 'epochs' argument of mmviz.api.watch must be an integer >= 1. Got {epochs!r} instead."
            )
        self.model = model
        self.modalities = tuple(model.modalities)
        entry = METHODS.get(method)
        method_cfg = entry.config_cls.from_dict(dict(method_params or {}), where="method")
        self.device = next(model.parameters()).device
        self.train_split = LoaderSplit.from_loader(train_loader, self.device)
        self.val_split = LoaderSplit.from_loader(val_loader, self.device) if val_loader is not None else None
        check_batch(self.train_split.dataset[0], self.modalities, "train loader's dataset")
        sample = self.train_split.subset([0, 1] if len(self.train_split) > 1 else [0])
        if hasattr(model, "check_batch"):  # an adapted model: its wrapping is checked on real samples, in one sentence
            model.check_batch(sample)
        spec = ModelSpec.of(model)
        fusion = str(getattr(model, "fusion_name", "") or type(model).__name__)
        entry.factory.check_compatible(method_cfg, spec)
        self.method: BalancingMethod = entry.factory(method_cfg)
        probe_cfgs = _probe_configs(probes)
        check_probes(probe_cfgs, spec)
        if num_classes is None:
            num_classes = int(getattr(model, "num_classes", 0)) or None
        if num_classes is None:
            raise ConfigError("mmviz.api.watch needs 'num_classes' for a model without a 'num_classes' attribute.")
        self.data = describe_data(
            dataset, self.modalities, num_classes, self.train_split, self.val_split, probe_size, seed, num_samples
        )
        self.epochs = epochs
        self.optimizer = optimizer
        self.eval_batch_size = eval_batch_size
        config = {
            "origin": origin,
            "dataset": dataset,
            "method": entry.name,
            "method_params": method_cfg.to_dict(),
            "probes": {k: v.to_dict() for k, v in probe_cfgs.items()},
            "train": {"epochs": epochs, "batch_size": train_loader.batch_size, "seed": seed},
            "model": {
                "class": type(model).__name__,
                "fusion": fusion,
                "parameters": int(sum(p.numel() for p in model.parameters())),
            },
            "optimizer": type(optimizer).__name__ if optimizer is not None else None,
            "settings": dict(settings or {}),
        }

        # ---- the run in the store ------------------------------------------------------------------------
        self.store = open_store(workspace)
        self.run_id = self.store.create_run(
            config=config, name=name or f"{dataset}-{entry.name}", dataset=dataset, method=entry.name, fusion=fusion,
            modalities=list(self.modalities), device=str(self.device), version=__version__, origin=origin,
        )  # fmt: skip
        self.run_dir = self.store.run_dir(self.run_id)
        self.store.set_status(self.run_id, "running", pid=os.getpid())
        self.status = "running"
        self._beat = _Heartbeat(self.store, self.run_id)
        self._beat.start()
        lifecycle.register(self)

        # ---- method, probes and the context they share (as fit() builds it) ------------------------------
        try:
            self.logger = MetricLogger(self.store, self.run_id)
            self.clock = TrainClock()
            self.info = StepInfo(0, 1, 0, max(1, len(train_loader)), epochs)
            splits = {"train": self.train_split}
            if self.val_split is not None:
                splits["val"] = self.val_split
            self.ctx = create_context(
                model, self.data, splits, self.device, log=self.logger.log, event=self.logger.event,
                artifact=self.logger.artifact, run_dir=self.run_dir, optimizer=optimizer,
                batch_size=int(train_loader.batch_size or 1), eval_batch_size=eval_batch_size, seed=seed,
                step=lambda: self.info, train_clock=self.clock, autocast=null_autocast,
                enabled_probes=frozenset(n for n, c in probe_cfgs.items() if c.enabled),
            )  # fmt: skip
            self.method.setup(self.ctx)
            extra = [p for mod in self.method.extra_modules().values() for p in mod.parameters()]
            if extra:
                if optimizer is None:
                    raise ConfigError(
                        f"Method {entry.name!r} trains extra modules of its own; pass your optimizer to "
                        "mmviz.api.watch(optimizer=...) so they are added to it."
                    )
                for mod in self.method.extra_modules().values():
                    mod.to(self.device)
                optimizer.add_param_group({"params": extra})
            self.probes = create_probes(probe_cfgs)
            for p in self.probes:
                p.setup(self.ctx)
        except BaseException as exc:
            self._end_with(exc)
            raise
        self.step_probes = [p for p in self.probes if p.per_step]
        self.epoch_probes = [p for p in self.probes if p.per_epoch]
        self.step = 0
        self.epoch = 1
        self.batch_index = 0
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.should_stop = False
        self._train_acc = _RunningAccuracy(self.device)
        self._loss_called = False
        self._epoch_started = False
        self._last: tuple[Any, dict[str, torch.Tensor]] | None = None
        self._overrides_loss = type(self.method).compute_loss is not BalancingMethod.compute_loss
        self.last_eval: EvalResult | None = None

    # ---- per step ------------------------------------------------------------------------------------------
    def _step_info(self) -> StepInfo:
        self.info = StepInfo(self.step, self.epoch, self.batch_index, self.info.batches_per_epoch, self.epochs)
        self.logger.step = self.step
        self.logger.epoch = self.epoch - 1 + self.batch_index / self.info.batches_per_epoch
        if not self._epoch_started:  # the epoch's first call: the epoch-start hooks, as fit() runs them
            self._epoch_started = True
            self.clock.resume()
            for p in self.probes:
                p.on_epoch_start(self.info)
            self.method.on_epoch_start(self.info)
        return self.info

    def transform(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch to feed your model this step: the method's input change (e.g. AMD's modality dropout)."""
        return self.method.transform_batch(batch, self._step_info())

    def loss(self, out: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss to back-propagate: the method's (fused cross-entropy plus e.g. PMR's prototype term)."""
        self._loss_called = True
        self.remember(out, batch)
        return self.method.compute_loss(out, batch, self._step_info())

    def remember(self, out: Any, batch: dict[str, torch.Tensor]) -> None:
        """Keep this step's model output and batch for an ``after_backward()`` called without them (Lightning)."""
        self._last = (out, batch)

    def after_backward(
        self, out: Any = None, batch: dict[str, torch.Tensor] | None = None, loss: torch.Tensor | None = None
    ) -> None:
        """Call after ``loss.backward()`` and before ``optimizer.step()``: probes read the gradients, the method
        modulates them (e.g. OGM-GE), and the step's loss and accuracy are logged. Without ``out`` and ``batch``,
        those of the step's ``run.loss()`` (or ``remember()``) call are used."""
        if self._overrides_loss and not self._loss_called:
            raise ConfigError(
                f"Method {self.method.name!r} changes the loss; compute it with run.loss(out, batch) before backward()."
            )
        if out is None or batch is None:
            if self._last is None:
                raise ConfigError("run.after_backward() needs this step's model output and batch: pass them.")
            out, batch = self._last
        self._loss_called = False
        self._last = None
        info = self._step_info()
        due = [p for p in self.step_probes if p.due_step(info)]
        for p in due:
            p.on_after_backward(out, batch, info)
        self.method.on_after_backward(out, batch, info)
        for p in due:
            p.on_before_optimizer_step(out, batch, info)
        self.method.on_before_optimizer_step(out, batch, info)
        self._finish_step(out, batch, loss)

    def training_step(self, batch: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor]:
        """For a method that replaces the whole step (MLA): it runs forward, backward and your optimizer's step."""
        if not self.method.replaces_step:
            raise ConfigError(
                f"Method {self.method.name!r} does not replace the training step; run your own step and call "
                "run.after_backward(out, batch, loss)."
            )
        if self.optimizer is None:
            raise ConfigError(f"Method {self.method.name!r} steps the optimizer itself; pass it to mmviz.api.watch.")
        info = self._step_info()
        out, loss = self.method.training_step(batch, info, _ProbeHooks(self.step_probes, info))
        self._finish_step(out, batch, loss)
        return out, loss

    def _finish_step(self, out: Any, batch: dict[str, torch.Tensor], loss: torch.Tensor | None) -> None:
        if loss is not None:
            self.logger.log("train/loss", loss.detach())
        self._train_acc.add(out.logits, batch["label"])
        self.step += 1
        self.batch_index += 1
        if self.logger.due():
            self._flush()

    def log(self, key: str, value: Any, step: int | None = None) -> None:
        """Record one of your own metrics at the current (or given) step (key like ``train/my_metric``)."""
        self.logger.log(key, value, step)

    def _flush(self, **fields: Any) -> None:
        self.logger.flush(heartbeat={"step": self.step, **fields})
        if self.logger.nonfinite is not None and self.status == "running":
            step, value = self.logger.nonfinite
            self.store.set_status(self.run_id, "diverged", error=f"The training loss became {value} at step {step}.")
            self.status = "diverged"
        if self.store.stop_requested(self.run_id):
            self.should_stop = True

    # ---- per epoch -----------------------------------------------------------------------------------------
    def end_epoch(self, val_loader: torch.utils.data.DataLoader | None = None) -> EvalResult:
        """Call after each epoch's last step: evaluates on val (the loader given here or to ``watch``), runs the
        epoch probes (separability, prototypes, Shapley, snapshots, ...) and the method's epoch end; returns the
        evaluation (``acc``, ``loss``, ``acc_uni``, ...)."""
        self.clock.pause()
        epoch = self.epoch
        self.logger.epoch = float(epoch)
        self.logger.log("train/acc/fused", self._train_acc.value())
        if self.optimizer is not None:
            self.logger.log("lr", self.optimizer.param_groups[0]["lr"])
        if val_loader is not None and (self.val_split is None or val_loader is not self.val_split.loader):
            self.val_split = LoaderSplit.from_loader(val_loader, self.device)
            self.ctx.splits["val"] = self.val_split
        if self.val_split is None:
            raise ConfigError(
                "run.end_epoch() needs the validation data: pass val_loader to mmviz.api.watch or to end_epoch."
            )
        ev = evaluate(self.model, self.method.predict, self.val_split, self.eval_batch_size, null_autocast)
        self.logger.log("val/loss", ev.loss)
        self.logger.log("val/acc/fused", ev.acc)
        for m, acc in ev.acc_uni.items():
            self.logger.log(f"val/acc/{m}", acc)
        if math.isfinite(ev.loss):
            for p in self.epoch_probes:
                if p.due_epoch(epoch) or epoch == self.epochs:
                    p.on_epoch_end(epoch, self.info, ev)
        if ev.acc > self.best_val_acc:
            self.best_val_acc, self.best_epoch = ev.acc, epoch
        self.method.on_epoch_end(epoch, self.info, ev)
        self.last_eval = ev
        fields = {"epochs_done": epoch}
        if self.best_epoch:
            fields.update(best_val_acc=self.best_val_acc, best_epoch=self.best_epoch)
        self._flush(**fields)
        self.epoch += 1
        self.batch_index = 0
        self._epoch_started = False
        self._train_acc = _RunningAccuracy(self.device)
        return ev

    # ---- the end ---------------------------------------------------------------------------------------------
    def _end(self, status: str, error: str | None = None) -> None:
        if self.status not in ("running", "diverged"):
            return
        final = "diverged" if self.status == "diverged" and status == "finished" else status
        self.status = final
        lifecycle.unregister(self)
        try:
            self._beat.done.set()
            if hasattr(self, "logger"):
                self.logger.flush(heartbeat={"step": getattr(self, "step", 0)})
            if final != "diverged" or status != "finished":
                self.store.set_status(self.run_id, final, error=error)
        except MmvizError:
            pass  # the store went away: the heartbeat stops, and the run shows as lost

    def _end_with(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._end("stopped", "Interrupted from the keyboard.")
        else:
            self._end("failed", lifecycle.error_text(exc))

    def close(self) -> None:
        """End the run as finished (stopped when the dashboard asked it to stop); flushes what is buffered."""
        self._end("stopped" if self.should_stop else "finished")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._end_with(exc)
        else:
            self.close()

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, status={self.status!r}, step={getattr(self, 'step', 0)})"

    @property
    def elapsed(self) -> float:
        """Seconds spent in training steps so far."""
        return self.clock()
