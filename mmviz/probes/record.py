"""The epoch recorder: one record of what the analysis probes measured at an epoch end, analysed inline or by a
separate analysis process that follows the store (DESIGN.md §2, measuring vs analysing).

In the trainer, each due :class:`~mmviz.probes.base.AnalysisProbe` adds its arrays (val features and labels, a
fixed train subset's features, masked coalition logits) to the epoch's :class:`EpochRecord`. Inline (runs without
an analysis process: direct ``fit()`` calls, your own loop, tests) each probe analyses it at its turn; otherwise
:meth:`EpochRecorder.end_epoch` writes the record file and its ``record`` artifact and the analysis process
(:func:`mmviz.analysis.follower.follow`) computes the rows: training goes on meanwhile. The process is started with
training: forked from the trainer where that is safe (it then needs no imports of its own), else started as
``python -m mmviz.analysis.follower`` (its imports overlap the first epochs); restarted as the latter if it dies (it
catches up from the stored records) and waited for at the end of the run, so every epoch's diagnostics are in the store
when the run finishes. On a GPU the record is copied to the host with non-blocking copies and written by a background
thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmviz.measures.features import HostCopy
from mmviz.measures.record import DONE_FILE, RECORD_DIR, RECORD_KIND, record_path, save_record

Artifact = tuple[int, str, str, dict]  # (epoch, kind, path relative to the run folder, meta)


def _due(probes: list, meta: dict[str, Any]) -> list:
    due = set(meta.get("probes", ()))
    return [p for p in sorted(probes, key=lambda p: (p.order, p.name)) if p.name in due]


def analyse_record(probes: list, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple]:
    """The rows ``(key, value)`` of one record: each analysis probe the record names, in the probes' order."""
    return [row for p in _due(probes, meta) for row in p.analyse(meta, arrays)]


def record_files(probes: list, meta: dict[str, Any], arrays: dict[str, Any], run_dir: Path) -> list[Artifact]:
    """The files the record's probes make from it (written under ``run_dir``), as artifacts to record."""
    return [artifact for p in _due(probes, meta) for artifact in p.write_files(meta, arrays, run_dir)]


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


REAPER_NAME = "mmviz-analysis-reap"  # the thread that collects a forked analysis process's exit status
FORKED_NAME = "mmviz-analysis"  # what top and ps show for a forked analysis process (its command line: name and run)


def join_reapers(timeout: float = 30.0) -> None:
    """Wait until every forked analysis process that has signalled the end of its work is reaped (its CPU time then
    counts in ``RUSAGE_CHILDREN``): for benchmarks, which measure each run's analysis CPU or start the next run on
    a quiet machine."""
    for thread in threading.enumerate():
        if thread.name == REAPER_NAME:
            thread.join(timeout)


def name_process(name: str, command: str | None = None) -> None:
    """Set this process's name as top, ``ps -o comm`` and ``pgrep`` show it (Linux; at most 15 bytes), and with
    ``command`` its command line as ``ps aux``, ``pgrep -f`` and ``/proc/PID/cmdline`` show it: a forked process
    keeps its parent's, so a forked analysis process would show as a second copy of the trainer's command."""
    try:
        with open("/proc/self/comm", "w") as fh:
            fh.write(name[:15])
    except OSError:
        pass
    if command is not None:
        _set_command_line(command)


def _set_command_line(text: str) -> None:
    """Overwrite this process's argument area (the C ``argv`` strings, which ``/proc/self/cmdline`` reads; Python
    copied them into ``sys.argv`` at start-up and reads them no more) with ``text``, cut to the area's length and
    ended by a NUL. Its bounds are fields 48-49 of ``/proc/self/stat`` (Linux 3.5 and newer); nothing is written
    elsewhere or when they are not shown."""
    import ctypes

    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": field 3 (state) first
        start, end = int(fields[48 - 3]), int(fields[49 - 3])
    except (OSError, ValueError, IndexError):
        return
    if start <= 0 or end <= start:
        return
    data = text.encode("utf-8", "replace")[: end - start - 1]
    ctypes.memset(start, 0, end - start)
    ctypes.memmove(start, data, len(data))


