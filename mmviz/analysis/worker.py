"""The projection worker: a long-lived process that computes PCA / UMAP / AlignedUMAP views of snapshots.

UMAP's first fit in a process compiles numba code for many seconds, so it must never happen in the page script.
The dashboard starts one worker (:func:`ensure_worker`) that fits a tiny UMAP at start (warm-up) and then serves
requests. Results are cached on disk next to the snapshot they came from (``snapshots/proj/*.npz``), keyed by run,
view, epochs, method, parameters and the snapshot files' size and mtime, so a second request does no work.

Protocol (files, so that it survives a crash and needs no connection held by a page thread), in a private folder:

- ``queue/<key>.json``: a request with its priority; the worker claims the highest priority (then the oldest) by
  renaming it to ``running/<key>.json``, computes, writes the cache file atomically and removes the claim;
- ``errors/<key>.json``: the request raised (message and traceback), or the worker died while computing it;
- ``ready.json`` (written after the warm-up) and ``stats.json`` (how many results were computed / found cached).

The client (:class:`ProjectionWorker`) watches the process from a thread; when it dies it records a
:class:`CrashReport`, turns the request in flight into an error (so that it is not retried in a loop) and starts a
new worker, which picks up the rest of the queue.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from mmviz.analysis.projection_jobs import (
    CACHE_DIR,
    FAULTS_ENV,
    METHODS,
    ProjectionRequest,
    ProjectionResult,
    compute_projection,
    load_result,
    read_json,
    save_result,
    write_json,
)

__all__ = [
    "CACHE_DIR",
    "FAULTS_ENV",
    "METHODS",
    "WARM_ENV",
    "CrashReport",
    "ProjectionRequest",
    "ProjectionResult",
    "ProjectionWorker",
    "RequestState",
    "compute_projection",
    "ensure_worker",
    "load_result",
    "save_result",
    "serve",
    "warm_up",
]

WARM_ENV = "MMVIZ_PROJECTION_WARM"  # "0": no UMAP warm-up at start (tests that never run UMAP)
NICE = 5  # the worker's scheduling niceness increment: the page and the trainers come first
_POLL_S = 0.05


# ------------------------------------------------------------------------------------------- the worker process
def warm_up() -> float:
    """Fit a tiny UMAP so that numba compiles the code paths a real fit uses; return the seconds it took."""
    from mmviz.analysis.projection import UMAPProjection

    t0 = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(64, 8))
    UMAPProjection(n_neighbors=5, n_epochs=20).fit(x)
    return time.perf_counter() - t0


def _next_request(queue: Path) -> Path | None:
    best, best_rank = None, None
    for path in queue.glob("*.json"):
        item = read_json(path)
        if item is None:
            continue
        rank = (-int(item.get("priority", 0)), float(item.get("seq", 0.0)))
        if best_rank is None or rank < best_rank:
            best, best_rank = path, rank
    return best


def serve(root: Path, parent_pid: int | None = None, warm: bool = True) -> None:
    """The worker's main loop: warm up, then serve requests from ``root/queue`` until the parent process dies."""
    root = Path(root)
    with contextlib.suppress(OSError):  # background work: the page and the trainers come first (set, not added to
        os.setpriority(os.PRIO_PROCESS, 0, max(NICE, os.getpriority(os.PRIO_PROCESS, 0)))  # what the client set)
    queue, running, errors = root / "queue", root / "running", root / "errors"
    for folder in (queue, running, errors):
        folder.mkdir(parents=True, exist_ok=True)
    warm_s = warm_up() if warm else 0.0
    write_json(root / "ready.json", {"pid": os.getpid(), "warm_s": warm_s, "time": time.time()})
    stats = {"pid": os.getpid(), "computed": 0, "cached": 0, "failed": 0}
    while parent_pid is None or os.getppid() == parent_pid:
        path = _next_request(queue)
        if path is None:
            time.sleep(_POLL_S)
            continue
        claim = running / path.name
        try:
            os.replace(path, claim)
        except FileNotFoundError:  # withdrawn meanwhile
            continue
        item = read_json(claim)
        try:
            request = ProjectionRequest.from_json(item["request"])
            if request.cache_path.is_file():
                stats["cached"] += 1
            else:
                t0 = time.perf_counter()
                arrays = compute_projection(request)
                save_result(request, arrays, time.perf_counter() - t0)
                stats["computed"] += 1
        except Exception as exc:  # reported to the page; the worker carries on
            stats["failed"] += 1
            message = f"{type(exc).__name__}: {exc}"
            write_json(errors / claim.name, {"message": message, "traceback": traceback.format_exc()})
        finally:
            claim.unlink(missing_ok=True)
            write_json(root / "stats.json", stats)


