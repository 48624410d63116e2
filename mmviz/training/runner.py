"""The trainer process body: run one stored run to a final status, with heartbeat and signal handling.

Status transitions: ``queued`` -> ``running`` -> ``finished`` | ``stopped`` (stop request or SIGTERM:
the step is finished, logs flushed, a checkpoint written) | ``diverged`` (NaN/inf loss, with the step)
| ``failed`` (any exception, with its message; the traceback goes to the run's log). The checks that need the
data and the machine run while the run is still ``queued``: one that fails ends it ``failed`` with the check's
one-sentence message as its error (the dashboard's launch form shows it).

A full or failing disk must still end the run ``failed`` with its reason: the trainer keeps a small reserve
file next to the run's artifacts (:data:`RESERVE_BYTES`) and frees it to make room for the final status write,
which it retries; such a failure is reported in one sentence, without a traceback (it is not a bug). Only a
workspace that cannot be written at all (read-only) leaves the run without a recorded status (shown ``lost``).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path

from mmviz.errors import MmvizError
from mmviz.launcher import fork_checkpoint
from mmviz.store.contract import RunStoreProtocol, RunWriter
from mmviz.training.build import check_run_config, resolve_device
from mmviz.training.config import RunConfig
from mmviz.training.context import StepInfo
from mmviz.training.loop import Diverged, Resume, StopTraining, fit

# held by a heartbeat while it writes, and by a fork (os.register_at_fork below): a process forked from the trainer
# (the analysis process, mmviz.probes.record) then never starts with a store write cut in half by the fork
_WRITING = threading.Lock()
os.register_at_fork(before=_WRITING.acquire, after_in_parent=_WRITING.release, after_in_child=_WRITING.release)


class _Heartbeat(threading.Thread):
    """Writes a heartbeat every ``interval`` s so long epoch-end work is not mistaken for a lost run.

    ``fork_safe``: the trainer may fork while it runs (its writes and a fork exclude each other)."""

    fork_safe = True

    def __init__(self, store: RunWriter, run_id: str, interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="mmviz-heartbeat")
        self.store, self.run_id, self.interval = store, run_id, interval
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                with _WRITING:
                    self.store.heartbeat(self.run_id)
            except Exception:  # noqa: BLE001 - a missed heartbeat must never kill training
                pass


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.val = float("nan")
        self.last = 0.0

    def __call__(self, info: StepInfo, values: dict) -> None:
        if "val_acc" in values:
            self.val = values["val_acc"]
        now = time.monotonic()
        if now - self.last < 0.2 and "epoch_done" not in values:
            return
        self.last = now
        done = info.progress if "epoch_done" not in values else values["epoch_done"] / self.epochs
        bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
        loss = values.get("loss")
        loss_txt = f" loss {float(loss):.3f}" if loss is not None else ""
        sys.stderr.write(
            f"\repoch {info.epoch}/{self.epochs} [{bar}] step {info.step}{loss_txt} val acc {self.val:.3f}  "
        )
        sys.stderr.flush()


RESERVE_BYTES = 1 << 20  # freed when the disk is full so that the final status can still be written
RESERVE_NAME = ".space-reserve"
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
_DISK_HINT = "free space or fix the disk, then fork from the last checkpoint."
_DISK_SQLITE = ("database or disk is full", "disk i/o error", "readonly database", "read-only")


def disk_failure(exc: BaseException) -> str | None:
    """One sentence for an error caused by a full, read-only or failing disk; None for any other error."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        what = {errno.EROFS: "is read-only", errno.EIO: "reported an I/O error"}.get(exc.errno, "is full")
        where = f" (writing {str(exc.filename)!r})" if exc.filename else ""
        return f"The disk {what}{where}: {exc.strerror or exc}; {_DISK_HINT}"
    if isinstance(exc, sqlite3.OperationalError) and any(t in str(exc).lower() for t in _DISK_SQLITE):
        return f"The run store could not be written ({exc}); {_DISK_HINT}"
    return None


