"""Diagnosing & Re-learning: purity-diagnosed soft re-initialisation of the encoders (METHODS.md §3)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.configs import RelearnConfig
from mmviz.contracts import DataSplit, StepInfo, TrainContext
from mmviz.measures import compute_kmeans_purity, extract_features


def is_reinit_epoch(done: int, every: int, count: int, limit: int, timing: str) -> bool:
    """Whether to re-initialise after epoch ``done`` (1-based, just finished), given ``count`` re-inits so far.

    ``official``: the code's ``epoch % reinit_epoch == 0 and epoch > 0`` on its 0-based epoch, i.e. after
    1-based epochs ``E_r + 1, 2 E_r + 1, ...``; ``every``: after epochs ``E_r, 2 E_r, ...``.

    >>> [e for e in range(1, 70) if is_reinit_epoch(e, 20, 0, 3, "official")]
    [21, 41, 61]
    """
    if count >= limit:
        return False
    k = done - 1 if timing == "official" else done
    return k > 0 and k % every == 0


def compute_alpha(state: float, lam: float) -> float:
    """Re-init strength ``alpha = tanh(lambda * state)`` (state = the purity gap, or the train purity)."""
    return math.tanh(lam * state)


@torch.no_grad()
def blend_(tensor: torch.Tensor, init: torch.Tensor, alpha: float) -> None:
    """In place: ``tensor <- alpha * init + (1 - alpha) * tensor``."""
    tensor.copy_(alpha * init.to(tensor.device, tensor.dtype) + (1.0 - alpha) * tensor)


class Relearn(BalancingMethod):
    """Re-learning (Wei et al., "Diagnosing and Re-learning for Balanced Multimodal Learning", ECCV 2024).

    Training is plain joint cross-entropy; every ``reinit_every`` epochs (at most ``reinit_num`` times) each
    encoder's learning state is diagnosed from the separability of its own features: in eval mode the
    features of the train and val splits are min-max scaled to [-1, 1] per split, clustered by k-means with
    K = C (fixed random state, ``kmeans_n_init`` restarts) and scored by cluster purity — the same function
    (:func:`mmviz.measures.compute_kmeans_purity`) as the ``separability`` probe's ``sep/purity``. The gap
    ``g = |P_train - P_val|`` gives the strength ``alpha = tanh(lambda * g)`` and the encoder is softly re-initialised,
    ``theta <- alpha * theta_0 + (1 - alpha) * theta`` (the fusion head is untouched), so an encoder that
    memorises is pulled back hard and one still learning is barely touched. Default: the official code's
    purity-gap diagnosis; ``diagnosis=train_purity`` uses ``alpha = tanh(lambda * P_train)`` instead (choose a
    smaller lambda). Timing: the official loop (GeWu-Lab/Diagnosing_Relearning_ECCV2024 @025085ea,
    ``code/ours.py`` lines 378-427) tests ``epoch % reinit_epoch == 0 and epoch > 0`` on its 0-based epoch after
    training it, so it re-initialises after 1-based epochs 21, 41 and 61; ``reinit_timing=official`` (default)
    does the same, ``every`` re-initialises after epochs E_r, 2 E_r, ... k-means: the code calls
    ``KMeans(n_clusters, random_state=0)`` (line 110) with scikit-learn's default restarts (one k-means++ run
    since 1.4), which ``kmeans_n_init=1`` (default) also uses; the ``separability`` probe uses 3 restarts for
    stable purity curves.
    Recipes: the default ``recipe=quick`` (Adam 1e-3, batch 64, 30 epochs, E_r = 10, N_r = 2: re-inits after
    epochs 11 and 21) fits mmviz's small CPU data and 30-epoch runs; ``recipe=paper`` is the official script's
    (``code/script/ours.sh``: lambda 3, E_r 20, N_r 3, 90 epochs; ``code/ours.py`` argparse lines 34-38 and line 368:
    SGD lr 2e-3, momentum 0.9, weight decay 1e-4, batch 64, no scheduler although ``lr_decay_step`` is parsed).
    Pitfalls of the
    official code, decided: BatchNorm running statistics are blended with the weights by default
    (``bn_buffers=keep`` is the official behaviour); the optimiser state of a re-initialised encoder is reset
    by default so momentum does not push it straight back (``momentum=keep`` is official); the initial weights
    come from the run's in-memory snapshot, not a shared file; the blend runs on any device; training data keep
    their augmentation (ours has none to lose); checkpoints are selected on val, never test; purity depends on
    K and on per-split scaling, so both are fixed as in the paper. The diagnosis and blend run right before
    the first step of the epoch after the diagnosed one (same weights as at its end), so that epoch's
    evaluation, best-on-val snapshot and checkpoint hold the weights that were evaluated. Logs per re-init
    ``relearn/purity_train/<m>``, ``relearn/purity_val/<m>``, ``relearn/gap/<m>``, ``coef/relearn/<m>`` (alpha),
    ``relearn/dist_before/<m>`` and ``relearn/dist_after/<m>`` (distance to theta_0) and a ``reinit`` event.
    """

    config_cls = RelearnConfig

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.count = 0
        init = ctx.init_state
        missing = [
            f"{m}: {n}"
            for m in ctx.modalities
            for n, _ in ctx.model.encoder(m).named_parameters()
            if n not in init.get(m, {})
        ]
        if missing:
            raise RuntimeError(f"The initial-weights snapshot lacks encoder parameters, e.g. {missing[0]!r}.")

    def on_epoch_start(self, info: StepInfo) -> None:
        cfg = self.config
        done = info.epoch - 1  # epochs completed before this one
        if is_reinit_epoch(done, cfg.reinit_every, self.count, cfg.reinit_num, cfg.reinit_timing):
            self.reinit(done)

    # ----- the diagnosis ----------------------------------------------------------------------------
    def split_features(self, split: DataSplit) -> dict[str, torch.Tensor]:
        """Eval-mode pooled features ``{m: (N, D_m)}`` of a whole split, on the CPU (modes restored)."""
        ctx = self.ctx
        bs = ctx.eval_batch_size
        feats, _ = extract_features(ctx.model, split.batches(bs), ctx.modalities, autocast=ctx.autocast)
        return feats

    def diagnose(self) -> dict[str, dict[str, float]]:
        """Purity of each modality's features on train and val, their gap and the resulting alpha."""
        cfg, ctx = self.config, self.ctx
        out: dict[str, dict[str, float]] = {m: {} for m in ctx.modalities}
        rng = np.random.default_rng(cfg.kmeans_seed)
        for split in ("train", "val"):
            feats = self.split_features(ctx.splits[split])
            labels = ctx.splits[split].labels.cpu().numpy()
            keep = np.arange(len(labels))
            if len(keep) > cfg.max_samples:
                keep = np.sort(rng.choice(len(labels), cfg.max_samples, replace=False))
            for m, z in feats.items():
                out[m][split] = compute_kmeans_purity(
                    z.numpy()[keep],
                    labels[keep],
                    ctx.num_classes,
                    random_state=cfg.kmeans_seed,
                    n_init=cfg.kmeans_n_init,
                )
        for _m, d in out.items():
            d["gap"] = abs(d["train"] - d["val"])
            d["alpha"] = compute_alpha(d["gap"] if cfg.diagnosis == "purity_gap" else d["train"], cfg.lam)
        return out

    # ----- the soft re-initialisation -------------------------------------------------------------------
    def distance_from_init(self, modality: str) -> float:
        """``||theta^m - theta^m_0||`` over the encoder's parameters."""
        init = self.ctx.init_state[modality]
        sq = 0.0
        for n, p in self.ctx.model.encoder(modality).named_parameters():
            sq += float((p.detach().float().cpu() - init[n].float()).pow(2).sum())
        return math.sqrt(sq)

    @torch.no_grad()
    def blend_encoder(self, modality: str, alpha: float) -> None:
        """Soft re-init of one encoder towards theta_0 (and, per config, its BN buffers and optimiser state)."""
        ctx = self.ctx
        init = ctx.init_state[modality]
        enc = ctx.model.encoder(modality)
        for n, p in enc.named_parameters():
            blend_(p.data, init[n], alpha)
        if self.config.bn_buffers == "blend":
            for n, b in enc.named_buffers():
                if b.is_floating_point() and n in init:
                    blend_(b, init[n], alpha)
        if self.config.momentum == "reset" and ctx.optimizer is not None:
            for p in enc.parameters():
                ctx.optimizer.state.pop(p, None)

    def reinit(self, epoch: int) -> dict[str, float]:
        """Diagnose every encoder and blend it towards its initial weights; returns alpha per modality."""
        diag = self.diagnose()
        alphas = {}
        for m, d in diag.items():
            before = self.distance_from_init(m)
            self.blend_encoder(m, d["alpha"])
            alphas[m] = d["alpha"]
            self.log(f"relearn/purity_train/{m}", d["train"])
            self.log(f"relearn/purity_val/{m}", d["val"])
            self.log(f"relearn/gap/{m}", d["gap"])
            self.log(f"coef/relearn/{m}", d["alpha"])
            self.log(f"relearn/dist_before/{m}", before)
            self.log(f"relearn/dist_after/{m}", self.distance_from_init(m))
        self.count += 1
        self.ctx.event(
            "reinit",
            {
                "epoch": epoch,
                "count": self.count,
                "alpha": alphas,
                "purity_train": {m: d["train"] for m, d in diag.items()},
                "purity_val": {m: d["val"] for m, d in diag.items()},
                "bn_buffers": self.config.bn_buffers,
                "momentum": self.config.momentum,
            },
        )
        return alphas

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state.get("count", 0))
