"""Exact Shapley values and the imbalance index on toy games with known answers."""

import itertools

import pytest

from mmviz.probes.attribution import compute_imbalance, compute_shapley


def game(players, value):
    """Every coalition's value from ``value(frozenset)``."""
    return {
        frozenset(s): value(frozenset(s)) for r in range(len(players) + 1) for s in itertools.combinations(players, r)
    }


@pytest.mark.parametrize("players", [("a", "b"), ("a", "b", "c")])
def test_additive_game_gives_each_player_its_own_contribution(players):
    own = {"a": 0.4, "b": 0.15, "c": -0.05}
    v = game(players, lambda s: 0.1 + sum(own[p] for p in s))
    phi = compute_shapley(v, players)
    assert phi == pytest.approx({p: own[p] for p in players})


@pytest.mark.parametrize("players", [("a", "b"), ("a", "b", "c")])
def test_symmetric_game_gives_equal_shares(players):
    v = game(players, lambda s: [0.1, 0.5, 0.8, 0.9][len(s)])
    phi = compute_shapley(v, players)
    assert len(set(round(x, 12) for x in phi.values())) == 1
    index, _, shares = compute_imbalance(phi)
    assert index == pytest.approx(0.0) and all(s == pytest.approx(1 / len(players)) for s in shares.values())


def test_efficiency_and_a_hand_computed_three_player_game():
    acc = {"": 0.1, "a": 0.7, "b": 0.3, "c": 0.2, "ab": 0.85, "ac": 0.75, "bc": 0.4, "abc": 0.9}
    v = {frozenset(k): x for k, x in acc.items()}
    phi = compute_shapley(v, ["a", "b", "c"])
    assert sum(phi.values()) == pytest.approx(acc["abc"] - acc[""])
    # phi_a = 1/3 (v(a)-v()) + 1/6 (v(ab)-v(b)) + 1/6 (v(ac)-v(c)) + 1/3 (v(abc)-v(bc))
    expected_a = (0.6) / 3 + (0.55) / 6 + (0.55) / 6 + (0.5) / 3
    assert phi["a"] == pytest.approx(expected_a)


def test_two_player_game_by_hand():
    v = {frozenset(): 0.1, frozenset("a"): 0.7, frozenset("b"): 0.3, frozenset("ab"): 0.9}
    phi = compute_shapley(v, ["a", "b"])
    assert phi == pytest.approx({"a": 0.5 * (0.6 + 0.6), "b": 0.5 * (0.2 + 0.2)})


def test_imbalance_index_shares_and_dominant():
    index, dominant, shares = compute_imbalance({"a": 0.6, "b": 0.2})
    assert (index, dominant) == (pytest.approx(0.5), 0) and shares == pytest.approx({"a": 0.75, "b": 0.25})
    index, dominant, _ = compute_imbalance({"a": 0.0, "b": 0.3, "c": 0.0})
    assert (index, dominant) == (pytest.approx(1.0), 1)
    index, dominant, shares = compute_imbalance({"a": 0.5, "b": -0.5})  # b hurts as much as a helps
    assert index == pytest.approx(1.0) and shares == pytest.approx({"a": 0.5, "b": -0.5})
    index, _, shares = compute_imbalance({"a": 0.0, "b": 0.0})
    assert index == 0.0 and shares == {"a": 0.5, "b": 0.5}
    for phi in ({"a": 0.3, "b": 0.1, "c": -0.2}, {"a": 1.0, "b": 1.0, "c": 0.0}):
        assert 0.0 <= compute_imbalance(phi)[0] <= 1.0
