"""MLA: alternating unimodal adaptation with a shared head and gradient projection (METHODS.md §5)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.registry import METHODS
from mmviz.balancing.settings import MethodConfig, modality_map, parse_modality_map
from mmviz.config import param
from mmviz.contracts import EvalResult, ModelOutput, StepInfo, TrainContext
from mmviz.measures import eval_mode
from mmviz.recipes import Recipe, RecipeSetting


@dataclasses.dataclass(frozen=True)
class MLAConfig(RecipeSetting, MethodConfig):
    """Settings of MLA."""

    projection: str = param(
        "replace",
        "Shared-head weight gradient: 'replace' G <- G P^T (paper), 'add' "
        "G <- G + G P^T (BalanceMM), or 'off' (plain alternating training).",
        choices=("replace", "add", "off"),
    )
    fusion_mode: str = param(
        "dynamic",
        "Test-time fusion: 'dynamic' per-sample entropy weights (paper) or 'fixed' weights.",
        choices=("dynamic", "fixed"),
    )
    fixed_weights: tuple[str, ...] = modality_map(
        "Weights of fusion_mode=fixed; empty = equal weights; normalised to sum 1.", low=0.0, high=1e6, example="a=0.55"
    )


def compute_alpha(batch_index: int, batches_per_epoch: int) -> float:
    """The projector's regulariser ``alpha = 0.1^(1 + b / N_b)`` (0.1 -> 0.01 within each epoch)."""
    return 0.1 ** (1.0 + batch_index / max(1, batches_per_epoch))


