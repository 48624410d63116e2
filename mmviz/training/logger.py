"""Buffered metric and event logging from a training process to the run store.

Values may be Python numbers or tensors (on any device). Tensors are kept as they are and converted
in one batched transfer at flush time, so on a GPU no per-step ``.item()`` sync happens. Rows, events,
artifact records and the heartbeat are written together with the store's single write primitive,
``log_batch`` (one transaction per flush), at most every ``flush_interval`` s.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from typing import Any

import torch

from mmviz.store.contract import MetricSink

KEY_RE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")


def _to_floats(scalars: list[torch.Tensor]) -> list[float]:
    """0-d float32 tensors as Python floats: one stack and one host transfer per device.

    A CUDA run logs device tensors (losses, gradient norms) next to CPU ones (measures on the CPU copies of the
    evaluation features), and ``torch.stack`` refuses to mix devices.
    """
    devices = {t.device for t in scalars}
    if len(devices) == 1:
        return torch.stack(scalars).cpu().tolist()
    out: list[float] = [0.0] * len(scalars)
    for device in devices:
        positions = [i for i, t in enumerate(scalars) if t.device == device]
        for i, v in zip(positions, torch.stack([scalars[i] for i in positions]).cpu().tolist(), strict=True):
            out[i] = v
    return out


class MetricLogger:
    """Collects ``(step, epoch, wall_time, key, value)`` rows and events; flushes them in batches."""

    def __init__(self, store: MetricSink, run_id: str, flush_interval: float = 0.5) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_interval = flush_interval
        self.step = 0
        self.epoch = 0.0
        self._rows: list[tuple[int, float, float, str, Any]] = []
        self._events: list[tuple[int, float, float, str, dict]] = []
        self._artifacts: list[tuple[int | None, str, str, dict | None]] = []
        self._thread_artifacts: deque = deque()  # appended by writer threads, drained by flush
        self._known: set[str] = set()
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.watch = "train/loss"  # the first non-finite value of this key is kept in ``nonfinite``
        self.nonfinite: tuple[int, float] | None = None

    def check_key(self, key: str) -> None:
        """Raise ValueError for a key that is not lowercase snake_case segments joined by '/'."""
        if key not in self._known:
            if not KEY_RE.match(key):
                raise ValueError(f"Malformed metric key {key!r}: use lowercase snake_case segments joined by '/'.")
            self._known.add(key)

    def log(self, key: str, value: Any, step: int | None = None) -> None:
        """Record one value at the current (or given) step."""
        self.check_key(key)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            value = value.detach()
        self._rows.append((self.step if step is None else step, self.epoch, time.time(), key, value))

    def log_dict(self, values: dict[str, Any], step: int | None = None) -> None:
        """Record several values at once."""
        for k, v in values.items():
            self.log(k, v, step)

    def event(self, kind: str, payload: dict | None = None) -> None:
        """Record a timeline event (e.g. ``reinit``, ``fork``, ``stop``)."""
        self._events.append((self.step, self.epoch, time.time(), kind, dict(payload or {})))

    def artifact(self, epoch: int | None, kind: str, path: str, meta: dict | None = None) -> None:
        """Record a file of the run (path relative to the run folder); written with the next flush."""
        self._artifacts.append((epoch, kind, str(path), meta))

    def artifact_from_thread(self, epoch: int | None, kind: str, path: str, meta: dict | None = None) -> None:
        """:meth:`artifact` for another thread (a background writer): recorded with the next flush."""
        self._thread_artifacts.append((epoch, kind, str(path), meta))

    def pending(self, keys: set[str] | None = None) -> dict[str, Any]:
        """The last buffered (not yet flushed) value of each key, or of ``keys`` only; values may be tensors."""
        return {k: v for _, _, _, k, v in self._rows if keys is None or k in keys}

    def due(self, ahead: float = 0.0) -> bool:
        """Whether ``flush_interval`` has passed since the last flush, or will have within ``ahead`` seconds."""
        return time.monotonic() - self._last_flush + ahead >= self.flush_interval

    def flush(self, heartbeat: dict[str, Any] | None = None) -> int:
        """Write buffered rows, events and artifacts (and a heartbeat with ``heartbeat``'s fields) in one transaction.

        Returns the number of metric rows written.
        """
        while self._thread_artifacts:
            self._artifacts.append(self._thread_artifacts.popleft())
        rows, self._rows = self._rows, []
        events, self._events = self._events, []
        artifacts, self._artifacts = self._artifacts, []
        self._last_flush = time.monotonic()
        out = []
        if rows:
            tensor_pos = [i for i, r in enumerate(rows) if isinstance(r[4], torch.Tensor)]
            values = [r[4] for r in rows]
            if tensor_pos:
                scalars = [values[i] for i in tensor_pos]
                if any(t.dtype != torch.float32 or t.dim() for t in scalars):  # else no per-row conversion ops
                    scalars = [t.float().reshape(()) for t in scalars]
                stacked = _to_floats(scalars)
                for i, v in zip(tensor_pos, stacked, strict=True):
                    values[i] = v
            out = [(s, e, w, k, float(v)) for (s, e, w, k, _), v in zip(rows, values, strict=True)]
            if self.nonfinite is None:
                bad = next(((s, v) for s, _, _, k, v in out if k == self.watch and not math.isfinite(v)), None)
                self.nonfinite = bad
        if out or events or artifacts or heartbeat is not None:
            self.store.log_batch(self.run_id, out, events=events, artifacts=artifacts, heartbeat=heartbeat)
            self.rows_written += len(out)
        return len(out)
