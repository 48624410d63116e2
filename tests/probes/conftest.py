"""A training context built as ``fit()`` builds it, for driving probes hook by hook."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmviz.contracts import StepInfo, TrainContext
from mmviz.data.base import TensorSplit
from mmviz.training.build import build_model, check_run_config
from mmviz.training.config import build_run_config
from mmviz.training.context import create_context
from mmviz.training.evaluate import evaluate


@dataclasses.dataclass
class Harness:
    """A model, its training context, what the probes logged and the artifacts they recorded."""

    ctx: TrainContext
    logged: list[tuple[str, object]]
    artifacts: list[tuple]
    info: StepInfo
    data: object = None

    @property
    def model(self) -> torch.nn.Module:
        return self.ctx.model

    def keys(self) -> set[str]:
        return {k for k, _ in self.logged}

    def values(self, key: str) -> list[float]:
        return [float(v) for k, v in self.logged if k == key]

    def next_epoch(self) -> None:
        """Move the step pointer on (empties the probes' per-epoch cache)."""
        i = self.info
        self.info = StepInfo(i.step + i.batches_per_epoch, i.epoch + 1, 0, i.batches_per_epoch, i.total_epochs)

    def evaluation(self, predict=None):
        return evaluate(self.model, predict or (lambda m, b: m(b)), self.ctx.splits["val"], 512)

    def backward(self) -> tuple:
        """One training forward/backward on the first train batch (gradients populated, no step)."""
        batch = next(self.ctx.splits["train"].batches(32))
        out = self.model(batch)
        self.model.zero_grad(set_to_none=True)
        F.cross_entropy(out.logits, batch["label"]).backward()
        return out, batch


@pytest.fixture
def make_harness():
    """``make_harness(dataset='synthetic', sets=(), run_dir=None)`` -> :class:`Harness`."""
    threads = torch.get_num_threads()

    def make(dataset: str = "synthetic", sets=(), run_dir: Path | None = None) -> Harness:
        torch.set_num_threads(1)  # as training does with train.threads=1: steadier on a shared machine
        base = ["data.n_train=120"] if dataset == "synthetic" else []
        cfg = build_run_config(dataset, "baseline", [*base, *sets], epochs=3)
        data = check_run_config(cfg)
        torch.manual_seed(0)
        model = build_model(cfg.model, data)
        cpu = torch.device("cpu")
        splits = {s: TensorSplit(data, data.splits[s], cpu) for s in ("train", "val", "test")}
        logged: list = []
        artifacts: list = []
        harness = Harness(None, logged, artifacts, StepInfo(3, 1, 3, 4, 3), data)  # type: ignore[arg-type]
        harness.ctx = create_context(
            model, data, splits, cpu, run_dir=run_dir, log=lambda k, v: logged.append((k, v)),
            step=lambda: harness.info, artifact=lambda *a: artifacts.append(a),
            enabled_probes=frozenset(n for n, c in cfg.probes.items() if c.enabled),
        )  # fmt: skip
        return harness

    yield make
    torch.set_num_threads(threads)
