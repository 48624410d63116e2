"""CGGM: coefficients sum to M - 1 and favour the slower modality, the direction loss, encoder-gradient
scaling by rho * B, auxiliary classifiers on detached features, check-time errors and a run's keys."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmviz.balancing import create_method
from mmviz.balancing.cggm import CGGMConfig, compute_cggm_coefficients, compute_direction_loss
from mmviz.contracts import StepInfo
from mmviz.data import create_dataset
from mmviz.data.base import TensorSplit
from mmviz.data.synthetic import SyntheticConfig
from mmviz.errors import ConfigError
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.build import build_model, check_run_config
from mmviz.training.config import ModelConfig, build_run_config
from mmviz.training.context import create_context
from mmviz.training.loop import fit

NO_PROBES = [f"probes.{entry.name}.enabled=false" for entry in PROBES]


@pytest.mark.parametrize("delta", [[0.3, 0.1], [0.05, 0.2, 0.1], [0.2, -0.05], [0.0, 0.0, 0.4]])
def test_coefficients_sum_to_m_minus_one_and_the_faster_modality_gets_the_smaller(delta):
    d = torch.tensor(delta)
    b = compute_cggm_coefficients(d)
    assert math.isclose(float(b.sum()), len(delta) - 1, abs_tol=1e-5)
    order_d = torch.argsort(d, descending=True)
    assert torch.equal(torch.argsort(b), order_d)  # larger improvement -> smaller coefficient
    if len(delta) == 2:  # B^1 = delta^2 / (delta^1 + delta^2)
        assert math.isclose(float(b[0]), delta[1] / sum(delta), rel_tol=1e-5)


def test_direction_loss_formula():
    b = torch.tensor([0.25, 0.75])
    cos = torch.tensor([0.5, -1.0], requires_grad=True)
    loss = compute_direction_loss(b, cos)
    assert math.isclose(float(loss.detach()), ((0.25 + 0.75) - (0.25 * 0.5 - 0.75)) / 2)
    loss.backward()
    assert torch.allclose(cos.grad, -b / 2)  # the gradient pushes each cosine up in proportion to B^m


def make_ctx(direction="gradient", n_modalities=2):
    cfg = SyntheticConfig(preset="custom", n_modalities=n_modalities, n_train=64)
    data = create_dataset("synthetic", cfg)
    torch.manual_seed(0)
    model = build_model(ModelConfig(), data)
    logged = []
    ctx = create_context(
        model,
        data,
        {"train": TensorSplit(data, data.splits["train"], "cpu")},
        torch.device("cpu"),
        log=lambda k, v: logged.append((k, v)),
        seed=0,
    )
    method = create_method("cggm", CGGMConfig(direction=direction, rho=1.3))
    method.setup(ctx)
    return method, ctx, logged


@pytest.mark.parametrize("direction", ["gradient", "code"])
def test_encoder_gradients_are_scaled_by_rho_b_and_the_aux_classifiers_learn_alone(direction):
    method, ctx, logged = make_ctx(direction, n_modalities=3)
    model = ctx.model
    batch = next(ctx.splits["train"].batches(32, torch.Generator().manual_seed(0)))
    info = StepInfo(0, 1, 0, 2, 1)
    out = model(batch)
    loss = method.compute_loss(out, batch, info)
    model.zero_grad(set_to_none=True)
    loss.backward()
    # the direction term is part of the loss and the aux classifiers got no gradient from it
    assert all(p.grad is None for p in method.aux.parameters())
    assert loss.item() > F.cross_entropy(out.logits, batch["label"]).item() - 1e-6
    before = {m: [p.grad.clone() for p in model.encoder_parameters(m)] for m in ctx.modalities}
    head_before = [p.grad.clone() for p in model.head_parameters()]
    aux_before = [p.detach().clone() for p in method.aux.parameters()]
    coef = method.coef.clone()
    assert math.isclose(float(coef.sum()), 2.0, abs_tol=1e-4)  # first step: no clipping needed, sum = M - 1
    method.on_after_backward(out, batch, info)
    for j, m in enumerate(ctx.modalities):
        for g0, p in zip(before[m], model.encoder_parameters(m), strict=True):
            assert torch.allclose(p.grad, 1.3 * coef[j] * g0)
    assert all(torch.equal(g, p.grad) for g, p in zip(head_before, model.head_parameters(), strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(aux_before, method.aux.parameters(), strict=True))
    keys = {k for k, _ in logged}
    for m in ctx.modalities:
        assert {f"coef/cggm/{m}", f"cggm/coef_smooth/{m}", f"cggm/aux_acc/{m}", f"cggm/aux_delta/{m}"} <= keys
    assert "cggm/direction_loss" in keys


def test_raw_and_smoothed_coefficients_follow_the_accuracy_change():
    method, ctx, logged = make_ctx()
    batch = next(ctx.splits["train"].batches(64))
    out = ctx.model(batch)
    info = StepInfo(0, 1, 0, 1, 1)
    method.compute_loss(out, batch, info)
    acc = method.prev_acc.clone()  # this batch's aux accuracies (the classifiers do not change in between)
    method.config = CGGMConfig(smoothing=0.0)
    method.prev_acc = acc - torch.tensor([0.3, 0.1])
    method.compute_loss(out, batch, info)
    assert torch.allclose(method.coef, torch.tensor([0.25, 0.75]))  # a improved 3x faster -> 1/4 of the sum
    method.config = CGGMConfig(smoothing=0.9)
    method.ema_acc = acc - torch.tensor([0.1, 0.3])
    method.compute_loss(out, batch, info)
    assert torch.allclose(method.coef, torch.tensor([0.75, 0.25]), atol=1e-5)  # delta = 0.1 * (0.1, 0.3)
    assert math.isclose(float(dict(logged)["cggm/coef_smooth/b"]), 0.25, abs_tol=1e-5)


def test_code_direction_with_mismatched_widths_fails_at_check_time():
    with pytest.raises(ConfigError, match="aux_hidden"):
        check_run_config(build_run_config("synthetic", "cggm", ["method.direction=code", "method.aux_hidden=16"]))
    check_run_config(build_run_config("synthetic", "cggm", ["method.direction=code", "model.fusion=film"]))
    check_run_config(build_run_config("synthetic", "cggm", ["method.aux_hidden=16"]))  # gradient: any width


def test_a_run_logs_the_documented_keys(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "cggm", ["data.n_train=200", "train.batch_size=32", *NO_PROBES], epochs=2)
    run_id = store.create_run(
        config=cfg.to_dict(), name="t", dataset="synthetic", method="cggm", fusion="concat", modalities=["a", "b"]
    )
    fit(cfg, store, run_id, store.run_dir(run_id))
    df = store.load_metrics(run_id)
    steps = 2 * 7
    for m in ("a", "b"):
        for key in ("coef/cggm", "cggm/coef_smooth", "cggm/aux_acc", "cggm/aux_delta", "cggm/scale"):
            assert (df.key == f"{key}/{m}").sum() == steps, key
    assert (df.key == "cggm/direction_loss").sum() == steps
    coef = df[df.key.str.startswith("coef/cggm/")].value
    assert ((coef >= 0) & (coef <= 1)).all()
