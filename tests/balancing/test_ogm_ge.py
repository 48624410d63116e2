"""OGM-GE: coefficients from score ratios, gradient scaling and GE noise, parameter choice, end-to-end run."""

import math

import pytest
import torch
import torch.nn.functional as F
from ctx_helpers import fake_ctx

from mmviz.balancing import create_method
from mmviz.balancing.common import compute_confidence_scores, compute_ratios, select_parameters
from mmviz.balancing.ogm_ge import OGMGEConfig, compute_ogm_coefficients
from mmviz.contracts import StepInfo
from mmviz.errors import ConfigError
from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.build import check_run_config
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training
from models import MultimodalNet, create_encoder

QUIET = [f"probes.{p}.enabled=false" for p in PROBES.names() if p != "score_ratio"]  # probes never change training


def make_ctx(model, logged):
    return fake_ctx(logged, model=model)


def test_scores_are_summed_true_class_probabilities():
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "b": torch.zeros(2, 2)}
    y = torch.tensor([0, 1])
    s = compute_confidence_scores(logits, y)
    expected = F.softmax(logits["a"], 1)[0, 0] + F.softmax(logits["a"], 1)[1, 1]
    assert torch.allclose(s["a"], expected) and torch.allclose(s["b"], torch.tensor(1.0))


def test_only_the_modality_ahead_is_damped_by_one_minus_tanh_alpha_rho():
    ratios = compute_ratios({"a": torch.tensor(6.0), "b": torch.tensor(3.0)})
    assert torch.allclose(ratios["a"], torch.tensor(2.0)) and torch.allclose(ratios["b"], torch.tensor(0.5))
    k = compute_ogm_coefficients(ratios, 0.8, "step")
    assert math.isclose(float(k["a"]), 1 - math.tanh(0.8 * 2.0), rel_tol=1e-6)
    assert float(k["b"]) == 1.0
    k = compute_ogm_coefficients(ratios, 0.8, "continuous")
    assert math.isclose(float(k["a"]), 1 - math.tanh(0.8 * 1.0), rel_tol=1e-6) and float(k["b"]) == 1.0
    # the step variant jumps at rho = 1, the continuous one does not
    just_above = {"a": torch.tensor(1.0001), "b": torch.tensor(0.9999)}
    assert float(compute_ogm_coefficients(just_above, 0.8, "step")["a"]) < 0.4
    assert float(compute_ogm_coefficients(just_above, 0.8, "continuous")["a"]) > 0.999


def test_three_modalities_compare_with_the_weakest_other():
    ratios = compute_ratios({"a": torch.tensor(6.0), "b": torch.tensor(3.0), "c": torch.tensor(4.0)})
    assert [round(float(ratios[m]), 4) for m in "abc"] == [2.0, 0.75, round(4 / 3, 4)]
    k = compute_ogm_coefficients(ratios, 0.5, "step")
    assert float(k["b"]) == 1.0 and float(k["a"]) < float(k["c"]) < 1.0


def _step(method_cfg, seed=0):
    torch.manual_seed(seed)
    model = MultimodalNet([("a", "vector", (5,)), ("b", "vector", (5,))], 3, feature_dim=8, hidden_dim=16)
    logged = []
    method = create_method("ogm_ge", method_cfg)
    method.setup(make_ctx(model, logged))
    batch = {"a": torch.randn(16, 5), "b": torch.randn(16, 5), "label": torch.randint(0, 3, (16,))}
    out = model(batch)
    # make 'a' confident on the true class and 'b' uniform: a is ahead
    out.unimodal_logits = {"a": 10.0 * F.one_hot(batch["label"], 3).float(), "b": torch.zeros(16, 3)}
    F.cross_entropy(out.logits, batch["label"]).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.on_after_backward(out, batch, StepInfo(0, 1, 0, 1, 1))
    return model, before, dict(logged)


