"""Checkpoints: everything needed to resume a run exactly (model, optimiser, scheduler, method, RNG).

Files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``: they hold only
tensors and plain containers, never pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mmviz.errors import StoreError


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    """Where the checkpoint taken after ``epoch`` epochs lives (epoch 0 = at initialisation)."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a killed run never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) onto the CPU."""
    if not Path(path).is_file():
        raise StoreError(f"No checkpoint at {str(path)!r}.")
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The random states a resumed run needs: torch's global CPU/CUDA state and the data-order generator."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["data"])


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], n_model_params: int, same_layout: bool
) -> None:
    """Load a saved optimiser state; when the method's extra parameters differ, keep only the model's part.

    The model's parameters always come first (group 0) so their state can be carried across a fork
    that changes the balancing method. Hyper-parameters (lr, momentum, ...) stay those of ``optimizer``.
    """
    current = optimizer.state_dict()
    if same_layout:
        merged = {"state": saved["state"], "param_groups": saved["param_groups"]}
    else:
        state = {k: v for k, v in saved["state"].items() if int(k) < n_model_params}
        groups = [dict(saved["param_groups"][0])] + current["param_groups"][1:]
        merged = {"state": state, "param_groups": groups}
    # keep the new run's hyper-parameters
    for g_new, g_old in zip(current["param_groups"], merged["param_groups"], strict=False):
        for k, v in g_new.items():
            if k != "params":
                g_old[k] = v
    optimizer.load_state_dict(merged)


def _detached_copy(obj: Any) -> Any:
    """Deep copy of a (nested) state with every tensor cloned to the CPU, so training can go on."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached_copy(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints on a background thread; the training loop only pays for a CPU copy of the state.

    ``wait()`` blocks until every queued write is on disk (called before reading a checkpoint back and at
    the end of a run); a write error is re-raised there.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmviz-ckpt")
        self._pending: list = []

    def submit(self, path: Path, state: dict[str, Any], done=None) -> None:
        """Queue ``state`` (copied now) for writing to ``path``; ``done()`` runs after the write."""
        snapshot = _detached_copy(state)

        def work() -> None:
            save_checkpoint(path, snapshot)
            if done is not None:
                done()

        self._pending.append(self._pool.submit(work))

    def wait(self) -> None:
        """Block until all queued checkpoints are written."""
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()

    def close(self) -> None:
        """Wait for pending writes and stop the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
