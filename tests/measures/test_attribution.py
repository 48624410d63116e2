"""Exact Shapley values and the imbalance index on toy games with known answers."""

import itertools

import pytest
import torch

from mmviz.measures import compute_imbalance, compute_shapley


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


def test_shapley_of_tensor_values_without_the_empty_set_is_agms_responses():
    fa, fb, fab = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([3.0, 3.0])
    phi = compute_shapley({frozenset("a"): fa, frozenset("b"): fb, frozenset("ab"): fab}, ("a", "b"))
    assert torch.allclose(phi["a"], 0.5 * (fab - fb + fa)) and torch.allclose(phi["a"] + phi["b"], fab)


def test_imbalance_index_shares_and_dominant_by_name():
    index, dominant, shares = compute_imbalance({"a": 0.6, "b": 0.2})
    assert (index, dominant) == (pytest.approx(1 / 3), "a") and shares == pytest.approx({"a": 0.75, "b": 0.25})
    index, dominant, _ = compute_imbalance({"a": 0.0, "b": 0.3, "c": 0.0})
    assert (index, dominant) == (pytest.approx(0.5), "b")
    index, dominant, shares = compute_imbalance({"a": 0.5, "b": -0.5})  # b hurts as much as a helps
    assert index == pytest.approx(1.0) and shares == pytest.approx({"a": 0.5, "b": -0.5})
    index, dominant, shares = compute_imbalance({"a": 0.0, "b": 0.0})
    assert (index, dominant) == (0.0, None) and shares == {"a": 0.5, "b": 0.5}
    for phi in ({"a": 0.3, "b": 0.1, "c": -0.2}, {"a": 1.0, "b": 1.0, "c": 0.0}, {"a": -0.1, "b": -0.4}):
        assert 0.0 <= compute_imbalance(phi)[0] <= 1.0


def test_a_hurting_modality_reads_differently_from_one_that_helps_a_little():
    """The old index was exactly 1 for any phi_b <= 0; now it moves through 0.5 at phi_b = 0."""
    helps = compute_imbalance({"a": 0.6, "b": 0.01})
    nothing = compute_imbalance({"a": 0.6, "b": 0.0})
    hurts = compute_imbalance({"a": 0.6, "b": -0.01})
    hurts_more = compute_imbalance({"a": 0.6, "b": -0.3})
    assert helps[0] < nothing[0] < hurts[0] < hurts_more[0]
    assert (nothing[0], hurts_more[0]) == (pytest.approx(0.5), pytest.approx(0.75))
    assert helps[2]["b"] > 0 and nothing[2]["b"] == 0 and hurts[2]["b"] < 0
    assert compute_imbalance({"a": 0.3, "b": 0.3})[0] == 0.0
