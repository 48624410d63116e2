"""Pure maths of modality attribution: exact Shapley values and the imbalance index built on them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence


def compute_shapley(values: Mapping[frozenset[str], float], players: Sequence[str]) -> dict[str, float]:
    """Exact Shapley value of each player of a coalition game.

    ``phi_m = sum_{S subset of M minus m} |S|! (n - |S| - 1)! / n! * (v(S + m) - v(S))``.

    Args:
        values: ``v(S)`` for every subset ``S`` of ``players`` (as frozensets, the empty set included).
        players: the players (modalities) in order.

    Returns:
        ``{player: phi}``; the values sum to ``v(all) - v(empty)`` (efficiency).

    >>> v = {frozenset(): 0.1, frozenset("a"): 0.7, frozenset("b"): 0.3, frozenset("ab"): 0.9}
    >>> {k: round(x, 6) for k, x in compute_shapley(v, ["a", "b"]).items()}
    {'a': 0.6, 'b': 0.2}
    """
    n = len(players)
    phi = {}
    for m in players:
        others = [p for p in players if p != m]
        total = 0.0
        for r in range(len(others) + 1):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for subset in itertools.combinations(others, r):
                s = frozenset(subset)
                total += weight * (values[s | {m}] - values[s])
        phi[m] = total
    return phi


def compute_imbalance(phi: Mapping[str, float], eps: float = 1e-12) -> tuple[float, int, dict[str, float]]:
    """The imbalance index, the dominant modality and the Shapley shares.

    ``share_m = phi_m / sum_k |phi_k|`` and ``index = (max_m phi_m - min_m phi_m) / sum_k |phi_k|``, which lies in
    ``[0, 1]``: 0 when every modality contributes the same, 1 when one modality carries all of the accuracy and the
    others none (or when they hurt as much as it helps). With two modalities that both help, the index is
    ``|share_a - share_b|``. The dominant modality is the one with the largest ``phi`` (0-based position). When no
    modality contributes anything the shares are equal and the index is 0.

    >>> index, dominant, shares = compute_imbalance({"a": 0.6, "b": 0.2})
    >>> round(index, 6), dominant, {m: round(s, 6) for m, s in shares.items()}
    (0.5, 0, {'a': 0.75, 'b': 0.25})
    """
    names = list(phi)
    vals = [float(phi[m]) for m in names]
    total = sum(abs(v) for v in vals)
    dominant = max(range(len(vals)), key=lambda i: vals[i])
    if total < eps:
        return 0.0, dominant, {m: 1.0 / len(names) for m in names}
    index = (max(vals) - min(vals)) / total
    return min(1.0, max(0.0, index)), dominant, {m: v / total for m, v in zip(names, vals, strict=True)}
