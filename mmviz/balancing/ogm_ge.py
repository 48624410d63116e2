"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (METHODS.md §7.1)."""

from __future__ import annotations

import dataclasses

import torch

from mmviz.balancing.base import BalancingMethod
from mmviz.balancing.common import (
    compute_confidence_scores,
    compute_ratios,
    grad_std,
    select_parameters,
)
from mmviz.balancing.registry import METHODS
from mmviz.balancing.settings import ModulationWindow
from mmviz.config import param
from mmviz.contracts import ModelOutput, StepInfo, TrainContext
from mmviz.recipes import Recipe, RecipeSetting


@dataclasses.dataclass(frozen=True)
class OGMGEConfig(RecipeSetting, ModulationWindow):
    """Settings of OGM-GE."""

    alpha: float = param(
        0.8, "Modulation strength alpha (README: 0.8 CREMA-D, 0.1 VGGSound; BalanceMM 0.3).", low=0.0, high=10.0
    )
    coefficient: str = param(
        "step",
        "'step': k = 1 - tanh(alpha * rho) (paper/code, jumps at rho = 1); "
        "'continuous': k = 1 - tanh(alpha * (rho - 1)).",
        choices=("step", "continuous"),
    )
    ge: bool = param(True, "Add Gaussian noise N(0, std(g)^2) to the modulated gradients (GE); off = plain OGM.")
    params: str = param(
        "auto",
        "Encoder parameters modulated: 'auto' = conv weights when the encoder has convs, "
        "else all; 'conv_only' (official code); 'all'.",
        choices=("auto", "conv_only", "all"),
    )
    tie: str = param(
        "damp_first",
        "When every score is equal (rho = 1): 'damp_first' damps the first modality by 1 - tanh(alpha) as the "
        "official code's else-branch does; 'none' damps nobody.",
        choices=("damp_first", "none"),
    )
    modulation_starts: int = param(1, "First epoch (1-based, inclusive) with modulation.", low=1, high=100000)
    modulation_ends: int = param(
        100000, "Last epoch (inclusive) with modulation (default: the whole run).", low=1, high=100000
    )


def compute_ogm_coefficients(
    ratios: dict[str, torch.Tensor], alpha: float, shape: str, tie: str = "damp_first"
) -> dict[str, torch.Tensor]:
    """OGM-GE's gradient coefficient per modality: ``k = 1 - tanh(alpha * rho)`` where ``rho > 1``, else 1.

    Args:
        ratios: per modality the score ratio ``rho`` (0-d tensors, see :func:`compute_ratios`).
        alpha: modulation strength.
        shape: ``step`` (paper/code) or ``continuous`` (``1 - tanh(alpha * (rho - 1))``, no jump at 1).
        tie: ``damp_first``: when no ratio exceeds 1 (all scores equal) the first modality is damped as if its
            ratio exceeded 1 — the official code's ``if ratio_v > 1: ... else: damp a`` damps audio at
            ``ratio_v == 1``; ``none``: nobody is damped at a tie.

    >>> k = compute_ogm_coefficients({"a": torch.tensor(1.0), "v": torch.tensor(1.0)}, 0.8, "step")
    >>> round(float(k["a"]), 4), float(k["v"])
    (0.3359, 1.0)
    """
    out = {}
    names = list(ratios)
    all_tied = torch.stack([ratios[m] <= 1.0 for m in names]).all()
    for i, m in enumerate(names):
        rho = ratios[m]
        arg = alpha * rho if shape == "step" else alpha * (rho - 1.0)
        damped = rho > 1.0
        if tie == "damp_first" and i == 0:
            damped = damped | all_tied
        out[m] = torch.where(damped, 1.0 - torch.tanh(arg), torch.ones_like(rho))
    return out


