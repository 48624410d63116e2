"""The OGM-GE confidence score, shared by the balancing methods and the ``score_ratio`` probe.

``s_m = sum_i softmax(o^m_i)[y_i]`` (Peng et al., CVPR 2022): how much probability modality m's own logits put on
the true classes of a batch. One implementation, so the dashboard's ``score/<m>`` is the quantity OGM-GE acts on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def confidence_scores(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Scores of several modalities at once, detached: ``(M,)`` on the logits' device (no host sync).

    Args:
        logits: per modality ``(B, C)`` logits, in modality order.
        labels: ``(B,)`` class indices.

    ``p(y | o) = exp(-CE(o, y))`` per sample, summed over the batch.
    """
    with torch.no_grad():
        ce = torch.stack([F.cross_entropy(o.detach().float(), labels, reduction="none") for o in logits])  # (M, B)
        return ce.neg_().exp_().sum(1)
