"""The OGM-GE confidence score and the score ratio between modalities (one rule for any number of modalities).

``s_m = sum_i softmax(o^m_i)[y_i]`` (Peng et al., CVPR 2022): how much probability modality m's own logits put on
the true classes of a batch. The ratio ``rho_m = s_m / min_{k != m} s_k`` compares each modality with the weakest
*other* modality. With two modalities this is the paper's ``rho^a = s^a / s^v``. With three or more, every
modality ahead of the weakest has ``rho > 1`` (OGM-GE damps it; it "leads" for PMR) and the weakest modality's
ratio, below 1, compares it with the runner-up. OGM-GE, PMR and the ``score_ratio`` probe all use this rule, so
the dashboard's ``ratio/<m>`` is the quantity the methods act on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

EPS = 1e-8


def compute_confidence_scores(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Scores of several modalities at once, detached: ``(M,)`` on the logits' device (no host sync).

    Args:
        logits: per modality ``(B, C)`` logits, in modality order.
        labels: ``(B,)`` class indices.

    ``p(y | o) = exp(-CE(o, y))`` per sample, summed over the batch.
    """
    with torch.no_grad():
        ce = torch.stack([F.cross_entropy(o.detach().float(), labels, reduction="none") for o in logits])  # (M, B)
        return ce.neg_().exp_().sum(1)


def compute_score_ratios(scores: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Each modality's score over the lowest score among the *other* modalities, ``(M,)`` (see the module text).

    >>> [round(r, 4) for r in compute_score_ratios(torch.tensor([2.0, 1.0, 3.0])).tolist()]
    [2.0, 0.5, 3.0]
    """
    m = scores.shape[0]
    if m < 2:
        return torch.ones_like(scores)
    others = scores.unsqueeze(0).expand(m, m).clone()
    others.fill_diagonal_(float("inf"))
    return scores / others.min(1).values.clamp_min(eps)


def confidence_scores_by_name(logits: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`compute_confidence_scores` keyed by modality name (detached 0-d tensors)."""
    return dict(zip(logits, compute_confidence_scores(list(logits.values()), labels).unbind(), strict=True))


def score_ratios_by_name(scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`compute_score_ratios` keyed by modality name (0-d tensors)."""
    return dict(zip(scores, compute_score_ratios(torch.stack(list(scores.values()))).unbind(), strict=True))
