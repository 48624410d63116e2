"""The Ray backend: each run (or sweep trial) trains as a Ray actor with its GPU / CPU request.

Where: the cluster at ``MMVIZ_RAY_ADDRESS`` (or Ray's own ``RAY_ADDRESS``), e.g. ``ray-head:6379`` (its GCS
address; Ray's workers import mmviz from the submitting process's folder, so the checkout lies at the same path on
every node) or ``auto`` for the cluster ``ray start`` runs on this machine (``ray://head:10001``, Ray Client, needs
``ray[client]`` and mmviz importable on the nodes); without one, ``ray.init()`` starts a local Ray in the process
that submits (the scheduler, which then stays up while its Ray runs train).

What: the actor opens the run's store from the workspace (a folder every worker sees, or a ``postgresql://``
URL with a shared artifact folder) and runs the normal trainer body (:func:`mmviz.training.runner.run_training`),
so it writes the same rows and heartbeats as a local run and every page works on it. The actor is detached (it
does not die with the process that submitted it) and exits when training ends. A stop from the dashboard is the
store's stop request, which the trainer checks between steps; a worker that is killed stops sending heartbeats,
so the run shows as ``lost`` within :data:`mmviz.store.LOST_AFTER_S`.
"""

from __future__ import annotations

import os
from typing import Any

ADDRESS_ENV = "MMVIZ_RAY_ADDRESS"
NAMESPACE = "mmviz"
_ACTOR_CLS = None


def ray_address() -> str | None:
    """The cluster address to join, or None for a local Ray started here."""
    return os.environ.get(ADDRESS_ENV) or os.environ.get("RAY_ADDRESS") or None


def connect() -> Any:
    """Join (or start) Ray once per process; returns the ``ray`` module."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address(), namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
    return ray


def resources(config: dict) -> dict[str, float]:
    """The run's Ray request: one GPU for a CUDA run (``auto`` asks for none), CPUs = its torch threads (>= 1)."""
    train = config.get("train") or {}
    threads = int(train.get("threads") or 0)
    return {"num_cpus": float(max(1, threads)), "num_gpus": 1.0 if train.get("device") == "cuda" else 0.0}


def _actor_class(ray: Any) -> Any:
    global _ACTOR_CLS
    if _ACTOR_CLS is None:

        class RayTrainer:
            """Trains one stored run inside a Ray worker."""

            def train(self, workspace: str, run_id: str) -> str:
                from mmviz.store import open_store
                from mmviz.training.runner import run_training

                store = open_store(workspace)
                try:
                    return run_training(store, run_id)
                finally:
                    store.close()
                    ray.actor.exit_actor()

        _ACTOR_CLS = ray.remote(RayTrainer)
    return _ACTOR_CLS


def start_ray_run(store: Any, run_id: str) -> None:
    """Submit a created run to Ray (a detached actor named ``mmviz-<run_id>`` with the run's resources)."""
    ray = connect()
    request = resources(store.get_run(run_id)["config"])
    store.update_run(run_id, backend="ray")  # stop then goes through the store only: never a signal to a worker
    actor = _actor_class(ray).options(name=f"mmviz-{run_id}", lifetime="detached", max_restarts=0, **request).remote()
    actor.train.remote(str(store.workspace), run_id)
