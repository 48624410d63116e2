"""Modality attribution: exact Shapley values over modality coalitions and the imbalance index built on them.

One implementation for every caller: AGM's per-sample Shapley responses (values are ``(B, C)`` logits tensors), the
``shapley`` probe's contributions to val accuracy (values are floats) and the analysis process, which recomputes
the same numbers from stored masked logits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Shapley values and the index are plain Python: the dashboard imports them without torch
    import torch


def coalitions(players: Sequence[str], empty: bool = True) -> list[frozenset[str]]:
    """Every subset of ``players`` as frozensets, smallest first (the empty set first when ``empty``)."""
    start = 0 if empty else 1
    return [frozenset(s) for r in range(start, len(players) + 1) for s in itertools.combinations(players, r)]


def compute_shapley(values: Mapping[frozenset[str], Any], players: Sequence[str]) -> dict[str, Any]:
    """Exact Shapley value of each player of a coalition game.

    ``phi_m = sum_{S subset of M minus m} |S|! (n - |S| - 1)! / n! * (v(S + m) - v(S))``.

    Args:
        values: ``v(S)`` for every non-empty subset ``S`` of ``players`` (frozensets): floats, or tensors of one
            shape (e.g. ``(B, C)`` logits, as AGM). ``v(empty)`` is taken as 0 when absent.
        players: the players (modalities) in order.

    Returns:
        ``{player: phi}``; the values sum to ``v(all) - v(empty)`` (efficiency).

    >>> v = {frozenset(): 0.1, frozenset("a"): 0.7, frozenset("b"): 0.3, frozenset("ab"): 0.9}
    >>> {k: round(x, 6) for k, x in compute_shapley(v, ["a", "b"]).items()}
    {'a': 0.6, 'b': 0.2}
    """
    n = len(players)
    phi: dict[str, Any] = {}
    for m in players:
        others = [p for p in players if p != m]
        total: Any = None
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for subset in itertools.combinations(others, r):
                s = frozenset(subset)
                gain = values[s | {m}] - values[s] if s or s in values else values[s | {m}]
                total = weight * gain if total is None else total + weight * gain
        phi[m] = total
    return phi


def compute_imbalance(phi: Mapping[str, float], eps: float = 1e-12) -> tuple[float, str | None, dict[str, float]]:
    """The imbalance index, the dominant modality's name and each modality's Shapley share.

    ``share_m = phi_m / sum_k |phi_k|`` (negative for a modality that lowers the accuracy) and

        ``index = (max_m phi_m - min_m phi_m) / (2 * max_m |phi_m|)``,

    which lies in ``[0, 1]`` and reads on one scale whatever the sign of the contributions:

    - 0: every modality contributes the same;
    - 0.5: the weakest modality contributes nothing (one modality carries all the accuracy);
    - between 0.5 and 1: the weakest modality *hurts* (its presence lowers the accuracy);
    - 1: the weakest modality takes away as much accuracy as the strongest adds (or more, relative to it).

    Two modalities that both help with shares ``s_a >= s_b`` give ``(s_a - s_b) / (2 s_a)``; e.g. Shapley values
    0.6 and 0.2 give shares 0.75 / 0.25 and index 1/3. The dominant modality is the one with the largest ``phi``
    (``None`` when no modality contributes anything; the shares are then equal and the index 0).

    >>> index, dominant, shares = compute_imbalance({"a": 0.6, "b": 0.2})
    >>> round(index, 4), dominant, {m: round(s, 4) for m, s in shares.items()}
    (0.3333, 'a', {'a': 0.75, 'b': 0.25})
    >>> [round(compute_imbalance({"a": 0.6, "b": b})[0], 4) for b in (0.6, 0.0, -0.3, -0.6)]
    [0.0, 0.5, 0.75, 1.0]
    """
    names = list(phi)
    vals = [float(phi[m]) for m in names]
    total = sum(abs(v) for v in vals)
    scale = max(abs(v) for v in vals) if vals else 0.0
    if total < eps or scale < eps:
        return 0.0, None, {m: 1.0 / len(names) for m in names}
    dominant = names[max(range(len(vals)), key=lambda i: vals[i])]
    index = (max(vals) - min(vals)) / (2.0 * scale)
    return min(1.0, max(0.0, index)), dominant, {m: v / total for m, v in zip(names, vals, strict=True)}


def compute_coalition_accuracies(
    logits: Mapping[frozenset[str], torch.Tensor], labels: torch.Tensor
) -> dict[frozenset[str], float]:
    """Accuracy of each coalition's fused logits ``(N, C)`` against ``labels`` ``(N,)`` (one host sync per set)."""
    total = max(1, int(labels.shape[0]))
    return {s: float((lg.argmax(1) == labels.to(lg.device)).sum()) / total for s, lg in logits.items()}