class ForkedProcess:
    """A child made with ``os.fork``, with the part of :class:`subprocess.Popen` the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the child has ended (reaped), else ``None``."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it has ended, how is unknown
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the child has ended; return its exit code."""
        if timeout is None and self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped by a concurrent poll, which set the code
                pass
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class AnalysisSupervisor:
    """Starts the analysis process for one run, restarts it when it dies, and waits for it at the end.

    The first start forks the trainer when that is safe (Linux, called on the main thread, every other
    thread of the process declared ``fork_safe`` (the run's heartbeat), CUDA not initialised): the child has torch
    and the probes imported already, so it does not spend ~2 s of CPU on imports, as long as a whole demo run
    (bench/overhead.py); it computes with one torch thread (after a fork GNU OpenMP cannot start its thread pool
    again). ``fit`` starts it first, before the data and the model, so its own start-up overlaps the trainer's and a
    GPU run forks too (its model is not on the device yet). Otherwise, and for every restart,
    ``python -m mmviz.analysis.follower`` is started as a new program. :meth:`abandon` ends it when the trainer
    fails before its training ended (no record will come).
    """

    def __init__(self, workspace: str | Path, run_id: str, run_dir: Path, *, fork: bool = True) -> None:
        # the store's workspace as given: a folder, or a postgresql:// URL (a Path would mangle the URL)
        self.workspace, self.run_id, self.run_dir = str(workspace), run_id, Path(run_dir)
        self.proc: subprocess.Popen | ForkedProcess | None = None
        self.restarts = 0
        self.fork = fork
        self._wake: int | None = None  # the write end of the forked child's wake-up pipe
        self._done: int | None = None  # the read end of the pipe the forked child signals "all analysed" on

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The analysis process's argv (no shell), and what its environment needs on top (a workspace URL, which
        may carry a password, goes there rather than on the command line: :func:`mmviz.store.child_workspace`)."""
        from mmviz.analysis.follower import follower_command

        return follower_command(self.workspace, self.run_id, parent_pid=os.getpid())

    def can_fork(self) -> bool:
        """Whether forking the trainer is safe now (see the class docstring)."""
        return (
            self.fork
            and self.proc is None
            and sys.platform.startswith("linux")  # macOS: forking a process with system frameworks loaded can crash
            and threading.current_thread() is threading.main_thread()
            and all(
                getattr(t, "fork_safe", False) for t in threading.enumerate() if t is not threading.current_thread()
            )
            and not (torch.cuda.is_available() and torch.cuda.is_initialized())
        )

    def ensure_running(self) -> None:
        """Start the process, or start it again when it has exited before the run ended."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            self.restarts += 1
        if self.can_fork():
            self.proc = self._start_forked()
            return
        # idle OpenMP threads sleep instead of spinning on the cores the trainer needs (the arithmetic is unchanged)
        argv, extra = self.command()
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **extra}
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)

    def _start_forked(self) -> ForkedProcess:
        read, write = os.pipe()
        os.set_blocking(write, False)
        done_read, done_write = os.pipe()
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):  # text buffered now would be written twice, by both processes
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        from mmviz.store.connection import closed_for_fork

        with closed_for_fork():  # the child must not inherit SQLite's lock records of the trainer's store
            pid = os.fork()
        if pid == 0:  # the child: never returns into the trainer's code
            code = 1
            try:
                os.close(write)
                os.close(done_read)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the trainer's stop handler
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the trainer, which then waits for this
                name_process(FORKED_NAME, f"{FORKED_NAME} {self.run_id}")
                from mmviz.analysis.follower import follow

                follow(self.workspace, self.run_id, parent_pid=parent, wake=read, threads=1, done=done_write)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (AttributeError, OSError, ValueError):
                        pass
                os._exit(code)
        os.close(read)
        os.close(done_write)
        self.close_pipe()  # those of a forked process that died (a restart is a program: no pipes)
        self._wake, self._done = write, done_read
        return ForkedProcess(pid)

    def notify(self) -> None:
        """Wake a forked analysis process up at once (a record was written, the run is done) instead of at its next
        poll."""
        if self._wake is None:
            return
        try:
            os.write(self._wake, b"!")
        except (BlockingIOError, BrokenPipeError):  # a full pipe wakes it anyway; a dead child is restarted
            pass

    def close_pipe(self) -> None:
        """Close the trainer's ends of the forked child's pipes (the child then polls)."""
        if self._wake is not None:
            os.close(self._wake)
            self._wake = None
        if self._done is not None:
            os.close(self._done)
            self._done = None

    def _signalled_done(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the forked child's "every record analysed" byte. At end of file (the child
        ended without it: killed, or failed) the pipe is closed and the exit code tells the rest."""
        import select

        readable, _, _ = select.select([self._done], [], [], timeout)
        if not readable:
            return False
        if os.read(self._done, 1):
            return True
        os.close(self._done)
        self._done = None
        return False

    def _reap_later(self) -> None:
        """Collect the exit status of a child that has signalled the end of its work on a thread (no zombie is
        left), so that the run does not wait for a large process's teardown (~10-20 ms here)."""
        proc = self.proc
        if not isinstance(proc, ForkedProcess) or proc.poll() is not None:
            return
        reaper = threading.Thread(target=proc.wait, name=REAPER_NAME, daemon=True)
        reaper.fork_safe = True  # type: ignore[attr-defined]  # it only waits in waitpid: a fork copies nothing of it
        reaper.start()

    def abandon(self) -> None:
        """End the process at once when the trainer fails before its training ended, e.g. in its set-up, where no
        record will come (a process already done with every record has exited; this then does nothing)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.close_pipe()

    def finish(self, timeout: float = 600.0) -> None:
        """Tell the process that no more records come, give it normal CPU priority (it ran on idle time while
        training) and wait until it has analysed them all and exited (restarting it if it dies on the way)."""
        (self.run_dir / RECORD_DIR).mkdir(parents=True, exist_ok=True)
        (self.run_dir / RECORD_DIR / DONE_FILE).touch()
        if self.proc is None:  # no record was ever written
            return
        self.notify()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._done is not None and self._signalled_done(0.05):  # a forked child's work is done
                    self._reap_later()
                    return
                code = self.proc.poll()
                if code == 0:
                    return
                if code is not None:  # died: restart, it catches up from the stored records
                    self.ensure_running()
                try:  # training is over: the analysis needs no longer give way (may be refused without privileges)
                    os.setpriority(os.PRIO_PROCESS, self.proc.pid, 0)
                except (AttributeError, OSError):
                    pass
                if self._done is None:
                    time.sleep(0.01)
            self.proc.kill()
        finally:
            self.close_pipe()


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
        # on CUDA non-blocking copies into pinned memory, waited for on the writer thread (CPU arrays as they are)
        hosted = HostCopy(arrays, clone=False)

        def write() -> None:
            save_record(path, meta, {k: _host(v) for k, v in hosted.result().items()})
            self.supervisor.notify()  # a forked analysis process analyses the file before the store lists it

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