# ------------------------------------------------------------------------------------------- the client
@dataclasses.dataclass(frozen=True)
class CrashReport:
    """The worker process died: when, its exit code, what it was computing, and the restart count after it."""

    time: float
    returncode: int | None
    request: str | None
    restarts: int
    log_tail: str

    def message(self) -> str:
        """One sentence for the page."""
        what = f" while computing {self.request}" if self.request else ""
        return (
            f"The projection worker crashed (exit code {self.returncode}){what} at "
            f"{time.strftime('%H:%M:%S', time.localtime(self.time))}; it was restarted (restart {self.restarts})."
        )


@dataclasses.dataclass(frozen=True)
class RequestState:
    """Where a request stands: ``'done'``, ``'queued'``, ``'running'``, ``'error'`` or ``'missing'``."""

    state: str
    message: str = ""


class ProjectionWorker:
    """Starts, watches and restarts one worker process, and talks to it through files in ``root``.

    Args:
        root: the protocol folder (a fresh temporary folder when ``None``; removed on :meth:`stop`).
        warm: whether the worker fits a tiny UMAP at start.
        env: extra environment variables for the worker process.
    """

    MAX_RESTARTS_PER_MINUTE = 5

    def __init__(self, root: str | Path | None = None, *, warm: bool = True, env: dict | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="mmviz-proj-") if root is None else root)
        self.warm = warm
        self.env = dict(env or {})
        self.crashes: list[CrashReport] = []
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._seq = 0
        for name in ("queue", "running", "errors"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.start()
        self._monitor = threading.Thread(target=self._watch, name="mmviz-projection-monitor", daemon=True)
        # a trainer in this process may fork its analysis process beside it (mmviz.probes.record): the monitor only
        # waits for this worker's process and writes its protocol files under this worker's lock, nothing a forked
        # analysis process uses, so a fork in the middle of it leaves the child no lock it needs
        self._monitor.fork_safe = True
        self._monitor.start()

    # ---- process lifetime
    def start(self) -> None:
        """Start the worker process (the previous one must be gone)."""
        repo = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "mmviz.analysis.worker", "--root", str(self.root), "--parent-pid",
                str(os.getpid())] + ([] if self.warm else ["--no-warm"])  # fmt: skip
        (self.root / "ready.json").unlink(missing_ok=True)
        with open(self.root / "worker.log", "ab") as log:
            self._proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)  # fmt: skip
        with contextlib.suppress(OSError):  # its imports (~1 s of CPU) already give way to the page and the trainers
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, NICE)
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return None if self._proc is None else self._proc.pid

    def ready(self) -> bool:
        """Whether the current worker process has finished its warm-up."""
        info = read_json(self.root / "ready.json")
        return bool(info) and info.get("pid") == self.pid and self.alive()

    def alive(self) -> bool:
        """Whether the worker process is running."""
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the worker is warm (tests and benchmarks); return whether it got there in time."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.check()
            if self.ready():
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict:
        """The worker's counters: ``computed``, ``cached`` (found in the cache), ``failed`` and its ``pid``."""
        return read_json(self.root / "stats.json") or {}

    def _log_tail(self) -> str:
        try:
            return (self.root / "worker.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return ""

    def check(self) -> CrashReport | None:
        """If the worker died, report the request it was computing as failed, restart it, and return the report."""
        with self._lock:
            if self._stopping.is_set() or self._proc is None or self._proc.poll() is None:
                return None
            returncode = self._proc.returncode
            lost = []
            for claim in (self.root / "running").glob("*.json"):
                item = read_json(claim) or {}
                described = ProjectionRequest.from_json(item["request"]).describe() if "request" in item else "?"
                lost.append(described)
                write_json(self.root / "errors" / claim.name, {
                    "message": f"The projection worker crashed (exit code {returncode}) while computing {described}.",
                    "traceback": "", "crash": True,
                })  # fmt: skip
                claim.unlink(missing_ok=True)
            recent = [c for c in self.crashes if c.time > time.time() - 60]
            self.restarts += 1
            report = CrashReport(time.time(), returncode, ", ".join(lost) or None, self.restarts, self._log_tail())
            if len(recent) >= self.MAX_RESTARTS_PER_MINUTE:  # crash loop: leave it dead; the page says so
                self._proc = None
            else:
                self.start()
            self.crashes.append(report)  # published once the restart is done: a reader never sees the dead process
            return report

    def _watch(self) -> None:
        while not self._stopping.wait(0.25):
            try:
                self.check()
            except Exception:  # the monitor must not die; the page calls check() too
                traceback.print_exc()

    def stop(self) -> None:
        """Stop the worker process (SIGTERM, then SIGKILL) and remove a temporary protocol folder."""
        self._stopping.set()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- requests
    def submit(self, request: ProjectionRequest, priority: int = 0, *, owner: str = "", retry: bool = False) -> str:
        """Queue ``request`` unless it is cached (``'done'``); return its state.

        A request that failed stays failed (``'error'``) until it is submitted with ``retry=True``; re-submitting a
        queued request updates its priority.
        """
        self.check()
        if request.cache_path.is_file():
            return "done"
        key = request.key
        error = self.root / "errors" / f"{key}.json"
        if error.is_file():
            if not retry:
                return "error"
            error.unlink(missing_ok=True)
        if (self.root / "running" / f"{key}.json").is_file():
            return "running"
        queued = read_json(self.root / "queue" / f"{key}.json")
        if queued is not None and queued.get("priority") == int(priority):
            return "queued"
        with self._lock:
            self._seq += 1
            seq = time.time() + self._seq * 1e-6
        item = {"priority": int(priority), "seq": seq, "owner": owner, "request": request.to_json()}
        write_json(self.root / "queue" / f"{key}.json", item)
        return "queued"

    def state(self, request: ProjectionRequest) -> RequestState:
        """Where ``request`` stands (see :class:`RequestState`); a failed one carries its message."""
        if request.cache_path.is_file():
            return RequestState("done")
        key = request.key
        error = read_json(self.root / "errors" / f"{key}.json")
        if error is not None:
            return RequestState("error", error.get("message", "failed"))
        if (self.root / "running" / f"{key}.json").is_file():
            return RequestState("running")
        if (self.root / "queue" / f"{key}.json").is_file():
            return RequestState("queued")
        return RequestState("missing")

    def prune(self, owner: str, keep: set[str]) -> int:
        """Withdraw ``owner``'s queued requests whose keys are not in ``keep``; return how many."""
        removed = 0
        for path in (self.root / "queue").glob("*.json"):
            item = read_json(path)
            if item is not None and item.get("owner") == owner and path.stem not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def pending(self) -> int:
        """Requests queued or running."""
        return sum(1 for d in ("queue", "running") for _ in (self.root / d).glob("*.json"))


_WORKER: ProjectionWorker | None = None
_WORKER_LOCK = threading.Lock()


def ensure_worker(*, warm: bool | None = None) -> ProjectionWorker:
    """This process's projection worker: started on the first call, restarted if it died, stopped at exit.

    Args:
        warm: fit a tiny UMAP at start (default: yes, unless ``MMVIZ_PROJECTION_WARM=0``).
    """
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            if warm is None:
                warm = os.environ.get(WARM_ENV, "1") != "0"
            _WORKER = ProjectionWorker(warm=warm)
            atexit.register(_WORKER.stop)
        else:
            _WORKER.check()
        return _WORKER


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process: ``python -m mmviz.analysis.worker --root DIR``."""
    parser = argparse.ArgumentParser(prog="python -m mmviz.analysis.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="Protocol folder shared with the client.")
    parser.add_argument("--parent-pid", type=int, help="Exit when this process is gone.")
    parser.add_argument("--no-warm", action="store_true", help="Skip the UMAP warm-up.")
    args = parser.parse_args(argv)
    serve(Path(args.root), args.parent_pid, warm=not args.no_warm)


if __name__ == "__main__":
    main()