@METHODS.register("ogm_ge", kind="gradient")
class OGMGE(BalancingMethod):
    """OGM-GE (Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022).

    After the backward pass of the ordinary fused loss, each modality's confidence on the batch is
    measured from its head-split logits, ``s^m = sum_i softmax(o^m_i)_{y_i}``, and the encoder of every
    modality that is ahead (``rho^m = s^m / min_{j != m} s^j > 1``) has its gradient multiplied by
    ``k^m = 1 - tanh(alpha * rho^m)``; Gaussian noise with the standard deviation of the unmodulated
    gradient is then added to the modulated parameters of every encoder (GE). The default is the
    paper's and code's step coefficient (``k`` jumps from 1 to ``1 - tanh(alpha)`` as ``rho`` crosses 1);
    ``coefficient=continuous`` uses ``1 - tanh(alpha * (rho - 1))`` instead; alpha defaults to the README's
    CREMA-D value 0.8 and the window to the whole run (the code's 0-50 of 100 epochs is a setting away).
    Pitfalls decided: the unimodal
    losses are never back-propagated (only scores are read); the noise variance is that of the
    *original* gradient, not ``k^2`` times it (as the code), drawn from torch's global generator (saved in
    checkpoints, so forks resume exactly); the official code modulates only 4-D conv
    weights, so ``params=auto`` does that for convolutional encoders and modulates every encoder
    parameter of MLP encoders (which have no convs); with three modalities each modality is compared
    with the weakest other one, so every modality ahead of the weakest is damped (two modalities: the
    paper exactly). With Adam (our default optimiser) a constant gradient scale largely cancels
    (official issue #26): expect weaker effects than with SGD. Needs per-modality logits (concat, sum,
    shared_head). Logs ``coef/ogm_ge/<m>`` (k), ``ogm_ge/ratio/<m>`` and ``ogm_ge/noise_sigma/<m>`` (mean
    noise std over the modulated tensors) every step; the scores themselves are the ``score_ratio`` probe's
    ``score/<m>`` (the same quantity, on by default).

    Recipes: the default ``recipe=quick`` (Adam 1e-3, batch 64, 30 epochs, modulation over the whole run) suits
    mmviz's small CPU datasets, where 100 SGD epochs would take most of a session; ``recipe=paper`` is the
    official code's: SGD lr 1e-3, momentum 0.9, weight decay 1e-4, StepLR(70, x0.1), batch 64, 100 epochs,
    alpha 0.8 (README's CREMA-D value) and modulation in the code's 0-based epochs 0-50, i.e. our 1-based 1-51
    (GeWu-Lab/OGM-GE_CVPR2022 @343dc1d9 ``main.py`` argparse lines 33-43, optimiser and scheduler lines
    246-247, README "alpha=0.8 for CREMA-D"). Tie: when both scores are equal the official code damps audio
    (its else-branch, ``main.py`` lines 119-124); ``tie=damp_first`` (default) does the same for the first
    modality, ``tie=none`` damps nobody.
    """

    config_cls = OGMGEConfig
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
            "train": {"epochs": 100, "batch_size": 64},
            "method": {"alpha": 0.8, "modulation_starts": 1, "modulation_ends": 51},
        },
        "GeWu-Lab/OGM-GE_CVPR2022@343dc1d9 main.py L33-43 (batch 64, 100 epochs, SGD lr 1e-3, StepLR 70 x0.1, "
        "modulation epochs 0-50 0-based), L246-247 (momentum 0.9, wd 1e-4), README (alpha 0.8 for CREMA-D)",
    )
    requires = frozenset({"unimodal_logits"})

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self._params = {m: select_parameters(ctx.model.encoder(m), self.config.params) for m in ctx.modalities}

    def on_after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        cfg = self.config
        scores = compute_confidence_scores(out.unimodal_logits, batch["label"])
        ratios = compute_ratios(scores)
        active = cfg.active(info.epoch)
        coefs = compute_ogm_coefficients(ratios, cfg.alpha, cfg.coefficient, cfg.tie)
        for m in self.ctx.modalities:
            k = coefs[m] if active else torch.ones_like(coefs[m])
            sigmas = self._modulate(self._params[m], k, add_noise=active and cfg.ge)
            self.log(f"ogm_ge/ratio/{m}", ratios[m])
            self.log(f"coef/ogm_ge/{m}", k)
            self.log(f"ogm_ge/noise_sigma/{m}", torch.stack(sigmas).mean() if sigmas else torch.zeros(()))

    @staticmethod
    @torch.no_grad()
    def _modulate(params: list[torch.nn.Parameter], k: torch.Tensor, add_noise: bool) -> list[torch.Tensor]:
        """``g <- k * g (+ N(0, std(g)^2))`` for every parameter; returns the noise standard deviations used."""
        sigmas = []
        for p in params:
            if p.grad is None:
                continue
            if add_noise:
                sigma = grad_std(p.grad) + 1e-8
                noise = torch.randn_like(p.grad) * sigma.to(p.grad.dtype)
                p.grad.mul_(k.to(p.grad.dtype)).add_(noise)
                sigmas.append(sigma)
            else:
                p.grad.mul_(k.to(p.grad.dtype))
        return sigmas
