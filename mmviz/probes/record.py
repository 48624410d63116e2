"""The epoch recorder: one record of what the analysis probes measured at an epoch end, analysed inline or by a
separate analysis process that follows the store (DESIGN.md §2, measuring vs analysing).

In the trainer, each due :class:`~mmviz.probes.base.AnalysisProbe` adds its arrays (val features and labels, a
fixed train subset's features, masked coalition logits) to the epoch's :class:`EpochRecord`. Inline (runs without
an analysis process: direct ``fit()`` calls, your own loop, tests) each probe analyses it at its turn; otherwise
:meth:`EpochRecorder.end_epoch` writes the record file and its ``record`` artifact and the analysis process
(``python -m mmviz.analysis.follower``) computes the rows: training goes on meanwhile. The process is started with the first record, restarted if it dies (it catches up
from the stored records) and waited for at the end of the run, so every epoch's diagnostics are in the store
when the run finishes. On a GPU the record is copied to the host and written by a background thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmviz.measures.record import DONE_FILE, RECORD_DIR, RECORD_KIND, record_path, save_record


def analyse_record(probes: list, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple]:
    """The rows ``(key, value)`` of one record: each analysis probe the record names, in the probes' order."""
    due = set(meta.get("probes", ()))
    rows: list[tuple] = []
    for p in sorted(probes, key=lambda p: (p.order, p.name)):
        if p.name in due:
            rows.extend(p.analyse(meta, arrays))
    return rows


def _host(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class EpochRecord:
    """One epoch's measured arrays, shared by the analysis probes through ``ctx.probe_cache``."""

    def __init__(self, ctx: Any, epoch: int, info: Any) -> None:
        self.meta: dict[str, Any] = {
            "epoch": int(epoch),
            "step": int(info.step),
            "total_epochs": int(info.total_epochs),
            "modalities": list(ctx.modalities),
            "num_classes": int(ctx.num_classes),
            "probes": [],
        }
        self.arrays: dict[str, Any] = {}

    def add(self, probe: str, arrays: dict[str, Any]) -> None:
        """A due probe's arrays (an array another probe already gave is kept once)."""
        self.meta["probes"].append(probe)
        for name, value in arrays.items():
            self.arrays.setdefault(name, value)

    def measured(self, probe: str) -> bool:
        """Whether ``probe`` measured this epoch (a probe that follows another's schedule asks)."""
        return probe in self.meta["probes"]

    def hosted(self) -> dict[str, np.ndarray]:
        """The arrays as host numpy arrays (copies from the device where needed)."""
        return {k: _host(v) for k, v in self.arrays.items()}


def epoch_record(ctx: Any, epoch: int, info: Any) -> EpochRecord:
    """This epoch's record in the probe cache (created by the first analysis probe that is due)."""
    tag = (info.epoch, info.step)
    cache = ctx.probe_cache.current(tag)
    record = cache.get("record")
    if record is None or record.meta["epoch"] != epoch:
        record = cache["record"] = EpochRecord(ctx, epoch, info)
    return record


class AnalysisSupervisor:
    """Starts the analysis process for one run, restarts it when it dies, and waits for it at the end."""

    def __init__(self, workspace: str | Path, run_id: str, run_dir: Path) -> None:
        # the store's workspace as given: a folder, or a postgresql:// URL (a Path would mangle the URL)
        self.workspace, self.run_id, self.run_dir = str(workspace), run_id, Path(run_dir)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        """The analysis process's argv (no shell)."""
        return [sys.executable, "-m", "mmviz.analysis.follower", self.workspace, self.run_id]

    def ensure_running(self) -> None:
        """Start the process, or start it again when it has exited before the run ended."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            self.restarts += 1
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)

    def finish(self, timeout: float = 600.0) -> None:
        """Tell the process that no more records come, give it normal CPU priority (it ran on idle time while
        training) and wait until it has analysed them all and exited (restarting it if it dies on the way)."""
        (self.run_dir / RECORD_DIR).mkdir(parents=True, exist_ok=True)
        (self.run_dir / RECORD_DIR / DONE_FILE).touch()
        if self.proc is None:  # no record was ever written
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code == 0:
                return
            if code is not None:  # died: restart, it catches up from the stored records
                self.ensure_running()
            try:  # training is over: the analysis needs no longer give way (may be refused without privileges)
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, 0)
            except (AttributeError, OSError):
                pass
            time.sleep(0.05)
        self.proc.kill()


class EpochRecorder:
    """Hands each epoch's record to the analysis process: written to ``records/`` (on a GPU by a background thread
    that copies the arrays to the host), recorded as a ``record`` artifact, the process started or restarted."""

    def __init__(self, ctx: Any, supervisor: AnalysisSupervisor) -> None:
        self.ctx = ctx
        self.supervisor = supervisor
        self._writer: threading.Thread | None = None
        self._pending_artifact: tuple | None = None
        self.background = ctx.device.type != "cpu"

    def end_epoch(self, epoch: int, info: Any) -> None:
        """Called after the epoch probes: write the epoch's record, if an analysis probe measured."""
        record = self.ctx.probe_cache.current((info.epoch, info.step)).pop("record", None)
        if record is None or record.meta["epoch"] != epoch or not record.meta["probes"]:
            return
        meta, arrays = record.meta, record.arrays
        path = record_path(self.ctx.run_dir, epoch)
        relative = path.relative_to(self.ctx.run_dir).as_posix()
        self._join_writer()

        def write() -> None:
            save_record(path, meta, {k: _host(v) for k, v in arrays.items()})

        self._pending_artifact = (epoch, relative, meta)
        if self.background:  # copy to the host and write off the training thread
            self._writer = threading.Thread(target=write, name="mmviz-record", daemon=True)
            self._writer.start()
        else:
            write()
            self._flush_artifact()
        self.supervisor.ensure_running()

    def _join_writer(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
            self._flush_artifact()

    def _flush_artifact(self) -> None:
        if self._pending_artifact is None:
            return
        epoch, relative, meta = self._pending_artifact
        self.ctx.artifact(epoch, RECORD_KIND, relative, {"step": meta["step"], "probes": meta["probes"]})
        self._pending_artifact = None

    def close(self, flush) -> None:
        """At the end of training: record the last record (``flush``: the logger's flush, so the analysis process
        sees it) and wait until the analysis process has analysed every record."""
        self._join_writer()
        flush()
        self.supervisor.finish()
