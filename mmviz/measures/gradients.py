"""Norms and cosines of gradients (and of parameter differences) given as lists of tensors, kept on the device."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def compute_group_norm(tensors: Sequence[torch.Tensor | None], device: torch.device | None = None) -> torch.Tensor:
    """L2 norm of a group of tensors taken as one vector (``None`` entries skipped), as a 0-d float tensor.

    Stays on the tensors' device (no host sync): per-tensor norms with ``torch._foreach_norm``, then the norm of
    those norms. Used for gradient norms and for distances between parameter sets. An empty group gives 0 on
    ``device``.
    """
    gs = [g for g in tensors if g is not None]
    if not gs:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)).float())


def compute_grad_cosine(
    g1: Sequence[torch.Tensor | None],
    g2: Sequence[torch.Tensor | None],
    eps: float = 1e-12,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Cosine between two gradients given as aligned lists of tensors (``None`` = zero), as a 0-d tensor.

    >>> float(compute_grad_cosine([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]))  # doctest: +ELLIPSIS
    0.7071...
    """
    pairs = [(a, b) for a, b in zip(g1, g2, strict=True) if a is not None and b is not None]
    if not pairs:
        return torch.zeros((), device=device)
    dot = torch.stack([(a.float() * b.float()).sum() for a, b in pairs]).sum()
    n1 = compute_group_norm(g1)
    n2 = compute_group_norm(g2)
    return dot / (n1 * n2).clamp_min(eps)
