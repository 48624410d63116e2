"""Lesson runs: what a run is (:class:`RunSpec`), its config, and the shared result cache in the run store.

A lesson run is an ordinary run (same trainer process, store and probes as elsewhere). The cache is the store
itself: every lesson run carries the tag ``teach:<hash>`` of its full validated config (plus the mmviz version),
so when a class of 30 opens the same lesson, the first click trains and the other 29 find the finished run
(or the one still training) instead of starting their own. Look-up and launch happen under a file lock in the
workspace, so two sessions clicking at the same moment still start one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmviz import __version__
from mmviz.errors import RunNotFoundError
from mmviz.teach.presets import SIZING, DataKnobs, probe_overrides

TAG_PREFIX = "teach:"
TEACH_TAG = "teach"
LOCK_NAME = "teach.lock"
# A queued run without a process this old was never started (its launcher died): do not wait for it.
STALE_QUEUED_S = 30.0
REUSABLE = ("finished", "running", "queued")
DONE = "finished"
BROKEN = ("failed", "diverged", "stopped", "lost")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run a lesson step needs.

    Attributes:
        role: what the run is for in the lesson, e.g. ``joint``, ``alone_b``, ``balanced``, ``helper_p0``.
        label: how charts and progress bars name it, e.g. ``"b alone"``.
        method: balancing method name (``baseline``, ``unimodal``, ``amd``, ...).
        method_params: the method's settings as sorted ``(field, value)`` pairs.
        knobs: the synthetic-data knobs.
        seed: seed of the data and of training.
        fusion: the model's fusion (MLA needs ``shared_head``).
    """

    role: str
    label: str
    method: str
    method_params: tuple[tuple[str, Any], ...]
    knobs: DataKnobs
    seed: int = 0
    fusion: str = "concat"

    def overrides(self) -> dict[str, Any]:
        """The nested ``overrides`` for :func:`mmviz.training.config.build_run_config`."""
        epochs = SIZING["epochs"]
        return {
            "data": self.knobs.data_overrides(self.seed),
            "model": {"fusion": self.fusion, "feature_dim": SIZING["feature_dim"], "hidden_dim": SIZING["hidden_dim"]},
            "train": {
                "epochs": epochs,
                "batch_size": SIZING["batch_size"],
                "seed": int(self.seed),
                "device": "cpu",
                "threads": SIZING["threads"],
                # one core per run: the lesson's diagnostics are computed between epochs, not by a third process
                "analysis": "inline",
            },
            "method": dict(self.method_params),
            "probes": probe_overrides(epochs),
        }

    def build_config(self):
        """The validated :class:`~mmviz.training.config.RunConfig` (raises ``ConfigError`` on a bad setting)."""
        from mmviz.training.config import build_run_config

        return build_run_config("synthetic", self.method, overrides=self.overrides())


