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
        """Tell the process that no more records come and wait until it has analysed them all and exited
        (restarting it if it dies on the way)."""
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
            time.sleep(0.05)
        self.proc.kill()


class EpochRecorder:
    """Collects one epoch's measured arrays from the analysis probes and has them analysed (inline or by the
    analysis process)."""

    def __init__(self, ctx: Any, probes: list, supervisor: AnalysisSupervisor | None = None) -> None:
        self.ctx = ctx
        self.probes = [p for p in probes if isinstance(p, AnalysisProbe)]
        self.supervisor = supervisor
        self.arrays: dict[str, Any] = {}
        self.due: list[str] = []
        self._writer: threading.Thread | None = None
        self.background = ctx.device.type != "cpu"

    @property
    def inline(self) -> bool:
        """Whether records are analysed in the trainer (no analysis process)."""
        return self.supervisor is None

    def add(self, probe: str, arrays: dict[str, Any]) -> None:
        """Called by a due analysis probe: its arrays (an array another probe already gave is kept once)."""
        self.due.append(probe)
        for name, value in arrays.items():
            self.arrays.setdefault(name, value)

    def end_epoch(self, epoch: int, step: int, total_epochs: int) -> None:
        """Called after the epoch probes: analyse the record now (inline) or hand it to the analysis process."""
        if not self.due:
            return
        meta = {
            "epoch": int(epoch),
            "step": int(step),
            "total_epochs": int(total_epochs),
            "modalities": list(self.ctx.modalities),
            "num_classes": int(self.ctx.num_classes),
            "probes": list(self.due),
        }
        arrays, self.arrays, self.due = self.arrays, {}, []
        if self.inline:
            for key, value in analyse_record(self.probes, meta, {k: _host(v) for k, v in arrays.items()}):
                self.ctx.log(key, value)
            return
        path = record_path(self.ctx.run_dir, epoch)
        relative = path.relative_to(self.ctx.run_dir).as_posix()
        self._join_writer()

        def write() -> None:
            save_record(path, meta, {k: _host(v) for k, v in arrays.items()})

        if self.background:  # copy to the host and write off the training thread
            self._writer = threading.Thread(target=write, name="mmviz-record", daemon=True)
            self._writer.start()
        else:
            write()
        self._pending_artifact = (epoch, relative, meta)
        self._flush_artifact()
        self.supervisor.ensure_running()

    def _join_writer(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
            self._flush_artifact()

    def _flush_artifact(self) -> None:
        pending = getattr(self, "_pending_artifact", None)
        if pending is None or self._writer is not None:
            return
        epoch, relative, meta = pending
        self.ctx.extra["artifact"](epoch, RECORD_KIND, relative, {"step": meta["step"], "probes": meta["probes"]})
        self._pending_artifact = None

    def close(self, flush) -> None:
        """At the end of training: write the last record's artifact (``flush``: the logger's flush, so the
        analysis process sees it) and wait for the analysis process to analyse every record."""
        self._join_writer()
        if self.supervisor is not None:
            flush()
            self.supervisor.finish()
