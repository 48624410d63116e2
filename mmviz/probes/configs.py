"""Probes' declarations: the settings every probe has, each probe's config dataclass and its registry entry.

Torch-free, so that the dashboard lists the probes and builds their forms without importing torch. Each entry
points at its implementation, ``"mmviz.probes.<module>:<Class>"`` (one file per probe), imported when a run first
uses it; the implementation's docstring is the description the dashboard shows (read from its source file without
importing it). ``cadence`` is ``"step"`` or ``"epoch"``; ``keys`` the metric keys it logs; ``requires`` the model
capabilities it needs (:data:`mmviz.contracts.CAPABILITIES`).
"""

from __future__ import annotations

import dataclasses

from mmviz.config import Config, param
from mmviz.probes.registry import PROBES

# k-means restarts by default (the value of mmviz.measures.KMEANS_N_INIT, which imports torch; a test keeps them equal)
KMEANS_N_INIT = 3


@dataclasses.dataclass(frozen=True)
class ProbeConfig(Config):
    """Settings every probe has: on/off, a cadence and a cost budget."""

    enabled: bool = param(True, "Whether this probe runs.")
    every_n_steps: int = param(1, "Run the per-step part every N optimiser steps.", low=1, high=1_000_000)
    every_n_epochs: int = param(1, "Run the per-epoch part every N epochs.", low=1, high=100_000)
    max_overhead: float = param(
        0.005, "Largest share of the run's time this probe may take; due calls are skipped while it is over "
        "(0 = no budget: run at every due step / epoch).", low=0.0, high=1.0, step=0.0005,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class EpochProbeConfig(ProbeConfig):
    """Settings of a per-epoch probe: every epoch by default, with no cost budget (deterministic logs)."""

    every_n_epochs: int = param(1, "Run at most every N epochs (and at the last epoch).", low=1, high=100_000)
    max_overhead: float = param(
        0.0, "Largest share of the run's time this probe may take (0 = no budget: every due epoch).",
        low=0.0, high=1.0, step=0.0005,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class GradConflictConfig(ProbeConfig):
    """Settings of the gradient-conflict probe (an extra forward and two backward passes when it runs)."""

    every_n_steps: int = param(20, "Run at most every N optimiser steps.", low=1, high=1_000_000)
    max_overhead: float = param(
        0.005,
        "Largest share of the training steps' time this probe may take (0 = no budget).",
        low=0.0,
        high=1.0,
        step=0.0005,
    )


@dataclasses.dataclass(frozen=True)
class GradNormConfig(ProbeConfig):
    """Settings of the grad_norm probe."""

    every_n_steps: int = param(1, "Run at most every N optimiser steps.", low=1, high=1_000_000)
    max_overhead: float = param(
        0.012,
        "Largest share of the training steps' time this probe may take (0 = no budget).",
        low=0.0,
        high=1.0,
        step=0.0005,
    )


@dataclasses.dataclass(frozen=True)
class ImbalanceConfig(EpochProbeConfig):
    """Settings of the imbalance probe."""


@dataclasses.dataclass(frozen=True)
class ParamDistConfig(EpochProbeConfig):
    """Settings of the param_dist probe."""


@dataclasses.dataclass(frozen=True)
class PrototypesConfig(EpochProbeConfig):
    """Settings of the prototypes probe."""


@dataclasses.dataclass(frozen=True)
class ScoreRatioConfig(ProbeConfig):
    """Settings of the score_ratio probe."""

    every_n_steps: int = param(1, "Run at most every N optimiser steps.", low=1, high=1_000_000)
    max_overhead: float = param(
        0.008,
        "Largest share of the training steps' time this probe may take (0 = no budget).",
        low=0.0,
        high=1.0,
        step=0.0005,
    )


@dataclasses.dataclass(frozen=True)
class SeparabilityConfig(EpochProbeConfig):
    """Settings of the separability probe."""

    max_samples: int = param(
        2000,
        "Use at most this many val samples (a fixed subset) for k-means and silhouette.",
        low=10,
        high=100_000,
        log=True,
    )
    kmeans_n_init: int = param(
        KMEANS_N_INIT,
        "k-means restarts (the lowest-inertia run is kept); with one restart purity jumps between epochs.",
        low=1,
        high=100,
    )
    seed: int = param(0, "Seed of k-means and of the val subset.", low=0, high=2**31 - 1)


@dataclasses.dataclass(frozen=True)
class ShapleyConfig(EpochProbeConfig):
    """Settings of the shapley probe."""


@dataclasses.dataclass(frozen=True)
class SnapshotConfig(EpochProbeConfig):
    """Settings of the snapshot probe."""

    compress: bool = param(
        False, "Write compressed .npz files (float16 features shrink by only ~20%, for ~10 ms per epoch)."
    )


@dataclasses.dataclass(frozen=True)
class UnimodalAccConfig(EpochProbeConfig):
    """Settings of the per-modality accuracy probe."""

    probe_every: int = param(
        5,
        "Fit the logistic-regression probe at epochs divisible by N and at the last "
        "epoch (0 = never: ~20 ms per fit, the costliest measure).",
        low=0,
        high=100_000,
    )
    probe_train_samples: int = param(
        500,
        "Train samples (a fixed stratified subset) the linear probe is fitted on.",
        low=10,
        high=1_000_000,
        log=True,
    )
    probe_c: float = param(
        1.0,
        "Inverse L2 regularisation strength C of the logistic-regression probe.",
        low=0.0,
        low_open=True,
        high=1e6,
        log=True,
    )
    probe_max_iter: int = param(
        20,
        "Iteration cap of the probe's lbfgs solver (accuracy settles long before the loss converges).",
        low=1,
        high=10_000,
    )


# ---- declarations ----
PROBES.declare(
    "grad_conflict",
    "mmviz.probes.grad_conflict:GradConflictProbe",
    config=GradConflictConfig,
    cadence="step",
    keys=("conflict/cos/<m>",),
)
PROBES.declare(
    "grad_norm",
    "mmviz.probes.grad_norm:GradNormProbe",
    config=GradNormConfig,
    cadence="step",
    keys=("grad_norm_pre/<m>", "grad_norm/<m>"),
)
PROBES.declare(
    "imbalance",
    "mmviz.probes.imbalance:ImbalanceProbe",
    config=ImbalanceConfig,
    cadence="epoch",
    keys=("imbalance/index", "imbalance/dominant/<m>", "imbalance/share/<m>"),
    requires=frozenset({"fuse"}),
)
PROBES.declare(
    "param_dist",
    "mmviz.probes.param_dist:ParamDistProbe",
    config=ParamDistConfig,
    cadence="epoch",
    keys=("param_dist/<m>",),
)
PROBES.declare(
    "prototypes",
    "mmviz.probes.prototypes:PrototypesProbe",
    config=PrototypesConfig,
    cadence="epoch",
    keys=("proto/intra/<m>", "proto/inter/<m>", "proto/margin/<m>", "proto/drift/<m>"),
)
PROBES.declare(
    "score_ratio",
    "mmviz.probes.score_ratio:ScoreRatioProbe",
    config=ScoreRatioConfig,
    cadence="step",
    keys=("score/<m>", "ratio/<m>"),
)
PROBES.declare(
    "separability",
    "mmviz.probes.separability:SeparabilityProbe",
    config=SeparabilityConfig,
    cadence="epoch",
    keys=("sep/purity/<m>", "sep/silhouette/<m>", "sep/fisher/<m>"),
)
PROBES.declare(
    "shapley",
    "mmviz.probes.shapley:ShapleyProbe",
    config=ShapleyConfig,
    cadence="epoch",
    keys=("val/shapley/<m>",),
    requires=frozenset({"fuse"}),
)
PROBES.declare(
    "snapshots",
    "mmviz.probes.snapshots:SnapshotProbe",
    config=SnapshotConfig,
    cadence="epoch",
    keys=(),
    artifact="snapshot",
)
PROBES.declare(
    "unimodal_acc",
    "mmviz.probes.unimodal_acc:UnimodalAccProbe",
    config=UnimodalAccConfig,
    cadence="epoch",
    keys=("val/acc_ncm/<m>", "val/acc_probe/<m>", "val/acc_probe/fused"),
)
