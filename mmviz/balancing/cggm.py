"""CGGM: classifier-guided gradient modulation (METHODS.md §4)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmviz.balancing.base import BalancingMethod, check_requirements
from mmviz.balancing.configs import CGGMConfig
from mmviz.contracts import ModelOutput, ModelSpec, StepInfo, TrainContext
from mmviz.errors import ConfigError

EPS = 1e-8
_SEED_OFFSET = 0xC66  # the auxiliary classifiers' init uses its own seed and leaves the global RNG untouched


def compute_cggm_coefficients(delta: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """CGGM's magnitude coefficients ``B^m = (S - delta^m) / S`` with ``S = sum_j delta^j + eps``.

    The modality whose auxiliary accuracy improved more gets the smaller coefficient, and
    ``sum_m B^m = M - 1`` (up to ``eps``). Not clipped here.

    Args:
        delta: ``(M,)`` improvement of each auxiliary classifier's accuracy.
    """
    s = delta.sum() + eps
    return (s - delta) / s


def clip_coefficients(coef: torch.Tensor, mode: str, b_max: float) -> torch.Tensor:
    """``B`` clipped to ``[0, b_max]`` (``mode="clip"``) or unchanged (``"none"``, the official code).

    >>> clip_coefficients(torch.tensor([-0.5, 1.5]), "clip", 1.0).tolist(), clip_coefficients(
    ...     torch.tensor([-0.5, 1.5]), "none", 1.0).tolist()
    ([0.0, 1.0], [-0.5, 1.5])
    """
    return coef.clamp(0.0, b_max) if mode == "clip" else coef


def compute_direction_loss(coef: torch.Tensor, cosines: torch.Tensor) -> torch.Tensor:
    """``L_gm = (1/M) [sum_m |B^m| - sum_m B^m cos_m]`` (``coef`` detached, ``cosines`` carry the gradient)."""
    return (coef.abs().sum() - (coef * cosines).sum()) / coef.numel()


def make_aux_classifier(in_dim: int, hidden: int, num_classes: int) -> nn.Module:
    """Auxiliary classifier: ``Linear(in, hidden) -> ReLU -> Linear(hidden, C)``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class CGGM(BalancingMethod):
    """CGGM (Guo et al., "Classifier-guided Gradient Modulation for Enhanced Multimodal Learning", NeurIPS 2024).

    Each modality gets a small auxiliary classifier trained on its detached features with its own optimiser. The change
    of each classifier's batch accuracy tells how fast that modality is learning; every encoder gradient is multiplied
    by ``rho * B^m`` with ``B^m = (S - delta^m) / S``, ``S = sum_j delta^j``, so the faster-improving modality is slowed
    and the slower one boosted (``sum_m B^m = M - 1``). A direction loss ``lambda * L_gm`` with ``L_gm = (1/M)[sum |B^m|
    - sum B^m cos_m]`` is added to the fused cross-entropy. Default: the paper's direction term (cosine between the
    current-step gradients of the fused and auxiliary cross-entropies w.r.t. their logits, ``softmax(o) - onehot(y)``),
    EMA-smoothed accuracies (factor 0.99) and B clipped to [0, 1]: the per-batch accuracy change is mostly noise (about
    0.05 for a batch of 64 against a trend of 1e-3 per step), and since ``B^m = 1 - delta^m / S`` the modality with the
    noisier change takes most of S and gets B near 0 whatever its trend; with 0.9 that was the still-learning weak
    modality in our runs, 0.99 follows the trend. Pitfalls of the official code, decided: ``direction=code`` keeps its
    parameter cosine but builds it at the current step (the official term is built at step t-1 and added at step t); its
    fused-head weight is the modality's column block for concat, the modality's own head for sum, the shared head for
    shared_head, and the whole final linear for FiLM/gated (shapes must match, checked before training); the auxiliary
    classifiers are two-layer MLPs whose final layer maps hidden (default: the feature size) to C instead of the paper's
    transformers (our features are pooled vectors), and each layer is applied once (the official forward applies one
    linear twice); encoder groups come from the model's per-modality parameter lists, not name substrings; gradient
    clipping at 0.8 is optional and off by default so the comparison with the unclipped baseline isolates the method.
    Logs ``coef/cggm/<m>`` (raw B, clipped), ``cggm/coef_smooth/<m>``, ``cggm/scale/<m>`` (applied rho * B),
    ``cggm/aux_acc/<m>``, ``cggm/aux_delta/<m>``, ``cggm/aux_delta_smooth/<m>``, ``cggm/aux_loss/<m>``, ``cggm/cos/<m>``
    and ``cggm/direction_loss``.

    B clip: the official code (zrguo/CGGM @21e428cb, ``src/msatrain.py`` lines 106-122) uses
    ``B^m = (S - delta^m) / S`` unclipped; ``b_clip=none`` selects that variant, the default ``clip`` keeps B in
    [0, b_max] for the reason above. Recipes: the default ``recipe=quick`` (Adam 1e-3, batch 64, 30 epochs,
    smoothed and clipped B, paper's direction term, no gradient clip) suits mmviz's small data; ``recipe=paper``
    is the official MOSI/IEMOCAP setting (``run/mosi_run.py`` and ``run/iemo_run.py`` argparse lines 43-56;
    ``src/msatrain.py`` lines 21-33 and 126): Adam lr 1e-3, classifiers lr 5e-4, batch 64, 30 epochs, rho 1.3,
    lambda 0.2, gradient norm clipped to 0.8, raw per-batch accuracy change, unclipped B and the code's
    parameter-cosine direction term. Its ``ReduceLROnPlateau(patience 10)`` on the validation loss has no mmviz
    schedule and is left out (with patience 10 it can fire at most twice in 30 epochs). Optimiser: ``rho * B^m``
    scales encoder m's gradient, which SGD turns into a proportionally smaller or larger step, whereas Adam divides
    each parameter's step by the root of its running squared gradient, so a factor that stays near a constant is
    largely divided out; docs/results.md (premise section) measures CGGM under both on preset ``cotrain``.
    """

    config_cls = CGGMConfig

    @classmethod
    def check_compatible(cls, config: CGGMConfig, model: ModelSpec) -> None:
        super().check_compatible(config, model)
        if config.direction != "code":
            return
        check_requirements("Method", cls.name, frozenset({"final_linear"}), model)
        dims, modalities = model.feature_dims, model.modalities
        for m in modalities:
            hidden = config.aux_hidden or dims[m]
            want = dims[m] if "head_split" in model.capabilities else dims[modalities[-1]]
            if hidden != want:
                raise ConfigError(
                    f"The 'aux_hidden' parameter of {config.title()} gives modality {m!r} an auxiliary weight of "
                    f"width {hidden}, but the head weight of {model.label} it is compared with has width {want}. "
                    f"Set method.aux_hidden=0 or {want}, or use direction=gradient."
                )

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        cfg = self.config
        self.modalities = ctx.modalities
        dims = ctx.model.feature_dims
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(ctx.seed) + _SEED_OFFSET)
            self.aux = nn.ModuleDict(
                {m: make_aux_classifier(dims[m], cfg.aux_hidden or dims[m], ctx.num_classes) for m in self.modalities}
            ).to(ctx.device)
        self.aux_opt = torch.optim.Adam(self.aux.parameters(), lr=cfg.aux_lr)
        n = len(self.modalities)
        self.prev_acc = torch.zeros(n, device=ctx.device)
        self.ema_acc = torch.zeros(n, device=ctx.device)
        self.coef = torch.ones(n, device=ctx.device)
        self._aux_losses: list[torch.Tensor] = []
        if cfg.direction == "code":
            for m in self.modalities:
                if self.head_weight(m).shape != self.aux[m][-1].weight.shape:
                    raise ConfigError(
                        f"CGGM's direction=code needs the head weight for {m!r} "
                        f"{tuple(self.head_weight(m).shape)} to match the auxiliary classifier's "
                        f"{tuple(self.aux[m][-1].weight.shape)}. Use direction=gradient."
                    )

    def head_weight(self, modality: str) -> torch.Tensor:
        """The fused head's final weight that the official direction term compares with modality m's classifier."""
        model = self.ctx.model
        if "head_split" in model.capabilities:
            return model.head_weight(modality)
        return model.final_linear().weight

    def compute_loss(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> torch.Tensor:
        cfg = self.config
        y = batch["label"]
        loss = F.cross_entropy(out.logits, y)
        aux_logits = {m: self.aux[m](out.features[m].detach()) for m in self.modalities}
        self._aux_losses = [F.cross_entropy(aux_logits[m].float(), y) for m in self.modalities]
        with torch.no_grad():
            acc = torch.stack([(aux_logits[m].argmax(1) == y).float().mean() for m in self.modalities])
            delta = acc - self.prev_acc
            self.prev_acc = acc
            ema = cfg.smoothing * self.ema_acc + (1.0 - cfg.smoothing) * acc
            delta_smooth = ema - self.ema_acc
            self.ema_acc = ema
            coef_raw = clip_coefficients(compute_cggm_coefficients(delta), cfg.b_clip, cfg.b_max)
            coef_smooth = clip_coefficients(compute_cggm_coefficients(delta_smooth), cfg.b_clip, cfg.b_max)
            self.coef = coef_smooth if cfg.smoothing > 0 else coef_raw
        cosines = torch.stack([self.direction_cosine(m, out.logits, aux_logits[m], y) for m in self.modalities])
        direction = compute_direction_loss(self.coef, cosines.float())
        for j, m in enumerate(self.modalities):
            self.log(f"coef/cggm/{m}", coef_raw[j])
            self.log(f"cggm/coef_smooth/{m}", coef_smooth[j])
            self.log(f"cggm/scale/{m}", cfg.rho * self.coef[j])
            self.log(f"cggm/aux_acc/{m}", acc[j])
            self.log(f"cggm/aux_delta/{m}", delta[j])
            self.log(f"cggm/aux_delta_smooth/{m}", delta_smooth[j])
            self.log(f"cggm/aux_loss/{m}", self._aux_losses[j].detach())
            self.log(f"cggm/cos/{m}", cosines[j].detach())
        self.log("cggm/direction_loss", direction.detach())
        return loss + cfg.lam * direction if cfg.lam > 0 else loss

    def direction_cosine(self, modality: str, fused: torch.Tensor, aux: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """cos_m of the direction loss; carries gradient into the model only (the classifier side is detached)."""
        if self.config.direction == "code":
            w = self.head_weight(modality)
            return F.cosine_similarity(w.reshape(-1), self.aux[modality][-1].weight.detach().reshape(-1), dim=0)
        onehot = F.one_hot(y, fused.shape[1]).to(torch.float32)
        g_fused = F.softmax(fused.float(), dim=1) - onehot  # d CE / d logits, up to 1/B
        g_aux = (F.softmax(aux.detach().float(), dim=1) - onehot).reshape(-1)
        return F.cosine_similarity(g_fused.reshape(-1), g_aux, dim=0, eps=EPS)

    def on_after_backward(self, out: ModelOutput, batch: dict[str, torch.Tensor], info: StepInfo) -> None:
        cfg = self.config
        with torch.no_grad():
            for j, m in enumerate(self.modalities):
                factor = cfg.rho * self.coef[j]
                for p in self.encoder_params(m):
                    if p.grad is not None:
                        p.grad.mul_(factor)
        if cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.ctx.model.parameters(), cfg.clip_norm)
        # the auxiliary classifiers learn from the detached features with their own optimiser
        self.aux_opt.zero_grad(set_to_none=True)
        torch.stack(self._aux_losses).sum().backward()
        self.aux_opt.step()
        self._aux_losses = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "aux": {k: v.detach().cpu().clone() for k, v in self.aux.state_dict().items()},
            "aux_opt": self.aux_opt.state_dict(),
            "prev_acc": self.prev_acc.cpu().clone(),
            "ema_acc": self.ema_acc.cpu().clone(),
            "coef": self.coef.cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aux.load_state_dict(state["aux"])
        self.aux_opt.load_state_dict(state["aux_opt"])
        self.prev_acc = state["prev_acc"].to(self.ctx.device).clone()
        self.ema_acc = state["ema_acc"].to(self.ctx.device).clone()
        self.coef = state["coef"].to(self.ctx.device).clone()