def compute_projector_update(proj: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """One recursive-least-squares step of the orthogonal projector, then Frobenius normalisation.

    ``k = P r^T``; ``P <- P - k k^T / (alpha + r k)``; ``P <- P / ||P||_F``. After it, ``P r^T ~ 0``, so a
    gradient ``G P^T`` no longer changes the head's output on inputs along ``r`` (or along earlier inputs).

    Args:
        proj: ``(D, D)`` current projector.
        r: ``(D,)`` mean input of the batch.
        alpha: regulariser (small = sharper projection).
    """
    r = r.reshape(1, -1).to(proj.dtype)
    k = proj @ r.t()  # (D, 1)
    proj = proj - (k @ k.t()) / (alpha + (r @ k))
    return proj / torch.linalg.matrix_norm(proj)


def compute_projector_gain(proj: torch.Tensor, iters: int = 8) -> torch.Tensor:
    """Largest eigenvalue of the symmetric PSD projector by power iteration (its gain on untouched directions)."""
    v = torch.ones(proj.shape[0], 1, device=proj.device, dtype=proj.dtype)
    for _ in range(iters):
        v = proj @ v
        v = v / v.norm().clamp_min(1e-30)
    return (v.t() @ proj @ v).reshape(())


def compute_entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """The paper's per-sample fusion weights from per-modality logits ``(M, B, C)`` -> ``(M, B)``.

    ``e^m = -sum_k p_k log p_k`` of ``softmax(o^m)``; ``w^m = exp(max_j e^j - e^m) / sum_l exp(max_j e^j - e^l)``
    (the more confident modality gets the larger weight).
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    ent = -(logp.exp() * logp).sum(-1)  # (M, B)
    return torch.softmax(ent.max(dim=0, keepdim=True).values - ent, dim=0)


@METHODS.register("mla", config=MLAConfig, kind="balancing")
class MLA(BalancingMethod):
    """MLA (Zhang et al., "Multimodal Representation Learning by Alternating Unimodal Adaptation", CVPR 2024).

    Joint optimisation is replaced by alternating unimodal turns: each step, every modality in turn is trained
    alone through its encoder and one classification head shared by all modalities (CE of ``H(z^m)``, backward,
    optimiser step), which removes the competition between modalities while the shared head accumulates
    cross-modal knowledge. To keep the head from forgetting earlier turns, its weight gradient is projected,
    ``G <- G P^T``, with an orthogonal projector ``P`` updated by recursive least squares from each turn's mean
    feature (P starts as the identity; ``alpha = 0.1^(1 + b/N_b)``). At test time per-modality logits are
    combined per sample with entropy weights ``w^m = softmax_m(max_j e^j - e^m)``. Default: the paper's variant,
    projection ``replace`` and ``dynamic`` fusion; ``add`` (BalanceMM's ``G + G P^T``), ``off`` and ``fixed``
    weights are options. Pitfalls of the official code, decided: the projection really runs (the official hook
    looks for a parameter named ``module.weight`` that does not exist, so it never fires) and the bias gradient
    is not projected; the RLS denominator is the scalar ``alpha + r k`` (the official line divides by the outer
    product element-wise); ``r`` is the current turn's mean feature and the very first turn of training is not
    projected, as in the official code; dynamic fusion is per sample over the class softmax (the official code
    takes a softmax over the whole batch matrix, one weight per batch); each turn zeroes gradients with
    ``set_to_none`` so the optimiser (momentum, weight decay) never moves the inactive encoder; checkpoints are
    chosen on val. The encoders run once per step in train mode (BatchNorm statistics of all modalities update
    once, as officially): since encoder m only changes in its own turn, its features computed at the start of
    the step equal those a per-turn forward would give, so this is exactly alternating training at 1x encoder
    cost; the shared head is re-applied after each turn's step. Note the Frobenius normalisation shrinks P's
    gain to about 1/sqrt(D): with SGD the head learns about sqrt(D) times slower (Adam cancels it).
    Logs per turn ``mla/loss/<m>``, ``mla/removed_frac/<m>`` (``1 - ||G P^T|| / (||G|| * gain(P))``: the share
    of the head gradient removed by the projection's direction, its overall gain divided out) and per step
    ``mla/alpha`` and ``mla/proj_gain``; per epoch on val ``mla/weight/<m>`` (mean entropy weight),
    ``val/acc_dynamic`` and ``val/acc_fixed``.

    Recipes: the default ``recipe=quick`` (Adam 1e-3, batch 64, 30 epochs) suits mmviz's small CPU data (and
    Adam cancels the projector's 1/sqrt(D) gain); ``recipe=paper`` is the official CREMA-D setting: SGD lr 1e-3,
    momentum 0.9, weight decay 1e-4, StepLR(70, x0.1), batch 64, 100 epochs and the shared head
    (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation @ab6c1845 ``main.py`` argparse lines
    28-34, optimiser line 749, scheduler line 760, README's CREMA-D command ``--batch_size 64 --epochs 100``).
    """

    config_cls = MLAConfig
    paper_recipe = Recipe(
        {
            "model": {"fusion": "shared_head"},
            "optim": {
                "name": "sgd",
                "lr": 1e-3,
                "momentum": 0.9,
                "weight_decay": 1e-4,
                "schedule": "step",
                "step_size": 70,
                "gamma": 0.1,
            },
            "train": {"epochs": 100, "batch_size": 64},
        },
        "Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation@ab6c1845 main.py L28-34 (batch 64, "
        "100 epochs, SGD lr 1e-3, StepLR 70 x0.1), L749 (momentum 0.9, wd 1e-4), L760 (StepLR), README command",
    )
    replaces_step = True
    requires = frozenset({"shared_head"})

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.modalities = ctx.modalities
        self.head: nn.Linear = ctx.model.shared_head()
        d = self.head.in_features
        self.proj = torch.eye(d, device=ctx.device)
        self.turns = 0
        given = parse_modality_map(self.config, "fixed_weights")
        raw = [given.get(m, 0.0 if given else 1.0) for m in self.modalities]
        total = sum(raw) or 1.0
        self.fixed = torch.tensor([w / total for w in raw], device=ctx.device)

    # ----- one step: M alternating unimodal turns ------------------------------------------------------
    def training_step(
        self, batch: dict[str, torch.Tensor], info: StepInfo, hooks: Any
    ) -> tuple[ModelOutput, torch.Tensor]:
        ctx = self.ctx
        model, opt, head = ctx.model, ctx.optimizer, self.head
        autocast = ctx.autocast
        y = batch["label"]
        alpha = compute_alpha(info.batch_index, info.batches_per_epoch)
        self.log("mla/alpha", alpha)
        with autocast():
            feats = model.encode(batch)
        detached = {m: z.detach() for m, z in feats.items()}
        turn_logits, losses = {}, []
        for m in self.modalities:
            opt.zero_grad(set_to_none=True)  # only encoder m and the head receive gradient this turn
            with autocast():
                logits = head(feats[m])
                loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            out_m = ModelOutput(
                features=detached,
                logits=logits.detach(),
                unimodal_logits={k: (logits.detach() if k == m else None) for k in self.modalities},
            )
            hooks.on_after_backward(out_m, batch, info)
            if self.turns > 0:
                self.project(detached[m].float().mean(0), alpha, m)
            self.turns += 1
            hooks.on_before_optimizer_step(out_m, batch, info)
            opt.step()
            self.log(f"mla/loss/{m}", loss.detach())
            turn_logits[m] = logits.detach()
            losses.append(loss.detach())
        opt.zero_grad(set_to_none=True)
        self.log("mla/proj_gain", compute_projector_gain(self.proj))
        fused = torch.stack(list(turn_logits.values())).sum(0)
        return ModelOutput(features=detached, logits=fused, unimodal_logits=turn_logits), torch.stack(losses).mean()

    @torch.no_grad()
    def project(self, r: torch.Tensor, alpha: float, modality: str) -> None:
        """Update P with the turn's mean feature ``r`` and project the shared head's weight gradient."""
        self.proj = compute_projector_update(self.proj, r, alpha)
        g = self.head.weight.grad
        if g is None:
            return
        gp = g.float() @ self.proj.t()
        gain = compute_projector_gain(self.proj)
        self.log(f"mla/removed_frac/{modality}", 1.0 - gp.norm() / (g.float().norm() * gain).clamp_min(1e-30))
        if self.config.projection == "replace":
            g.copy_(gp)
        elif self.config.projection == "add":
            g.add_(gp)

    # ----- test-time fusion ----------------------------------------------------------------------------
    def fuse_logits(self, uni: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused logits ``(B, C)`` and weights ``(M, B)`` from per-modality logits ``(M, B, C)``."""
        if self.config.fusion_mode == "dynamic":
            w = compute_entropy_weights(uni)
        else:
            w = self.fixed.view(-1, 1).expand(uni.shape[0], uni.shape[1])
        return (w.unsqueeze(-1) * uni.float()).sum(0), w

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ModelOutput:
        feats = model.encode(batch)
        uni = {m: self.head(feats[m]) for m in self.modalities}
        logits, _ = self.fuse_logits(torch.stack([uni[m] for m in self.modalities]))
        return ModelOutput(features=feats, logits=logits, unimodal_logits=uni)

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        ctx = self.ctx
        model = ctx.model
        wsum = torch.zeros(len(self.modalities), device=ctx.device)
        correct = {"dynamic": torch.zeros((), device=ctx.device), "fixed": torch.zeros((), device=ctx.device)}
        n = 0
        with eval_mode(model):
            for batch in ctx.splits["val"].batches(ctx.eval_batch_size):
                feats = model.encode(batch)
                uni = torch.stack([self.head(feats[m]).float() for m in self.modalities])
                w = compute_entropy_weights(uni)
                wsum += w.sum(1)
                y = batch["label"]
                correct["dynamic"] += (((w.unsqueeze(-1) * uni).sum(0)).argmax(1) == y).sum()
                correct["fixed"] += (((self.fixed.view(-1, 1, 1) * uni).sum(0)).argmax(1) == y).sum()
                n += int(y.shape[0])
        for j, m in enumerate(self.modalities):
            self.log(f"mla/weight/{m}", wsum[j] / max(1, n))
        self.log("val/acc_dynamic", correct["dynamic"] / max(1, n))
        self.log("val/acc_fixed", correct["fixed"] / max(1, n))

    def state_dict(self) -> dict[str, Any]:
        return {"proj": self.proj.cpu().clone(), "turns": self.turns}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.proj = state["proj"].to(self.ctx.device).clone()
        self.turns = int(state["turns"])
