"""Projection jobs: what the projection worker is asked to compute, how, and where the result is cached.

A :class:`ProjectionRequest` names one view (a modality or 'fused') of one epoch's snapshot (PCA, UMAP) or of every
epoch (AlignedUMAP), plus the parameters. Its :attr:`~ProjectionRequest.key` hashes everything the result depends on,
including the snapshot files' size and mtime, and the result is cached at ``<run_dir>/snapshots/proj/<...>-<key>.npz``
next to the snapshots it came from, so asking twice costs nothing. :func:`compute_projection` does the work (in the
worker process, see :mod:`mmviz.analysis.worker`; tests and benchmarks may call it directly).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
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
FAULTS_ENV = "MMVIZ_PROJECTION_FAULTS"  # "1" enables the '_crash' method (tests kill the worker with it)
CACHE_DIR = "proj"  # cached results: <run_dir>/snapshots/proj/


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


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON atomically (a temporary file in the same folder, then a rename)."""
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, default=str), encoding="utf-8"))


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or ``None`` when it is missing or unreadable."""
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
    """The cached result of ``request`` (or of a cache file); ``None`` when not computed yet or unreadable."""
    path = request.cache_path if isinstance(request, ProjectionRequest) else Path(request)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            epochs, embedding, index = z["epochs"], z["embedding"], z["index"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return ProjectionResult({int(e): embedding[i] for i, e in enumerate(epochs)}, index, meta["seconds"],
                            meta["computed_at"])  # fmt: skip
