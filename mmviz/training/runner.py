"""The trainer process body: run one stored run to a final status, with heartbeat and signal handling.

Status transitions: ``queued`` -> ``running`` -> ``finished`` | ``stopped`` (stop request or SIGTERM:
the step is finished, logs flushed, a checkpoint written) | ``diverged`` (NaN/inf loss, with the step)
| ``failed`` (any exception, with its message; the traceback goes to the run's log). The checks that need the
data and the machine run while the run is still ``queued``: one that fails ends it ``failed`` with the check's
one-sentence message as its error (the dashboard's launch form shows it).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from mmviz.errors import MmvizError
from mmviz.training.build import check_run_config, resolve_device
from mmviz.training.checkpoint import checkpoint_path
from mmviz.training.config import RunConfig
from mmviz.training.context import StepInfo
from mmviz.training.loop import Diverged, Resume, StopTraining, fit


class _Heartbeat(threading.Thread):
    """Writes a heartbeat every ``interval`` s so long epoch-end work is not mistaken for a lost run."""

    def __init__(self, store: Any, run_id: str, interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="mmviz-heartbeat")
        self.store, self.run_id, self.interval = store, run_id, interval
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
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


def run_training(store: Any, run_id: str, *, progress: bool = False) -> str:
    """Train the stored run ``run_id`` in this process; returns its final status."""
    run = store.get_run(run_id)
    stop_flag = threading.Event()

    def on_sigterm(signum, frame):  # noqa: ARG001
        stop_flag.set()

    previous = (
        signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    )
    store.update_run(run_id, pid=os.getpid(), host=socket.gethostname())
    beat = _Heartbeat(store, run_id)
    beat.start()
    status = "failed"
    try:
        cfg = RunConfig.from_dict(run["config"])
        store.update_run(run_id, device=cfg.train.device)
        resolve_device(cfg.train.device)
        data = check_run_config(cfg)  # the checks that need the data, before the run counts as running
        store.set_status(run_id, "running", pid=os.getpid())
        resume = None
        if run.get("parent_run_id"):
            parent_dir = store.run_dir(run["parent_run_id"])
            parent = store.get_run(run["parent_run_id"])
            resume = Resume(
                checkpoint_path(parent_dir, int(run["fork_epoch"])),
                parent_dir / "init.pt",
                same_method=parent["config"]["method"] == cfg.method,
            )
        bar = _Progress(cfg.train.epochs) if progress and sys.stderr.isatty() else None
        result = fit(
            cfg,
            store,
            run_id,
            store.run_dir(run_id),
            resume=resume,
            should_stop=stop_flag.is_set,
            progress=bar,
            data=data,
        )
        if bar is not None:
            sys.stderr.write("\n")
        store.update_run(
            run_id,
            epochs_done=result.epochs_done,
            best_val_acc=result.best_val_acc,
            best_epoch=result.best_epoch,
            summary=result.test,
        )
        status = "finished"
        store.set_status(run_id, status)
    except StopTraining:
        status = "stopped"
        store.set_status(run_id, status)
    except Diverged as exc:
        status = "diverged"
        store.set_status(run_id, status, error=str(exc))
    except KeyboardInterrupt:
        status = "stopped"
        store.set_status(run_id, status, error="Interrupted from the keyboard.")
    except MmvizError as exc:  # a user's error: its one sentence is the whole message
        status = "failed"
        store.set_status(run_id, status, error=str(exc))
        traceback.print_exc()
    except BaseException as exc:  # noqa: BLE001 - record every failure, then re-raise for the log
        status = "failed"
        msg = str(exc) or type(exc).__name__
        store.set_status(run_id, status, error=f"{type(exc).__name__}: {msg}")
        traceback.print_exc()
    finally:
        beat.done.set()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status