def _reserve(folder: Path) -> Path | None:
    """Take :data:`RESERVE_BYTES` of disk for the failure path; None when even that does not fit."""
    path = folder / RESERVE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            try:
                os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
            except (AttributeError, OSError):  # no fallocate on this file system: write the bytes
                fh.write(bytes(RESERVE_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
        return path
    except OSError:
        path.unlink(missing_ok=True)
        return None


def _record_status(
    store: RunStoreProtocol, run_id: str, status: str, reserve: Path | None, error: str | None = None
) -> bool:
    """Write the final status, freeing the reserve and retrying when the disk is full; False when it never went in."""
    for attempt in range(4):
        try:
            store.set_status(run_id, status, error=error)
            return True
        except (sqlite3.Error, OSError, MmvizError):
            if reserve is not None:
                reserve.unlink(missing_ok=True)
                reserve = None
            time.sleep(0.2 * attempt)
    return False


class _EpochLines:
    """One line per epoch on stderr (a log file, a scheduler, ``nohup``): loss, val and probe accuracies, imbalance."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.loss_sum, self.steps = 0.0, 0

    def __call__(self, info: StepInfo, values: dict) -> None:
        if "loss" in values:
            self.loss_sum = values["loss"].float() + self.loss_sum  # stays on the device: no per-step sync
            self.steps += 1
        if "epoch_done" not in values:
            return
        logged = values.get("logged") or {}
        parts = [f"epoch {values['epoch_done']}/{self.epochs}"]
        if self.steps:
            parts.append(f"loss {float(self.loss_sum) / self.steps:.4f}")
        parts.append(f"val acc {100 * values['val_acc']:.1f}%")
        probes = [(k.rsplit("/", 1)[1], v) for k, v in sorted(logged.items()) if k.startswith("val/acc_probe/")]
        if probes:
            parts.append("probe acc " + ", ".join(f"{m} {100 * float(v):.1f}%" for m, v in probes))
        if "imbalance/index" in logged:
            parts.append(f"imbalance {float(logged['imbalance/index']):.2f}")
        print("  ".join(parts), file=sys.stderr, flush=True)
        self.loss_sum, self.steps = 0.0, 0


def run_training(store: RunStoreProtocol, run_id: str, *, progress: bool = False) -> str:
    """Train the stored run ``run_id`` in this process; returns its final status.

    With ``progress``: a progress bar on stderr when stdout and stderr are terminals, else one line per epoch.
    """
    run = store.get_run(run_id)
    stop_flag = threading.Event()

    def on_sigterm(signum, frame):  # noqa: ARG001
        stop_flag.set()

    previous = (
        signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    )
    store.update_run(run_id, pid=os.getpid(), host=socket.gethostname())
    reserve = None  # made once the run is running (the status writes before it must find the space it would take)
    beat = _Heartbeat(store, run_id)
    beat.start()
    status, error, bar = "failed", None, None
    try:
        cfg = RunConfig.from_dict(run["config"])
        store.update_run(run_id, device=cfg.train.device)
        resolve_device(cfg.train.device)
        data = check_run_config(cfg)  # the checks that need the data, before the run counts as running
        store.set_status(run_id, "running", pid=os.getpid())
        reserve = _reserve(store.run_dir(run_id))
        resume = None
        if run.get("parent_run_id"):
            parent_dir = store.run_dir(run["parent_run_id"])
            parent = store.get_run(run["parent_run_id"])
            resume = Resume(
                fork_checkpoint(store, run),
                parent_dir / "init.pt",
                same_method=parent["config"]["method"] == cfg.method,
            )
        if progress:
            tty = sys.stderr.isatty() and sys.stdout.isatty()
            bar = _Progress(cfg.train.epochs) if tty else _EpochLines(cfg.train.epochs)
        result = fit(
            cfg,
            store,
            run_id,
            store.run_dir(run_id),
            resume=resume,
            should_stop=stop_flag.is_set,
            progress=bar,
            data=data,
            analysis_process=cfg.train.analysis == "process",
        )
        store.update_run(
            run_id,
            epochs_done=result.epochs_done,
            best_val_acc=result.best_val_acc if result.best_epoch else None,  # never -1 ("nothing evaluated")
            best_epoch=result.best_epoch,
            summary=result.test,
        )
        status = "finished"
    except StopTraining:
        status = "stopped"
    except Diverged as exc:
        status, error = "diverged", str(exc)
    except KeyboardInterrupt:
        status, error = "stopped", "Interrupted from the keyboard."
    except MmvizError as exc:  # a user's input or file found bad late (a damaged checkpoint): one sentence
        status, error = "failed", str(exc)
    except BaseException as exc:  # noqa: BLE001 - record every failure; a bug's traceback goes to the log
        status = "failed"
        error = disk_failure(exc)
        if error is None:
            error = f"{type(exc).__name__}: {str(exc) or type(exc).__name__}"
            traceback.print_exc()
    finally:
        if isinstance(bar, _Progress):
            sys.stderr.write("\n")
        beat.done.set()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not _record_status(store, run_id, status, reserve, error):
        print(
            f"mmviz: error: run {run_id} ended {status} but the run store {str(store.workspace)!r} could not record it"
            + (f" ({error})" if error else "")
            + "; it will show as 'lost'.",
            file=sys.stderr,
        )
    if reserve is not None:
        reserve.unlink(missing_ok=True)
    return status
