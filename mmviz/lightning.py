"""A PyTorch Lightning callback that watches a ``LightningModule``'s training through :mod:`mmviz.api`.

Lightning is an optional extra: installing mmviz does not pull it, and this module imports it only when used
(``pip install lightning``). The callback opens an :class:`mmviz.api.Run` when training starts and makes the same
calls a plain loop makes, at the matching Lightning hooks:

=========================================== =============================================================
Lightning hook                              mmviz.api call
=========================================== =============================================================
``on_train_start``                          open the run (model, train / val loaders, ``max_epochs``, optimiser)
``on_train_batch_start``                    ``run.transform(batch)``: the method's input change, in place
``on_before_optimizer_step``                ``run.after_backward()``: probes read gradients, the method modulates
``on_train_batch_end``                      the step's loss (``training_step``'s returned loss) is logged
``on_train_epoch_end`` (after validation)   ``run.end_epoch(val loader)``: evaluation, epoch probes, method
``on_fit_end`` / ``on_exception``           the run ends finished / failed
=========================================== =============================================================

The model mmviz watches is the module itself when it follows the model contract, else its attribute
``model_attr`` (default ``"model"``), e.g. a :class:`models.MultimodalNet` or an adapted model. Its output in
``training_step`` is picked up by a forward hook (removed at the end). A method that changes the loss (PMR, AUX,
...) needs one line in ``training_step``: ``loss = self.mmviz.loss(out, batch)`` (the callback sets
``pl_module.mmviz`` to the run). A stop requested from the dashboard sets ``trainer.should_stop``.
"""

from __future__ import annotations

import os
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mmviz.lightning needs PyTorch Lightning, an optional extra: pip install lightning (CPU torch stays as is)."
    ) from exc

import mmviz.api
from mmviz.errors import ConfigError


class MmvizCallback(pl.Callback):
    """Watch a ``LightningModule``'s training in the mmviz dashboard (arguments as :func:`mmviz.api.watch`)."""

    def __init__(
        self,
        *,
        workspace: str | os.PathLike | None = None,
        method: str = "baseline",
        method_params: dict[str, Any] | None = None,
        probes: dict[str, Any] | None = None,
        name: str = "",
        dataset: str = "own",
        settings: dict[str, Any] | None = None,
        model_attr: str = "model",
        **watch_kwargs: Any,
    ) -> None:
        self.options = dict(
            workspace=workspace, method=method, method_params=method_params, probes=probes, name=name,
            dataset=dataset, settings=settings, origin="lightning", **watch_kwargs,
        )  # fmt: skip
        self.model_attr = model_attr
        self.run: mmviz.api.Run | None = None
        self._hook = None
        self._out = None
        self._batch = None

    def _model(self, pl_module: pl.LightningModule):
        if hasattr(pl_module, "modalities") and hasattr(pl_module, "encoder_parameters"):
            return pl_module
        model = getattr(pl_module, self.model_attr, None)
        if model is None:
            raise ConfigError(
                f"The LightningModule {type(pl_module).__name__!r} has no attribute {self.model_attr!r}; pass "
                "MmvizCallback(model_attr=...) naming the multimodal model mmviz should watch."
            )
        return model

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open the run: the model, the train and val loaders, ``max_epochs`` and the first optimiser."""
        model = self._model(pl_module)
        val = trainer.val_dataloaders
        if isinstance(val, (list, tuple)):
            val = val[0] if val else None
        self.run = mmviz.api.watch(
            model, train_loader=trainer.train_dataloader, val_loader=val, epochs=int(trainer.max_epochs),
            optimizer=trainer.optimizers[0] if trainer.optimizers else None, **self.options,
        )  # fmt: skip
        pl_module.mmviz = self.run

        def keep_output(module, inputs, output) -> None:
            if module.training:
                self._out = output

        self._hook = model.register_forward_hook(keep_output)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Apply the method's input change (e.g. AMD's modality dropout) to the batch the module will see."""
        changed = self.run.transform(batch)
        if changed is not batch:
            batch.update(changed)
        self._batch = batch

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        """Probes read the gradients; the method modulates them (the step's output comes from the forward hook)."""
        self.run.after_backward(self._out, self._batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log the step's loss; pass a stop request from the dashboard on to the trainer."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.run.log("train/loss", loss.detach(), step=self.run.step - 1)
        if self.run.should_stop:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Evaluate on val, run the epoch probes and the method's epoch end."""
        self.run.end_epoch()

    def _finish(self, status_exc: BaseException | None = None) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.run is not None:
            if status_exc is None:
                self.run.close()
            else:
                self.run._end_with(status_exc)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The run ends as finished (stopped when the dashboard asked)."""
        self._finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """The run ends as failed (stopped on a keyboard interrupt)."""
        self._finish(exception)
