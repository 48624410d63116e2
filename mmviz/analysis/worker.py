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
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from mmviz.errors import ConfigError, did_you_mean

METHODS: dict[str, dict[str, Any]] = {  # method -> default parameters (every parameter is part of the cache key)
    "pca": {},
    "umap": {"n_neighbors": 15, "min_dist": 0.1, "n_epochs": 200, "metric": "euclidean", "random_state": 0},
    "aligned_umap": {
        "n_neighbors": 15, "min_dist": 0.1, "n_epochs": 200, "metric": "euclidean", "random_state": 0,
        "alignment_regularisation": 0.01, "alignment_window_size": 2,
    },
}  # fmt: skip
WARM_ENV = "MMVIZ_PROJECTION_WARM"  # "0": no UMAP warm-up at start (tests that never run UMAP)
FAULTS_ENV = "MMVIZ_PROJECTION_FAULTS"  # "1" enables the '_crash' method (tests kill the worker with it)
CACHE_DIR = "proj"
_POLL_S = 0.05


def _file_id(path: str) -> list:
    try:
        st = os.stat(path)
        return [Path(path).name, st.st_size, st.st_mtime_ns]
    except OSError:
        return [Path(path).name, None, None]


@dataclasses.dataclass(frozen=True)
class ProjectionRequest:
    """What to project: one view (a modality or 'fused') of one epoch's snapshot, or of every epoch (aligned).

    Build with :meth:`create`, which fills in default parameters so that equal requests share one cache entry.

    Attributes:
        run_id: the run; view: modality name or ``'fused'``; method: ``'pca'``, ``'umap'`` or ``'aligned_umap'``.
        epochs: the epoch (one) or the epochs (aligned) and ``paths`` their snapshot files (absolute).
        params: sorted ``(name, value)`` pairs; reference: the PCA reference epoch's snapshot file.
    """

    run_id: str
    view: str
    method: str
    epochs: tuple[int, ...]
    paths: tuple[str, ...]
    params: tuple[tuple[str, Any], ...] = ()
    reference: str | None = None

    @classmethod
    def create(
        cls, run_id: str, view: str, method: str, epochs, paths, params: dict | None = None, reference=None
    ) -> ProjectionRequest:
        """Validate ``method`` and ``params`` (unknown names are an error) and fill in defaults."""
        if method not in METHODS and not (method == "_crash" and os.environ.get(FAULTS_ENV) == "1"):
            raise ConfigError(
                f"Unknown projection method {method!r}.{did_you_mean(method, METHODS)} Available: {', '.join(METHODS)}."
            )
        defaults = METHODS.get(method, {})
        unknown = sorted(set(params or {}) - set(defaults))
        if unknown:
            raise ConfigError(f"Unknown {method} parameter {unknown[0]!r}. Valid: {', '.join(defaults) or 'none'}.")
        epochs, paths = tuple(int(e) for e in epochs), tuple(str(p) for p in paths)
        if len(epochs) != len(paths) or not epochs or (method != "aligned_umap" and len(epochs) != 1):
            raise ValueError(f"A {method} request needs one snapshot per epoch; got {len(epochs)} epochs.")
        merged = {**defaults, **(params or {})}
        return cls(run_id, view, method, epochs, paths, tuple(sorted(merged.items())), reference)

    @property
    def key(self) -> str:
        """Hash of everything the result depends on, including the snapshot files' size and mtime."""
        payload = {
            "run_id": self.run_id, "view": self.view, "method": self.method, "epochs": self.epochs,
            "files": [_file_id(p) for p in self.paths], "params": self.params,
            "reference": None if self.reference is None else _file_id(self.reference),
        }  # fmt: skip
        return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]

    @property
    def cache_path(self) -> Path:
        """The cached result: ``<run_dir>/snapshots/proj/<method>-<view>-e<last epoch>-<key>.npz``."""
        name = f"{self.method}-{self.view}-e{self.epochs[-1]:04d}-{self.key}.npz"
        return Path(self.paths[-1]).parent / CACHE_DIR / name

    def describe(self) -> str:
        """A short human description, e.g. ``umap of 'audio' at epoch 3 of run R``."""
        when = f"epoch {self.epochs[0]}" if len(self.epochs) == 1 else f"epochs {self.epochs[0]}-{self.epochs[-1]}"
        return f"{self.method} of {self.view!r} at {when} of run {self.run_id}"

    def to_json(self) -> dict:
        """A JSON-able dict (see :meth:`from_json`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ProjectionRequest:
        """Rebuild a request written by :meth:`to_json`."""
        params = tuple((str(k), v) for k, v in data["params"])
        return cls(data["run_id"], data["view"], data["method"], tuple(data["epochs"]), tuple(data["paths"]),
                   params, data.get("reference"))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ProjectionResult:
    """A computed projection: per epoch the ``(N, 2)`` coordinates of the snapshot rows, in row order."""

    embeddings: dict[int, np.ndarray]
    index: np.ndarray
    seconds: float
    computed_at: float


def compute_projection(request: ProjectionRequest) -> dict[str, np.ndarray]:
    """Compute ``request`` in this process and return the arrays of its cache file."""
    from mmviz.analysis.projection import AlignedUMAPProjection, PCAProjection, UMAPProjection
    from mmviz.analysis.snapshots import load_snapshot

    if request.method == "_crash" and os.environ.get(FAULTS_ENV) == "1":  # fault injection for tests
        os._exit(3)
    if request.method not in METHODS:
        raise ValueError(f"Unknown projection method {request.method!r}; available: {', '.join(METHODS)}.")
    params = dict(request.params)
    snaps = [load_snapshot(p, e) for e, p in zip(request.epochs, request.paths, strict=True)]
    for snap in snaps:
        if request.view not in snap.features:
            raise KeyError(f"Snapshot of epoch {snap.epoch} has no view {request.view!r}; it has {snap.views}.")
    xs = [s.features[request.view] for s in snaps]
    if request.method == "pca":
        ref = load_snapshot(request.reference).features[request.view] if request.reference else xs[0]
        embedding = PCAProjection(2).fit(ref).transform(xs[0])[None]
    elif request.method == "umap":
        embedding = UMAPProjection(**params).fit_transform(xs[0])[None]
    else:
        if len({len(x) for x in xs}) != 1:
            raise ValueError("AlignedUMAP needs the same probe set every epoch; the snapshot sizes differ.")
        embedding = np.stack(AlignedUMAPProjection(**params).fit_transform(xs, [s.index for s in snaps]))
    return {"embedding": embedding.astype(np.float32), "epochs": np.asarray(request.epochs), "index": snaps[-1].index}


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, default=str), encoding="utf-8"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_result(request: ProjectionRequest, arrays: dict[str, np.ndarray], seconds: float) -> Path:
    """Write the cache file of ``request`` atomically and return its path."""
    path = request.cache_path
    meta = np.asarray(json.dumps({"seconds": seconds, "computed_at": time.time(), "pid": os.getpid()}))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=meta, **arrays)

    _write_atomic(path, write)
    return path


def load_result(request: ProjectionRequest | str | Path) -> ProjectionResult | None:
    """The cached result of ``request`` (or a cache file), or ``None`` when it has not been computed (or is unreadable)."""
    path = request.cache_path if isinstance(request, ProjectionRequest) else Path(request)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            epochs, embedding, index = z["epochs"], z["embedding"], z["index"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return ProjectionResult({int(e): embedding[i] for i, e in enumerate(epochs)}, index, meta["seconds"],
                            meta["computed_at"])  # fmt: skip


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
        item = _read_json(path)
        if item is None:
            continue
        rank = (-int(item.get("priority", 0)), float(item.get("seq", 0.0)))
        if best_rank is None or rank < best_rank:
            best, best_rank = path, rank
    return best


def serve(root: Path, parent_pid: int | None = None, warm: bool = True) -> None:
    """The worker's main loop: warm up, then serve requests from ``root/queue`` until the parent process dies."""
    root = Path(root)
    queue, running, errors = root / "queue", root / "running", root / "errors"
    for folder in (queue, running, errors):
        folder.mkdir(parents=True, exist_ok=True)
    warm_s = warm_up() if warm else 0.0
    _write_json(root / "ready.json", {"pid": os.getpid(), "warm_s": warm_s, "time": time.time()})
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
        item = _read_json(claim)
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
            _write_json(errors / claim.name, {"message": message, "traceback": traceback.format_exc()})
        finally:
            claim.unlink(missing_ok=True)
            _write_json(root / "stats.json", stats)


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
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return None if self._proc is None else self._proc.pid

    def ready(self) -> bool:
        """Whether the current worker process has finished its warm-up."""
        info = _read_json(self.root / "ready.json")
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
        return _read_json(self.root / "stats.json") or {}

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
                item = _read_json(claim) or {}
                described = ProjectionRequest.from_json(item["request"]).describe() if "request" in item else "?"
                lost.append(described)
                _write_json(self.root / "errors" / claim.name, {
                    "message": f"The projection worker crashed (exit code {returncode}) while computing {described}.",
                    "traceback": "", "crash": True,
                })  # fmt: skip
                claim.unlink(missing_ok=True)
            recent = [c for c in self.crashes if c.time > time.time() - 60]
            self.restarts += 1
            report = CrashReport(time.time(), returncode, ", ".join(lost) or None, self.restarts, self._log_tail())
            self.crashes.append(report)
            if len(recent) >= self.MAX_RESTARTS_PER_MINUTE:  # crash loop: leave it dead; the page says so
                self._proc = None
                return report
            self.start()
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
        queued = _read_json(self.root / "queue" / f"{key}.json")
        if queued is not None and queued.get("priority") == int(priority):
            return "queued"
        with self._lock:
            self._seq += 1
            seq = time.time() + self._seq * 1e-6
        item = {"priority": int(priority), "seq": seq, "owner": owner, "request": request.to_json()}
        _write_json(self.root / "queue" / f"{key}.json", item)
        return "queued"

    def state(self, request: ProjectionRequest) -> RequestState:
        """Where ``request`` stands (see :class:`RequestState`); a failed one carries its message."""
        if request.cache_path.is_file():
            return RequestState("done")
        key = request.key
        error = _read_json(self.root / "errors" / f"{key}.json")
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
            item = _read_json(path)
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
