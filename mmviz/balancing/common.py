"""Small pure helpers shared by the balancing methods: confidence scores, imbalance ratios, parameter choice.

Everything here works on tensors and never calls ``.item()``, so a GPU step does not sync.
"""

from __future__ import annotations

import torch
from torch import nn

from mmviz.scores import confidence_scores

EPS = 1e-8


def in_window(epoch: int, start: int, end: int) -> bool:
    """Whether 1-based ``epoch`` lies in the inclusive modulation window ``[start, end]``."""
    return start <= epoch <= end


def compute_confidence_scores(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """OGM-GE's score per modality, ``s^m = sum_i softmax(o^m_i)_{y_i}``, by name (detached, 0-d tensors).

    Args:
        logits: per modality ``(B, C)`` logits.
        labels: ``(B,)`` class indices.
    """
    return dict(zip(logits, confidence_scores(list(logits.values()), labels).unbind(), strict=True))


def compute_ratios(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's score over the lowest score among the *other* modalities.

    With two modalities this is the paper's ``rho^a = s^a / s^v`` and ``rho^v = s^v / s^a``; with three the
    leaders are compared with the weakest modality (ratio > 1) and the weakest with the runner-up (ratio < 1).
    """
    names = list(scores)
    out = {}
    for m in names:
        others = torch.stack([scores[j] for j in names if j != m])
        out[m] = scores[m] / others.min().clamp_min(EPS)
    return out


def conv_weights(module: nn.Module) -> list[nn.Parameter]:
    """The weights of every convolution (1-, 2- or 3-D) inside ``module``."""
    return [mod.weight for mod in module.modules() if isinstance(mod, nn.modules.conv._ConvNd)]


def select_parameters(module: nn.Module, mode: str) -> list[nn.Parameter]:
    """The parameters of an encoder that gradient modulation acts on.

    Args:
        module: the encoder.
        mode: ``conv_only`` (convolution weights only, as OGM-GE's code), ``all`` (every parameter) or
            ``auto`` (convolution weights when the encoder has any, else every parameter).
    """
    if mode == "all":
        return [p for p in module.parameters() if p.requires_grad]
    convs = [p for p in conv_weights(module) if p.requires_grad]
    if mode == "conv_only" or convs:
        return convs
    return [p for p in module.parameters() if p.requires_grad]


def grad_std(g: torch.Tensor) -> torch.Tensor:
    """Standard deviation of a gradient tensor (unbiased; 0 for a single element)."""
    return g.float().std(correction=1 if g.numel() > 1 else 0)
