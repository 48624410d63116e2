"""Small pure helpers shared by the balancing methods: the modulation window and parameter choice.

Confidence scores and their ratios are :mod:`mmviz.measures.scores` (re-exported here under the names the
methods use).

Everything here works on tensors and never calls ``.item()``, so a GPU step does not sync.
"""

from __future__ import annotations

import torch
from torch import nn

from mmviz.measures.scores import EPS  # noqa: F401  (re-exported for the methods)
from mmviz.measures.scores import confidence_scores_by_name as compute_confidence_scores  # noqa: F401
from mmviz.measures.scores import score_ratios_by_name as compute_ratios  # noqa: F401


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
