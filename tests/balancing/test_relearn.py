"""Re-learning: purity and scaling, the exact blend towards theta_0, BN-buffer and optimiser-state choices,
alpha = tanh(lambda * gap), and the re-init event and keys of a real run."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmviz.balancing import create_method
from mmviz.balancing.relearn import RelearnConfig, compute_alpha
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit
from models import MultimodalNet

NO_PROBES = [f"probes.{entry.name}.enabled=false" for entry in PROBES]


def test_alpha_is_tanh_of_lambda_times_state():
    assert compute_alpha(0.0, 3.0) == 0.0
    assert math.isclose(compute_alpha(0.1, 3.0), math.tanh(0.3))
    assert compute_alpha(1.0, 50.0) <= 1.0


def make_setup(bn_buffers="blend", momentum="reset"):
    """A small net with a BatchNorm encoder ('img') and an MLP encoder ('vec'), trained a few SGD steps."""
    torch.manual_seed(0)
    model = MultimodalNet([("img", "image", (1, 8, 8)), ("vec", "vector", (6,))], 3, feature_dim=8, hidden_dim=8)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):
        batch = {"img": torch.randn(16, 1, 8, 8), "vec": torch.randn(16, 6)}
        loss = torch.nn.functional.cross_entropy(model(batch).logits, torch.randint(0, 3, (16,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    logged, events = [], []
    ctx = SimpleNamespace(
        model=model,
        optimizer=opt,
        init_state={
            m: {k.split(".", 2)[2]: v for k, v in init.items() if k.startswith(f"encoders.{m}.")}
            for m in ("img", "vec")
        },
        modalities=("img", "vec"),
        log=lambda k, v: logged.append((k, v)),
        event=lambda k, p: events.append((k, p)),
    )
    method = create_method("relearn", RelearnConfig(bn_buffers=bn_buffers, momentum=momentum))
    method.setup(ctx)
    return method, model, init, opt, logged, events


def test_blend_equals_alpha_theta0_plus_one_minus_alpha_theta_exactly():
    method, model, init, _, _, _ = make_setup()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    alpha = 0.37
    method.blend_encoder("img", alpha)
    after = model.state_dict()
    for name, _ in model.encoders["img"].named_parameters():
        key = f"encoders.img.{name}"
        assert torch.equal(after[key], alpha * init[key] + (1 - alpha) * before[key]), key
        assert not torch.equal(after[key], before[key])
    for key in before:
        if not key.startswith("encoders.img."):  # the other encoder and the fusion head are untouched
            assert torch.equal(after[key], before[key]), key
    rm = "encoders.img.net.1.running_mean"
    assert torch.equal(after[rm], alpha * init[rm] + (1 - alpha) * before[rm])
    assert torch.equal(
        after["encoders.img.net.1.num_batches_tracked"], before["encoders.img.net.1.num_batches_tracked"]
    )


def test_bn_buffers_keep_and_optimizer_state_reset_only_for_the_reinitialised_encoder():
    method, model, _, opt, _, _ = make_setup(bn_buffers="keep", momentum="reset")
    rm = model.encoders["img"].net[1].running_mean.clone()
    method.blend_encoder("img", 0.5)
    assert torch.equal(model.encoders["img"].net[1].running_mean, rm)
    assert all(p not in opt.state for p in model.encoders["img"].parameters())
    assert all("momentum_buffer" in opt.state[p] for p in model.encoders["vec"].parameters())
    assert all("momentum_buffer" in opt.state[p] for p in model.fusion.parameters())
    method, model, _, opt, _, _ = make_setup(momentum="keep")
    method.blend_encoder("img", 0.5)
    assert all("momentum_buffer" in opt.state[p] for p in model.encoders["img"].parameters())


def test_reinit_logs_alpha_from_the_gap_and_pulls_each_encoder_back(monkeypatch):
    method, model, _, _, logged, events = make_setup()
    diag = {"img": {"train": 0.9, "val": 0.6}, "vec": {"train": 0.5, "val": 0.45}}
    for d in diag.values():
        d["gap"] = abs(d["train"] - d["val"])
        d["alpha"] = compute_alpha(d["gap"], method.config.lam)
    monkeypatch.setattr(method, "diagnose", lambda: diag)
    alphas = method.reinit(10)
    log = dict(logged)
    for m in ("img", "vec"):
        assert math.isclose(alphas[m], math.tanh(3.0 * diag[m]["gap"]))
        assert log[f"coef/relearn/{m}"] == alphas[m] and math.isclose(log[f"relearn/gap/{m}"], diag[m]["gap"])
        # distance to theta_0 shrinks by exactly (1 - alpha)
        assert math.isclose(
            log[f"relearn/dist_after/{m}"], (1 - alphas[m]) * log[f"relearn/dist_before/{m}"], rel_tol=1e-4
        )
    assert events[0][0] == "reinit" and events[0][1]["alpha"] == alphas and method.count == 1


@pytest.mark.parametrize("diagnosis", ["purity_gap", "train_purity"])
def test_a_run_reinitialises_on_schedule_and_logs_the_documented_keys(tmp_path, diagnosis):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(
        "synthetic",
        "relearn",
        [
            "data.n_train=200",
            "train.batch_size=32",
            "method.reinit_every=1",
            "method.reinit_num=2",
            "method.reinit_timing=every",
            f"method.diagnosis={diagnosis}",
            "method.lam=1.0",
            *NO_PROBES,
        ],
        epochs=3,
    )
    run_id = store.create_run(
        config=cfg.to_dict(), name="t", dataset="synthetic", method="relearn", fusion="concat", modalities=["a", "b"]
    )
    result = fit(cfg, store, run_id, store.run_dir(run_id))
    df = store.load_metrics(run_id)
    for m in ("a", "b"):
        rows = {
            k: df[df.key == f"{k}/{m}"].value.to_numpy()
            for k in ("relearn/purity_train", "relearn/purity_val", "relearn/gap", "coef/relearn")
        }
        assert all(len(v) == 2 for v in rows.values())  # after epochs 1 and 2, not after the last one
        state = rows["relearn/gap"] if diagnosis == "purity_gap" else rows["relearn/purity_train"]
        assert np.allclose(rows["coef/relearn"], np.tanh(1.0 * state), atol=1e-6)
        assert np.allclose(
            rows["relearn/gap"], np.abs(rows["relearn/purity_train"] - rows["relearn/purity_val"]), atol=1e-6
        )
    events = store.load_events(run_id)
    reinit = events[events.kind == "reinit"]
    assert len(reinit) == 2 and set(reinit.iloc[0].payload["alpha"]) == {"a", "b"}
    assert sorted(df[df.key == "coef/relearn/a"].epoch) == [1.0, 2.0]  # at the boundary after epochs 1 and 2
    assert result.method.count == 2
