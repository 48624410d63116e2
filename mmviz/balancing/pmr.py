"""PMR: prototypical modal rebalance (METHODS.md §6)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.common import EPS, compute_confidence_scores, compute_ratios
from mmviz.balancing.registry import METHODS
from mmviz.balancing.settings import ModulationWindow
from mmviz.config import param
from mmviz.contracts import EvalResult, ModelOutput, StepInfo, TrainContext
from mmviz.measures import compute_class_means, compute_prototype_drift, extract_features
from mmviz.recipes import Recipe, RecipeSetting


@dataclasses.dataclass(frozen=True)
class PMRConfig(RecipeSetting, ModulationWindow):
    """Settings of PMR."""

    alpha: float = param(
        1.0,
        "Strength alpha of the slower modality's prototypical cross-entropy (code default 1; "
        "scripts 2-5; BalanceMM 0.6).",
        low=0.0,
        high=20.0,
    )
    coefficient: str = param(
        "step",
        "Shape f of beta = alpha * f(rho - 1): 'step' (official code: alpha or 0), "
        "'tanh' or 'linear' (paper: grows with the imbalance).",
        choices=("step", "tanh", "linear"),
    )
    momentum_coef: float = param(
        0.2, "EMA momentum mu of the prototypes: c <- (1 - mu) c_new + mu c_old.", low=0.0, high=1.0
    )
    first_update: str = param(
        "replace",
        "The prototype update after the first epoch: 'replace' the initial prototypes by the fresh class means "
        "(official code: no blend while its 0-based epoch is 0) or 'blend' them with the EMA like later updates.",
        choices=("replace", "blend"),
    )
    proto_fraction: float = param(
        0.1,
        "Fraction of training batches used to recompute the prototypes each epoch.",
        low=0.0,
        low_open=True,
        high=1.0,
    )
    temperature: float = param(
        1.0,
        "Temperature T of softmax(-distance / T) (the code's flag is unused, i.e. 1).",
        low=0.0,
        low_open=True,
        high=1000.0,
        log=True,
    )
    modulation_starts: int = param(
        1, "First epoch (1-based, inclusive) with the prototypical loss.", low=1, high=100000
    )
    modulation_ends: int = param(
        100000, "Last epoch (inclusive) with the prototypical loss (default: the whole run).", low=1, high=100000
    )
    entropy_weight: float = param(
        0.0,
        "Weight of the paper-only entropy regulariser on the leading modality's "
        "prototype distribution (0 = off, as in the released code).",
        low=0.0,
        high=10.0,
    )
    entropy_epochs: int = param(
        5, "Epochs (from the start) during which the entropy regulariser acts.", low=0, high=100000
    )


def compute_prototype_update(fresh: torch.Tensor, old: torch.Tensor, present: torch.Tensor, mu: float) -> torch.Tensor:
    """EMA step of the prototypes: ``c <- (1 - mu) c_fresh + mu c_old`` for sampled classes, ``c_old`` otherwise.

    ``mu = 0`` replaces (the official code's update while its 0-based epoch is 0).

    >>> compute_prototype_update(torch.tensor([[4.0]]), torch.tensor([[0.0]]), torch.tensor([[True]]), 0.25)
    tensor([[3.]])
    """
    return torch.where(present, (1.0 - mu) * fresh + mu * old, old)


def compute_prototype_logits(z: torch.Tensor, prototypes: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``-||z_i - c_k||_2 / T`` for features ``(B, D)`` and prototypes ``(C, D)`` -> ``(B, C)``."""
    return -torch.cdist(z.float(), prototypes.float()) / temperature


def compute_pmr_coefficients(scores: dict[str, torch.Tensor], alpha: float, shape: str) -> dict[str, torch.Tensor]:
    """PMR's beta per modality: ``alpha * f(lead - 1)`` where ``lead = max_{j != m} s^j / s^m > 1``, else 0.

    With two modalities this is the paper's rule: when ``rho^a = s^a / s^v > 1`` the slower modality v gets
    ``beta^v = alpha * f(rho^a - 1)`` and a gets 0. ``f`` is ``step`` (1, the code), ``tanh`` or ``linear``.
    """
    out = {}
    for m, s in scores.items():
        lead = torch.stack([scores[j] for j in scores if j != m]).max() / s.clamp_min(EPS)
        gap = lead - 1.0
        f = {"step": torch.ones_like(gap), "tanh": torch.tanh(gap), "linear": gap}[shape]
        out[m] = torch.where(gap > 0, alpha * f, torch.zeros_like(gap))
    return out


@METHODS.register("pmr", kind="objective")
class PMR(BalancingMethod):
    """PMR (Fan et al., "PMR: Prototypical Modal Rebalance for Multimodal Learning", CVPR 2023).

    Class prototypes (class-mean features per modality) are computed before training and after every
    epoch from a fixed fraction of the training batches, and smoothed with an EMA. Each step, the
    prototype classifier ``q^m = softmax(-||z^m - c^m_k|| / T)`` gives every modality a score
    ``s^m = sum_i q^m_{i,y_i}`` that does not depend on the fused head; a modality behind the leader gets
    a prototypical cross-entropy ``L_PCE^m = -mean log q^m_{y}`` with weight ``beta^m``, so the loss is
    ``CE(o, y) + sum_m beta^m L_PCE^m``. Default: the released code's step coefficient (``beta = alpha``
    for the slower modality, 0 for the leader) with the code's argparse defaults alpha = 1 and momentum
    0.2; ``tanh`` and ``linear`` (unbounded) follow the paper's smooth rule.
    Pitfalls decided: the paper-only entropy regulariser on the leader (``- mu_e H(q^u)`` in the first
    ``entropy_epochs``) is offered but off by default, as it is absent from every release; prototypes
    are computed in eval mode without gradients from the first ``floor(N_b * fraction)`` (at least 1)
    shuffled training batches drawn with the method's own generator, so the training data order is untouched,
    and a class missing from that sample keeps its previous prototype (the mean sampled feature before
    the first one exists); the softmax temperature (unused flag in the code) is exposed, default 1;
    distances use ``torch.cdist`` instead of a Python loop. With three modalities every modality behind
    the leader is pulled by its own PCE (BalanceMM instead switches to OGM-style scaling). Works with any
    fusion, since prototypes use features only. Logs ``coef/pmr/<m>`` (beta), ``pmr/ratio/<m>``,
    ``pmr/score/<m>``, ``pmr/pce/<m>`` every step, ``pmr/entropy/<m>`` when the regulariser is on, and
    ``pmr/proto_drift/<m>`` at each prototype update.

    First update: the official ``calculate_prototype`` (fanyunfeng-bit/Modal-Imbalance-PMR @3615e489,
    ``main_Prototype_grad.py`` lines 435-440) blends only when its 0-based epoch is > 0; it is called before
    training and after epoch 0 with ``epoch = 0``, so the update after the first epoch replaces the initial
    prototypes. ``first_update=replace`` (default) does the same; ``blend`` blends from the first update on.

    Recipes: the default ``recipe=quick`` (Adam 1e-3, batch 64, 30 epochs, the loss over the whole run, the
    argparse alpha 1 and momentum 0.2) suits mmviz's small CPU data; ``recipe=paper`` is the official CREMA-D
    script's: SGD lr 1e-3 (``bash.sh`` line 58), momentum 0.9, weight decay 1e-4, StepLR(70, x0.1) (lines
    464-465 and argparse 44-45 of ``main_Prototype_grad.py``), batch 64, 150 epochs, alpha 3, prototype
    momentum 0, PCE in 0-based epochs 0-100, i.e. our 1-101.
    """

    config_cls = PMRConfig
    paper_recipe = Recipe(
        {
            "optim": {
                "name": "sgd",
                "lr": 1e-3,
                "momentum": 0.9,
                "weight_decay": 1e-4,
                "schedule": "step",
                "step_size": 70,
                "gamma": 0.1,
            },
            "train": {"epochs": 150, "batch_size": 64},
            "method": {"alpha": 3.0, "momentum_coef": 0.0, "modulation_starts": 1, "modulation_ends": 101},
        },
        "fanyunfeng-bit/Modal-Imbalance-PMR@3615e489 bash.sh L58 (CREMA-D Proto: lr 1e-3, 150 epochs, "
        "modulation 0-100, alpha 3, momentum_coef 0), main_Prototype_grad.py L36-45 (SGD, batch 64, StepLR 70 x0.1), "
        "L464-465 (momentum 0.9, wd 1e-4)",
        "the script runs FiLM fusion; the recipe keeps the run's fusion (model.fusion).",
    )

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self._gen = torch.Generator().manual_seed(int(ctx.seed) + 7919)
        self.prototypes: dict[str, torch.Tensor] = {}
        self.update_prototypes()

    # ----- prototypes ---------------------------------------------------------------------------
    @torch.no_grad()
    def update_prototypes(self, blend: bool = True) -> None:
        """Recompute the prototypes from a fraction of the training batches (eval mode); EMA-blend them with the
        previous ones when ``blend`` (else replace every class that was sampled)."""
        ctx, cfg = self.ctx, self.config
        split = ctx.splits["train"]
        n_batches = max(1, int(split.num_batches(ctx.batch_size) * cfg.proto_fraction))
        feats, y = extract_features(
            ctx.model,
            split.batches(ctx.batch_size, self._gen),
            ctx.modalities,
            autocast=ctx.autocast,
            limit=n_batches,
            to_cpu=False,
        )
        for m in ctx.modalities:
            z = feats[m]
            fresh, counts = compute_class_means(z, y, ctx.num_classes)
            present = (counts > 0).unsqueeze(1)
            old = self.prototypes.get(m)
            if old is None:
                self.prototypes[m] = torch.where(present, fresh, z.mean(0, keepdim=True))
                continue
            self.prototypes[m] = compute_prototype_update(fresh, old, present, cfg.momentum_coef if blend else 0.0)
            everyone = torch.ones(ctx.num_classes, dtype=torch.bool, device=old.device)
            self.log(f"pmr/proto_drift/{m}", compute_prototype_drift(old, self.prototypes[m], everyone))

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: EvalResult) -> None:
        self.update_prototypes(blend=not (epoch == 1 and self.config.first_update == "replace"))

    # ----- loss ---------------------------------------------------------------------------------
    def compute_loss(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> torch.Tensor:
        cfg = self.config
        y = batch["label"]
        loss = F.cross_entropy(out.logits, y)
        log_q = {
            m: F.log_softmax(compute_prototype_logits(out.features[m], self.prototypes[m], cfg.temperature), dim=1)
            for m in self.ctx.modalities
        }
        scores = compute_confidence_scores(log_q, y)  # OGM-GE's score on the prototype logits (log_softmax: same)
        ratios = compute_ratios(scores)
        betas = compute_pmr_coefficients(scores, cfg.alpha, cfg.coefficient)
        active = cfg.active(info.epoch)
        entropy_on = cfg.entropy_weight > 0 and info.epoch <= cfg.entropy_epochs
        for m, lq in log_q.items():
            pce = F.nll_loss(lq, y)
            beta = betas[m] if active else torch.zeros_like(betas[m])
            loss = loss + beta * pce
            if entropy_on:  # paper only: raise the entropy of the leading modality's prototype distribution
                entropy = -(lq.exp() * lq).sum(1).mean()
                loss = loss - cfg.entropy_weight * (ratios[m] > 1).to(entropy.dtype) * entropy
                self.log(f"pmr/entropy/{m}", entropy.detach())
            self.log(f"pmr/score/{m}", scores[m])
            self.log(f"pmr/ratio/{m}", ratios[m])
            self.log(f"pmr/pce/{m}", pce.detach())
            self.log(f"coef/pmr/{m}", beta)
        return loss

    # ----- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "prototypes": {m: p.detach().cpu().clone() for m, p in self.prototypes.items()},
            "generator": self._gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.ctx.device if self.ctx is not None else "cpu"
        self.prototypes = {m: p.to(device) for m, p in state["prototypes"].items()}
        self._gen.set_state(state["generator"])
