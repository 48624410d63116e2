"""G-Blending: weights proportional to Delta G / Delta O^2, clipping and floor, re-estimation, heads, exact fork."""

import pytest
import torch
import torch.nn.functional as F

from mmviz.balancing.gblending import GBlendingConfig, compute_blend_weights
from mmviz.contracts import StepInfo
from mmviz.errors import ConfigError
from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.checkpoint import checkpoint_path, load_checkpoint
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit
from mmviz.training.runner import run_training

QUIET = [f"probes.{p}.enabled=false" for p in PROBES.names()]  # probes never change training

SMALL = ["data.n_train=200", "train.batch_size=32", *QUIET]


def test_weights_are_delta_g_over_delta_o_squared_normalised():
    dg, do = torch.tensor([0.2, 0.1, 0.3]), torch.tensor([0.1, -0.05, 0.3])
    w = compute_blend_weights(dg, do, min_delta_o=1e-3)
    raw = torch.tensor([0.2 / 0.01, 0.1 / 0.0025, 0.3 / 0.09])
    assert torch.allclose(w, raw / raw.sum()) and torch.isclose(w.sum(), torch.tensor(1.0))


def test_clipping_negative_gain_floor_and_no_gain():
    w = compute_blend_weights(torch.tensor([0.1, 0.1]), torch.tensor([0.0, 0.2]), min_delta_o=0.1)
    assert torch.allclose(w, torch.tensor([0.8, 0.2]))  # |Delta O| = 0 clipped to 0.1: 10 vs 2.5
    w = compute_blend_weights(torch.tensor([-0.3, 0.1, 0.2]), torch.tensor([0.1, 0.1, 0.1]), min_delta_o=0.01)
    assert float(w[0]) == 0.0 and torch.allclose(w[1:], torch.tensor([1 / 3, 2 / 3]))
    w = compute_blend_weights(torch.tensor([-0.3, 0.1, 0.2]), torch.tensor([0.1, 0.1, 0.1]), 0.01, min_weight=0.1)
    assert torch.allclose(w, torch.tensor([0.1, 0.1 + 0.7 / 3, 0.1 + 1.4 / 3])) and torch.isclose(
        w.sum(), torch.tensor(1.0)
    )
    assert compute_blend_weights(torch.tensor([-0.1, 0.0]), torch.tensor([0.1, 0.1]), 0.01) is None


def test_loss_heads_optimiser_and_reestimation():
    cfg = build_run_config("synthetic", "gblending", SMALL + ["method.super_epoch=2", "method.min_weight=0"], epochs=1)
    r = fit(cfg)
    method, ctx = r.method, r.method.ctx
    assert set(method.extra_modules()["heads"].keys()) == {"a", "b"}
    head_params = {id(p) for p in method.heads.parameters()}
    assert head_params == {id(p) for p in ctx.optimizer.param_groups[1]["params"]}
    assert torch.allclose(method.weights, torch.full((3,), 1 / 3))  # uniform until the first estimate (epoch 2)
    # loss = sum_k w_k CE(o_k, y) over the fused head and each modality's own head
    batch = ctx.splits["train"].subset(torch.arange(16))
    out = ctx.model(batch)
    y = batch["label"]
    method.weights = torch.tensor([0.5, 0.2, 0.3])
    loss = method.compute_loss(out, batch, StepInfo(0, 1, 0, 1, 1))
    expected = (
        0.5 * F.cross_entropy(out.logits, y)
        + 0.2 * F.cross_entropy(method.heads["a"](out.features["a"]), y)
        + 0.3 * F.cross_entropy(method.heads["b"](out.features["b"]), y)
    )
    assert torch.allclose(loss, expected)
    # re-estimation from hand-made losses at the window ends
    logged, events = [], []
    ctx.log, ctx.event = (lambda k, v: logged.append((k, v))), (lambda k, p: events.append((k, p)))
    method.anchor = {"train": torch.tensor([1.0, 1.0, 1.0]), "val": torch.tensor([1.2, 1.1, 1.0])}
    method.measure_losses = lambda: {"train": torch.tensor([0.2, 0.6, 0.9]), "val": torch.tensor([0.8, 0.8, 0.95])}
    method.on_epoch_end(1, StepInfo(0, 1, 0, 1, 1), None)
    assert not logged  # not a window end
    method.on_epoch_end(2, StepInfo(0, 2, 0, 1, 1), None)
    dg = torch.tensor([0.4, 0.3, 0.05])
    do = torch.tensor([0.6, 0.2, 0.05]) - torch.tensor([0.2, 0.1, 0.0])
    raw = dg / do**2
    assert torch.allclose(method.weights, raw / raw.sum())
    logs = dict(logged)
    assert torch.allclose(logs["gblending/delta_g/fused"], dg[0]) and torch.allclose(logs["gblending/delta_o/b"], do[2])
    assert torch.allclose(logs["gblending/ogr/a"], do[1] / dg[1])
    assert torch.allclose(logs["coef/gblending/fused"], method.weights[0])
    assert events and events[0][0] == "reweight"
    assert torch.equal(method.anchor["val"], torch.tensor([0.8, 0.8, 0.95]))


def test_config_ranges():
    with pytest.raises(ConfigError, match="min_weight"):
        GBlendingConfig(min_weight=0.5)


def test_trains_logs_its_keys_and_a_fork_resumes_exactly(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "gblending", SMALL + ["method.super_epoch=1"], epochs=2)
    parent = prepare_run(store, cfg)
    assert run_training(store, parent) == "finished"
    keys = set(store.metric_keys(parent))
    for k in ("a", "b", "fused"):
        assert {
            f"coef/gblending/{k}",
            f"gblending/delta_o/{k}",
            f"gblending/delta_g/{k}",
            f"gblending/ogr/{k}",
            f"gblending/loss/{k}",
        } <= keys
    assert (store.load_events(parent).kind == "reweight").sum() == 2
    child = prepare_run(store, cfg, parent_run_id=parent, fork_epoch=1)
    assert run_training(store, child) == "finished"
    end_p = load_checkpoint(checkpoint_path(store.run_dir(parent), 2))
    end_c = load_checkpoint(checkpoint_path(store.run_dir(child), 2))
    assert all(torch.equal(end_p["model"][k], end_c["model"][k]) for k in end_p["model"])
    assert torch.equal(end_p["method"]["weights"], end_c["method"]["weights"])
    assert all(torch.equal(end_p["method"]["heads"][k], end_c["method"]["heads"][k]) for k in end_p["method"]["heads"])