def make_spec(
    role: str,
    label: str,
    method: str,
    knobs: DataKnobs,
    seed: int,
    params: Mapping[str, Any] | None = None,
    fusion: str = "concat",
) -> RunSpec:
    """Build a :class:`RunSpec` with its method settings in canonical (sorted) order."""
    return RunSpec(role, label, method, tuple(sorted((params or {}).items())), knobs, int(seed), fusion)


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a run config dict and the mmviz version (the cache key of a lesson run).

    Switched-off probes are left out: a probe registered later (and off in lesson runs) does not change what a
    lesson run computes, so it must not invalidate the cache.
    """
    probes = {k: v for k, v in (config.get("probes") or {}).items() if v.get("enabled", True)}
    text = json.dumps({"config": {**config, "probes": probes}, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_hash(spec: RunSpec) -> str:
    """The cache key of a spec: the hash of its full validated config."""
    return config_hash(spec.build_config().to_dict())


def _tags(run: Mapping[str, Any]) -> list[str]:
    tags = run.get("tags")
    return list(tags) if isinstance(tags, (list, tuple)) else []


def _has_pid(run: Mapping[str, Any]) -> bool:
    pid = run.get("pid")
    return pid is not None and pid == pid  # list_runs() gives NaN for a missing pid


def pick_cached(runs: Sequence[Mapping[str, Any]], key: str, now: float | None = None) -> Mapping[str, Any] | None:
    """The run to reuse for cache key ``key``: the newest finished one, else the newest one still training.

    Failed, diverged, stopped and lost runs are never reused, nor a queued run that never got a process.
    """
    now = time.time() if now is None else now
    tag = TAG_PREFIX + key
    mine = [r for r in runs if tag in _tags(r)]
    mine.sort(key=lambda r: r.get("created") or 0.0, reverse=True)
    for r in mine:
        if r.get("effective_status") == DONE:
            return r
    for r in mine:
        status = r.get("effective_status")
        if status == "running":
            return r
        if status == "queued" and (_has_pid(r) or now - float(r.get("created") or 0.0) < STALE_QUEUED_S):
            return r
    return None


@contextlib.contextmanager
def workspace_lock(folder: str | Path) -> Iterator[None]:
    """An exclusive lock on ``<folder>/teach.lock`` (across threads and processes); ``folder`` is the store's
    artifact folder (the workspace folder, or a PostgreSQL workspace's shared artifact folder)."""
    path = Path(folder) / LOCK_NAME
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_runs(store: Any, specs: Sequence[RunSpec], start: Callable[[Any, str], Any] | None = None) -> dict[str, str]:
    """Return ``{role: run_id}``, reusing cached runs and launching the missing ones as trainer processes.

    ``start(store, run_id)`` starts a prepared run (default: :func:`mmviz.launcher.spawn_run`, a trainer process).
    Raises ``ConfigError`` (an ``MmvizError``) before anything starts when a spec's settings are invalid.
    """
    from mmviz import launcher

    configs = {s.role: s.build_config() for s in specs}  # validate every spec before starting any run
    out: dict[str, str] = {}
    with workspace_lock(store.artifact_root):  # a folder for either store (a URL is no path)
        runs = store.list_runs().to_dict("records")
        for spec in specs:
            cfg = configs[spec.role]
            key = config_hash(cfg.to_dict())
            cached = pick_cached(runs, key)
            if cached is not None:
                out[spec.role] = cached["run_id"]
                continue
            run_id = launcher.submit(
                store, cfg, name=f"teach-{spec.role}", tags=[TEACH_TAG, TAG_PREFIX + key], backend=start or "local"
            )
            out[spec.role] = run_id
            runs.append(store.get_run(run_id))
    return out


def find_runs(store: Any, specs: Sequence[RunSpec]) -> dict[str, str]:
    """``{role: run_id}`` of the specs that already have a reusable run in the store (nothing is started)."""
    runs = store.list_runs().to_dict("records")
    out = {}
    for spec in specs:
        cached = pick_cached(runs, spec_hash(spec))
        if cached is not None:
            out[spec.role] = cached["run_id"]
    return out


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """Where one lesson run stands: its status and epochs done out of the planned number."""

    role: str
    label: str
    run_id: str
    status: str
    epochs_done: int
    epochs: int
    error: str = ""
    seconds: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of the epochs done, in [0, 1]."""
        return 1.0 if self.status == DONE else min(1.0, self.epochs_done / max(1, self.epochs))


def load_progress(store: Any, specs: Sequence[RunSpec], run_ids: Mapping[str, str]) -> list[RunProgress]:
    """The progress of each spec's run (status ``missing`` when it has none)."""
    out = []
    now = time.time()
    for spec in specs:
        rid = run_ids.get(spec.role)
        if rid is None:
            out.append(RunProgress(spec.role, spec.label, "", "missing", 0, SIZING["epochs"]))
            continue
        try:
            run = store.get_run(rid)
        except RunNotFoundError:  # deleted since it was requested
            out.append(RunProgress(spec.role, spec.label, rid, "missing", 0, SIZING["epochs"]))
            continue
        start = run.get("started") or run.get("created") or now
        end = run.get("finished") or now
        out.append(
            RunProgress(
                spec.role,
                spec.label,
                rid,
                run["effective_status"],
                int(run.get("epochs_done") or 0),
                SIZING["epochs"],
                run.get("error") or "",
                float(end - start),
            )
        )
    return out
