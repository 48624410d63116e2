"""Fusion modules: per-modality features ``{m: (B, D_m)}`` -> fused logits ``(B, C)``.

Each fusion says whether it allows an exact per-modality split of the logits (``has_unimodal``) and how
many modalities it takes. Formulas follow METHODS.md §1.2 and §1.4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# name -> (class, description)
FUSIONS: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register_fusion(name: str, description: str):
    """Register a fusion class under ``name`` (duplicate names are an error)."""

    def deco(cls):
        if name in FUSIONS:
            raise ValueError(f"fusion {name!r} is already registered")
        cls.name = name
        FUSIONS[name] = (cls, description)
        return cls

    return deco


def create_fusion(name: str, dims: dict[str, int], num_classes: int) -> nn.Module:
    """Build fusion ``name`` for feature sizes ``dims`` (ordered by modality)."""
    return FUSIONS[name][0](dims, num_classes)


class Fusion(nn.Module):
    """Base: ``forward(features) -> (logits (B, C), {m: (B, C) or None})``."""

    name = "fusion"
    has_unimodal = False
    # model-contract capabilities this fusion gives (mmviz.contracts.CAPABILITIES)
    capabilities: frozenset[str] = frozenset()
    min_modalities = 2
    max_modalities = 3

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes

    def final_linear(self) -> nn.Linear:
        """The last linear layer producing the logits (used e.g. by CGGM's direction term)."""
        raise NotImplementedError

    def head_weight(self, modality: str) -> torch.Tensor:
        """The head weight block ``(C, D_m)`` reading ``modality`` (fusions with capability ``head_split``)."""
        raise NotImplementedError(f"fusion {self.name!r} has no per-modality head split")

    def shared_head(self) -> nn.Linear:
        """The head shared by every modality (fusions with capability ``shared_head``)."""
        raise NotImplementedError(f"fusion {self.name!r} has no shared head")


@register_fusion("concat", "Late fusion: one linear head on the concatenated features (exact per-modality split).")
class ConcatFusion(Fusion):
    """``o = W [z^1; ...; z^M] + b``; per-modality logits ``o^m = W^m z^m + b / M`` sum exactly to ``o``."""

    has_unimodal = True
    capabilities = frozenset({"unimodal_logits", "head_split"})

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.head = nn.Linear(sum(dims.values()), num_classes)

    def head_weight(self, modality: str) -> torch.Tensor:
        start = 0
        for m in self.modalities:
            if m == modality:
                break
            start += self.dims[m]
        return self.head.weight[:, start : start + self.dims[modality]]

    def forward(self, feats: dict[str, torch.Tensor]):
        z = torch.cat([feats[m] for m in self.modalities], dim=1)
        logits = self.head(z)
        uni, start, k = {}, 0, len(self.modalities)
        for m in self.modalities:
            d = self.dims[m]
            uni[m] = feats[m] @ self.head.weight[:, start : start + d].t() + self.head.bias / k
            start += d
        return logits, uni

    def final_linear(self) -> nn.Linear:
        return self.head


@register_fusion("sum", "Sum of one linear head per modality (each head's output is that modality's logits).")
class SumFusion(Fusion):
    """``o = sum_m (W_m z^m + b_m)``; ``o^m = W_m z^m + b_m`` (full own bias, in training and evaluation)."""

    has_unimodal = True
    capabilities = frozenset({"unimodal_logits", "head_split"})

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def head_weight(self, modality: str) -> torch.Tensor:
        return self.heads[modality].weight

    def forward(self, feats: dict[str, torch.Tensor]):
        uni = {m: self.heads[m](feats[m]) for m in self.modalities}
        return torch.stack(list(uni.values())).sum(0), uni

    def final_linear(self) -> nn.Linear:
        return self.heads[self.modalities[0]]


@register_fusion("shared_head", "One linear head applied to each modality separately; fused = sum (needed by MLA).")
class SharedHeadFusion(Fusion):
    """``o^m = H(z^m)`` with one shared head ``H``; ``o = sum_m o^m``. All feature sizes must be equal."""

    has_unimodal = True
    capabilities = frozenset({"unimodal_logits", "head_split", "shared_head"})

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        sizes = set(dims.values())
        if len(sizes) != 1:
            raise ValueError(f"shared_head needs equal feature sizes, got {dims}")
        self.head = nn.Linear(sizes.pop(), num_classes)

    def forward(self, feats: dict[str, torch.Tensor]):
        uni = {m: self.head(feats[m]) for m in self.modalities}
        return torch.stack(list(uni.values())).sum(0), uni

    def final_linear(self) -> nn.Linear:
        return self.head

    def head_weight(self, modality: str) -> torch.Tensor:
        return self.head.weight

    def shared_head(self) -> nn.Linear:
        return self.head


@register_fusion("film", "FiLM: the first modality scales and shifts the second's features (no per-modality split).")
class FiLMFusion(Fusion):
    """``[gamma; beta] = W_f z^x + b_f``; ``o = W_o (gamma * z^y + beta) + b_o`` (x = first, y = second modality)."""

    max_modalities = 2

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        x, y = self.modalities
        self.film = nn.Linear(dims[x], 2 * dims[y])
        self.out = nn.Linear(dims[y], num_classes)

    def forward(self, feats: dict[str, torch.Tensor]):
        x, y = self.modalities
        gamma, beta = self.film(feats[x]).chunk(2, dim=1)
        return self.out(gamma * feats[y] + beta), {m: None for m in self.modalities}

    def final_linear(self) -> nn.Linear:
        return self.out


@register_fusion("gated", "Gated: the first modality gates the second's projected features (no per-modality split).")
class GatedFusion(Fusion):
    """``g = sigmoid(W_x z^x + b_x)``; ``o = W_o (g * (W_y z^y + b_y)) + b_o``."""

    max_modalities = 2

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        x, y = self.modalities
        hidden = dims[y]
        self.gate = nn.Linear(dims[x], hidden)
        self.proj = nn.Linear(dims[y], hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, feats: dict[str, torch.Tensor]):
        x, y = self.modalities
        g = torch.sigmoid(self.gate(feats[x]))
        return self.out(g * self.proj(feats[y])), {m: None for m in self.modalities}

    def final_linear(self) -> nn.Linear:
        return self.out
