"""AGM: Shapley responses sum to the fused output, kappa formula, gradient scaling, running means, end-to-end."""

import math

import pytest
import torch
import torch.nn.functional as F
from ctx_helpers import fake_ctx

from mmviz.balancing import create_method
from mmviz.balancing.agm import AGMConfig, compute_agm_coefficients, compute_shapley, scale_gradient
from mmviz.contracts import StepInfo
from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training
from models import MultimodalNet

QUIET = [f"probes.{p}.enabled=false" for p in PROBES.names()]  # probes never change training

INFO = StepInfo(0, 1, 0, 1, 1)


def make_ctx(model, logged):
    return fake_ctx(logged, model=model)


def test_two_player_shapley_matches_the_paper_and_sums_to_the_fused_output():
    fa, fb, fab = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    phi = compute_shapley({frozenset("a"): fa, frozenset("b"): fb, frozenset("ab"): fab}, ("a", "b"))
    assert torch.allclose(phi["a"], 0.5 * (fab - fb + fa)) and torch.allclose(phi["b"], 0.5 * (fab - fa + fb))
    assert torch.allclose(phi["a"] + phi["b"], fab)


def test_three_player_shapley_is_exact():
    x = {m: torch.randn(2, 3) for m in "abc"}
    subsets = [frozenset(s) for s in ("a", "b", "c", "ab", "ac", "bc", "abc")]
    additive = {s: sum(x[m] for m in s) for s in subsets}
    phi = compute_shapley(additive, ("a", "b", "c"))
    assert all(torch.allclose(phi[m], x[m], atol=1e-6) for m in "abc")  # additive game: phi_m = own part
    game = {s: torch.randn(2, 3) for s in subsets}
    phi = compute_shapley(game, ("a", "b", "c"))
    assert torch.allclose(sum(phi.values()), game[frozenset("abc")], atol=1e-6)


@pytest.mark.parametrize("fusion", ["concat", "film"])
@pytest.mark.parametrize("masked_forward", ["features", "eval"])
def test_responses_of_a_real_model_sum_to_its_output(fusion, masked_forward):
    torch.manual_seed(0)
    mods = [("a", "vector", (5,)), ("b", "vector", (4,))] + ([("c", "vector", (3,))] if fusion == "concat" else [])
    model = MultimodalNet(mods, 3, feature_dim=8, hidden_dim=16, fusion=fusion)
    method = create_method("agm", AGMConfig(masked_forward=masked_forward))
    method.setup(make_ctx(model, []))
    batch = {m: torch.randn(6, *shape) for m, _, shape in mods}
    out = model(batch)
    values = method.coalition_values(out, batch)
    assert len(values) == 2 ** len(mods) - 1
    phi = compute_shapley(values, model.modalities)
    assert torch.allclose(sum(phi.values()), out.logits, atol=1e-5)
    assert model.training and all(enc.training for enc in model.encoders.values())


def test_kappa_damps_a_modality_further_ahead_than_usual_and_boosts_the_other():
    scores = {"a": torch.tensor(0.5), "b": torch.tensor(1.5)}
    means = {"a": torch.tensor(0.8), "b": torch.tensor(1.2)}
    kappa, r, r_mean = compute_agm_coefficients(scores, means, 1.5)
    assert math.isclose(float(r["a"]), math.e, rel_tol=1e-6) and math.isclose(
        float(r_mean["a"]), math.exp(0.4), rel_tol=1e-6
    )
    assert math.isclose(float(kappa["a"]), math.exp(1.5 * (math.exp(0.4) - math.e)), rel_tol=1e-5)
    assert math.isclose(float(kappa["b"]), math.exp(1.5 * (math.exp(-0.4) - math.exp(-1.0))), rel_tol=1e-5)
    assert float(kappa["a"]) < 1 < float(kappa["b"])
    kappa, _, _ = compute_agm_coefficients(
        {"a": torch.tensor(5.0), "b": torch.tensor(0.0)}, {"a": torch.tensor(0.0), "b": torch.tensor(5.0)}, 0.5
    )
    assert math.isclose(float(kappa["a"]), math.exp(0.5 * 10), rel_tol=1e-5)  # clipped at 10


def test_scale_gradient_keeps_the_value_and_scales_the_gradient():
    x = torch.randn(3, requires_grad=True)
    y = scale_gradient(x * 2, torch.tensor(0.25))
    assert torch.equal(y, x.detach() * 2)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 0.5))


def test_loss_keeps_the_fused_value_scales_each_response_and_tracks_running_means():
    torch.manual_seed(0)
    model = MultimodalNet([("a", "vector", (5,)), ("b", "vector", (4,))], 3, feature_dim=8, hidden_dim=16)
    logged = []
    method = create_method("agm", AGMConfig(alpha=1.0))
    method.setup(make_ctx(model, logged))
    batches = [{"a": torch.randn(8, 5), "b": torch.randn(8, 4), "label": torch.randint(0, 3, (8,))} for _ in range(2)]
    for batch in batches:
        out = model(batch)
        loss = method.compute_loss(out, batch, INFO)
        assert torch.allclose(loss, F.cross_entropy(out.logits, batch["label"]), atol=1e-6)
    logs = [dict((k, v) for k, v in logged[i : i + 12]) for i in (0, 12)]
    for m in "ab":  # running_mean=previous (official): step 2 compares with step 1's loss, step 1 with 0
        assert float(logs[1][f"agm/score_mean/{m}"]) == pytest.approx(float(logs[0][f"agm/score/{m}"]))
        assert float(logs[0][f"agm/score_mean/{m}"]) == 0.0
        r0 = float(logs[0][f"agm/ratio/{m}"])  # r_mean = exp(0 - 0) = 1 on the first step, as the code
        assert float(logs[0][f"coef/agm/{m}"]) == pytest.approx(math.exp(1.0 * (1.0 - r0)), rel=1e-5)
    # the gradient reaching each response is scaled by its kappa: compare with a surrogate built by hand
    batch, y = batches[1], batches[1]["label"]
    model.zero_grad()
    logged.clear()
    method.compute_loss(model(batch), batch, INFO).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    kappa = {m: float(v) for k, v in logged if k.startswith("coef/agm/") for m in [k.rsplit("/", 1)[1]]}
    assert kappa["a"] != pytest.approx(1.0) and kappa["b"] != pytest.approx(1.0)
    model.zero_grad()
    out = model(batch)
    phi = compute_shapley(method.coalition_values(out, batch), ("a", "b"))
    o = out.logits.detach().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(o, y), o)
    sum(kappa[m] * (g * phi[m]).sum() for m in "ab").backward()
    assert all(torch.allclose(got[n], p.grad, atol=1e-6) for n, p in model.named_parameters())
    state = method.state_dict()
    assert state["count"] == 3 and set(state["score_sum"]) == {"a", "b"}


def test_trains_three_modalities_end_to_end_and_logs_its_keys(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(
        "synthetic",
        "agm",
        ["data.n_train=200", "train.batch_size=32", *QUIET, "data.preset=custom", "data.n_modalities=3"],
        epochs=2,
    )
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    keys = set(store.metric_keys(run_id))
    for q in ("coef/agm", "agm/score", "agm/score_mean", "agm/ratio", "agm/ratio_mean", "agm/acc"):
        assert {f"{q}/a", f"{q}/b", f"{q}/c"} <= keys
    kappa = store.load_metrics(run_id, key_prefix="coef/agm/").value
    assert kappa.notna().all() and (kappa > 0).all() and (kappa != 1).any()
