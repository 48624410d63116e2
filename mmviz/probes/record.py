"""The epoch recorder: one record of what the analysis probes measured at an epoch end, analysed inline or by a
separate analysis process that follows the store (DESIGN.md §2, measuring vs analysing).

In the trainer, each due :class:`~mmviz.probes.base.AnalysisProbe` adds its arrays (val features and labels, a
fixed train subset's features, masked coalition logits); :meth:`EpochRecorder.end_epoch` then either analyses
them at once (``inline``: runs without a store or run folder, tests, benchmarks) or writes the record file and
its ``record`` artifact and lets the analysis process (``python -m mmviz.analysis.follower``) compute the rows:
training goes on meanwhile. The process is started with the first record, restarted if it dies (it catches up
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
from mmviz.probes.base import AnalysisProbe


def analyse_record(probes: list[AnalysisProbe], meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple]:
    """The rows ``(key, value)`` of one record: each probe the record names, in the probes' order."""
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


class AnalysisSupervisor:
    """Starts the analysis process for one run, restarts it when it dies, and waits for it at the end."""

    def __init__(self, workspace: Path, run_id: str, run_dir: Path) -> None:
        self.workspace, self.run_id, self.run_dir = Path(workspace), run_id, Path(run_dir)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        """The analysis process's argv (no shell)."""
        return [sys.executable, "-m", "mmviz.analysis.follower", str(self.workspace), self.run_id]

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
    """Collects one epoch's measured arrays from the analysis probes and has them analysed: inline at once (each
    probe's rows at its turn, as before the split) or, with a supervisor, by the analysis process."""

    def __init__(self, ctx: Any, supervisor: AnalysisSupervisor | None = None) -> None:
        self.ctx = ctx
        self.supervisor = supervisor
        self.arrays: dict[str, Any] = {}
        self.due: list[str] = []
        self.meta: dict[str, Any] | None = None
        self._writer: threading.Thread | None = None
        self._pending_artifact: tuple | None = None
        self.background = ctx.device.type != "cpu"

    @property
    def inline(self) -> bool:
        """Whether records are analysed in the trainer (no analysis process)."""
        return self.supervisor is None

    def add(self, probe: AnalysisProbe, epoch: int, info: Any, arrays: dict[str, Any]) -> None:
        """Called by a due analysis probe with what it measured (an array another probe gave is kept once)."""
        if self.meta is None or self.meta["epoch"] != epoch:
            self.arrays, self.due = {}, []
            self.meta = {
                "epoch": int(epoch),
                "step": int(info.step),
                "total_epochs": int(info.total_epochs),
                "modalities": list(self.ctx.modalities),
                "num_classes": int(self.ctx.num_classes),
                "probes": self.due,
            }
        self.due.append(probe.name)
        for name, value in arrays.items():
            self.arrays.setdefault(name, value)
        if self.inline:
            hosted = {k: _host(v) for k, v in self.arrays.items()}
            for key, value in probe.analyse(self.meta, hosted):
                self.ctx.log(key, value)

    def measured(self, epoch: int, probe: str) -> bool:
        """Whether ``probe`` measured at ``epoch`` (a probe that follows another's schedule asks)."""
        return self.meta is not None and self.meta["epoch"] == epoch and probe in self.due

    def end_epoch(self, epoch: int) -> None:
        """Called after the epoch probes: hand the record to the analysis process (nothing to do inline)."""
        meta, arrays = self.meta, self.arrays
        self.meta, self.arrays, self.due = None, {}, []
        if self.inline or meta is None or meta["epoch"] != epoch:
            return
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
        self.ctx.extra["artifact"](epoch, RECORD_KIND, relative, {"step": meta["step"], "probes": meta["probes"]})
        self._pending_artifact = None

    def close(self, flush) -> None:
        """At the end of training: record the last record (``flush``: the logger's flush, so the analysis process
        sees it) and wait until the analysis process has analysed every record."""
        self._join_writer()
        if self.supervisor is not None:
            flush()
            self.supervisor.finish()