def test_hook_scales_only_the_leading_encoder_without_noise():
    model, before, logs = _step(OGMGEConfig(alpha=0.8, ge=False))
    rho = float(logs["ogm_ge/ratio/a"])
    k = 1 - math.tanh(0.8 * rho)
    assert rho > 1 and math.isclose(float(logs["coef/ogm_ge/a"]), k, rel_tol=1e-5)
    for n, p in model.named_parameters():
        if n.startswith("encoders.a."):
            assert torch.allclose(p.grad, k * before[n], atol=1e-7)
        else:  # encoder b and the fusion head are untouched
            assert torch.equal(p.grad, before[n])


def test_ge_noise_has_the_std_of_the_original_gradient():
    model, before, logs = _step(OGMGEConfig(alpha=0.8, ge=True))
    k = float(logs["coef/ogm_ge/a"])
    w = dict(model.named_parameters())["encoders.b.net.1.weight"]  # 16 x 5: undamped, noise only
    g0 = before["encoders.b.net.1.weight"]
    noise = w.grad - g0
    assert 0.5 < float(noise.std() / g0.std()) < 1.6
    w = dict(model.named_parameters())["encoders.a.net.1.weight"]
    noise = w.grad - k * before["encoders.a.net.1.weight"]
    assert 0.5 < float(noise.std() / before["encoders.a.net.1.weight"].std()) < 1.6
    assert float(logs["ogm_ge/noise_sigma/a"]) > 0
    head = dict(model.named_parameters())["fusion.head.weight"]
    assert torch.equal(head.grad, before["fusion.head.weight"])


def test_parameter_choice_conv_weights_for_cnns_all_for_mlps():
    cnn = create_encoder("cnn2d", (1, 8, 8), 8, 16)
    convs = select_parameters(cnn, "auto")
    assert len(convs) == 3 and all(p.dim() == 4 for p in convs)
    assert len(select_parameters(cnn, "all")) == len(list(cnn.parameters()))
    mlp = create_encoder("mlp", (5,), 8, 16)
    assert len(select_parameters(mlp, "auto")) == len(list(mlp.parameters())) == 4
    assert select_parameters(mlp, "conv_only") == []


def test_outside_the_window_nothing_is_modulated():
    cfg = OGMGEConfig(alpha=0.8, modulation_starts=2, modulation_ends=3)
    model, before, logs = _step(cfg)
    assert float(logs["coef/ogm_ge/a"]) == 1.0
    assert all(torch.equal(p.grad, before[n]) for n, p in model.named_parameters())
    with pytest.raises(ConfigError, match="modulation_ends"):
        OGMGEConfig(modulation_starts=5, modulation_ends=2)


@pytest.mark.parametrize("fusion", ["film", "gated"])
def test_fusion_without_unimodal_logits_fails_at_check_time(fusion):
    cfg = build_run_config("synthetic", "ogm_ge", ["data.n_train=200", f"model.fusion={fusion}"], epochs=1)
    with pytest.raises(ConfigError, match="'concat' or 'sum'"):
        check_run_config(cfg)


def test_trains_end_to_end_and_logs_its_keys(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "ogm_ge", ["data.n_train=200", "train.batch_size=32", *QUIET], epochs=2)
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    df = store.load_metrics(run_id, key_prefix="coef/ogm_ge/")
    assert set(df.modality) == {"a", "b"} and len(df) == 2 * 2 * 7
    keys = set(store.metric_keys(run_id))
    for q in ("ogm_ge/ratio", "ogm_ge/noise_sigma", "coef/ogm_ge", "score"):
        assert {f"{q}/a", f"{q}/b"} <= keys
    k = store.load_metrics(run_id, keys=["coef/ogm_ge/a", "coef/ogm_ge/b"]).pivot(
        index="step", columns="key", values="value"
    )
    assert ((k <= 1) & (k > 0)).all().all() and (k.min(axis=1) < 1).any()  # some step damps a modality
    assert (k.max(axis=1) == 1).all()  # never both at once with two modalities
