"""The Lightning callback: a LightningModule's training lands in the store like a plain loop's (and a built-in run's)."""

from __future__ import annotations

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="make test installs the optional Lightning extra")

from mmviz.lightning import MmvizCallback  # noqa: E402
from mmviz.probes import PROBES  # noqa: E402
from mmviz.store import open_store  # noqa: E402


class Module(pl.LightningModule):
    """A LightningModule around a multimodal model; ``mmviz_loss`` uses the run's loss (needed by PMR)."""

    def __init__(self, model, mmviz_loss: bool = False, fail_at: int | None = None) -> None:
        super().__init__()
        self.model, self.mmviz_loss, self.fail_at = model, mmviz_loss, fail_at

    def training_step(self, batch, batch_idx):
        if self.fail_at is not None and self.global_step == self.fail_at:
            raise RuntimeError("the module broke")
        out = self.model(batch)
        if self.mmviz_loss:
            return self.mmviz.loss(out, batch)
        return torch.nn.functional.cross_entropy(out.logits, batch["label"])

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", (self.model(batch).logits.argmax(1) == batch["label"]).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(callback, epochs=2):
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback],
    )  # fmt: skip


def test_a_lightning_module_is_watched_like_a_plain_loop(tmp_path, tiny):
    model, _, train, val = tiny()
    callback = MmvizCallback(workspace=tmp_path, method="ogm_ge", name="lit")
    _trainer(callback).fit(Module(model), train, val)
    store = open_store(tmp_path)
    row = store.get_run(callback.run.run_id)
    assert (row["status"], row["origin"], row["epochs_done"], row["method"]) == ("finished", "lightning", 2, "ogm_ge")
    keys = set(store.metric_keys(row["run_id"]))
    for entry in PROBES:
        for pattern in entry.flags["keys"]:
            stem = pattern.split("/<m>")[0]
            assert any(k == stem or k.startswith(stem + "/") for k in keys), f"{entry.name}: no {pattern}"
    assert "coef/ogm_ge/a" in keys  # the method modulated the gradients before each optimiser step
    losses = store.load_metrics(row["run_id"], ["train/loss"])
    assert losses["step"].tolist() == list(range(6)) and losses["value"].notna().all()
    assert len(store.load_artifacts(row["run_id"], "snapshot")) == 2
    assert not model._forward_hooks  # no hook left behind


def test_a_method_that_changes_the_loss_runs_through_the_modules_one_line(tmp_path, tiny):
    model, _, train, val = tiny()
    callback = MmvizCallback(workspace=tmp_path, method="pmr", probes={"shapley": False, "snapshots": False})
    _trainer(callback, epochs=1).fit(Module(model, mmviz_loss=True), train, val)
    store = open_store(tmp_path)
    assert store.get_run(callback.run.run_id)["status"] == "finished"
    assert "pmr/pce/a" in store.metric_keys(callback.run.run_id)


def test_an_exception_in_the_module_marks_the_run_failed(tmp_path, tiny):
    model, _, train, val = tiny()
    callback = MmvizCallback(workspace=tmp_path)
    with pytest.raises(RuntimeError, match="the module broke"):
        _trainer(callback).fit(Module(model, fail_at=2), train, val)
    row = open_store(tmp_path).get_run(callback.run.run_id)
    assert row["status"] == "failed" and row["error"] == "RuntimeError: the module broke"
