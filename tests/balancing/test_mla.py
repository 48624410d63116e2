"""MLA: the projector removes the stored input subspace, the projection really changes the head gradient in a
real step, only the active modality moves per turn, per-sample entropy fusion, fusion check and a run's keys."""

import math

import pytest
import torch

from mmviz.balancing import create_method
from mmviz.balancing.mla import (
    MLAConfig,
    compute_alpha,
    compute_entropy_weights,
    compute_projector_gain,
    compute_projector_update,
)
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


def test_alpha_schedule_within_an_epoch():
    assert math.isclose(compute_alpha(0, 10), 0.1) and math.isclose(compute_alpha(5, 10), 0.1**1.5)


def test_projected_gradient_is_orthogonal_to_the_stored_input_subspace():
    g = torch.Generator().manual_seed(0)
    d = 32
    inputs = [torch.randn(d, generator=g) for _ in range(3)]
    proj = torch.eye(d)
    for r in inputs:
        proj = compute_projector_update(proj, r, alpha=0.01)
    grad = torch.randn(5, d, generator=g)
    projected = grad @ proj.t()
    gain = compute_projector_gain(proj)
    span = inputs + [0.3 * inputs[0] - 2.0 * inputs[2], inputs[0] + inputs[1] + inputs[2]]
    for r in span:  # the head's output on stored inputs no longer changes: G P^T r^T ~ 0
        assert (projected @ r).norm() / (grad @ r).norm() < 1e-2 * gain
    q, _ = torch.linalg.qr(torch.stack(inputs, 1))
    other = torch.randn(d, generator=g)
    other = other - q @ (q.t() @ other)  # a direction orthogonal to every stored input passes at full gain
    assert torch.allclose(proj @ other, gain * other, rtol=1e-3, atol=1e-5)
    assert math.isclose(float(torch.linalg.matrix_norm(proj)), 1.0, rel_tol=1e-5)  # Frobenius-normalised


def test_entropy_weights_are_per_sample_and_favour_the_confident_modality():
    logits = torch.tensor(
        [
            [[5.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # modality 1: confident, then uniform
            [[0.0, 0.0, 0.0], [0.0, 4.0, 0.0]],
        ]
    )  # modality 2: uniform, then confident
    w = compute_entropy_weights(logits)
    assert w.shape == (2, 2) and torch.allclose(w.sum(0), torch.ones(2))
    assert w[0, 0] > 0.5 > w[0, 1] and w[1, 1] > 0.5
    p = torch.softmax(logits, -1)
    e = -(p * p.log()).sum(-1)
    expected = torch.exp(e.max(0).values - e) / torch.exp(e.max(0).values - e).sum(0)
    assert torch.allclose(w, expected)


class CaptureHooks:
    """Probe hooks that record the head gradient and parameter state around each turn's optimiser step."""

    def __init__(self, model) -> None:
        self.model = model
        self.turns: list[dict] = []

    def on_after_backward(self, out, batch, info) -> None:
        self.turns.append({"g_before": self.model.fusion.head.weight.grad.clone()})

    def on_before_optimizer_step(self, out, batch, info) -> None:
        turn = self.turns[-1]
        turn["g_after"] = self.model.fusion.head.weight.grad.clone()
        turn["grads_none"] = {
            m: all(p.grad is None for p in self.model.encoder_parameters(m)) for m in self.model.modalities
        }
        turn["params"] = {
            m: [p.detach().clone() for p in self.model.encoder_parameters(m)] for m in self.model.modalities
        }


def make_ctx(projection, optimizer="sgd"):
    data = create_dataset("synthetic", SyntheticConfig(n_train=64))
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="shared_head"), data)
    logged = []
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    ctx = create_context(
        model,
        data,
        {"train": TensorSplit(data, data.splits["train"], "cpu")},
        torch.device("cpu"),
        log=lambda k, v: logged.append((k, v)),
        optimizer=opt,
        seed=0,
    )
    method = create_method("mla", MLAConfig(projection=projection))
    method.setup(ctx)
    return method, ctx, logged


@pytest.mark.parametrize("projection", ["replace", "add", "off"])
def test_the_projection_runs_in_a_real_step_and_only_the_active_modality_moves(projection):
    method, ctx, logged = make_ctx(projection)
    hooks = CaptureHooks(ctx.model)
    batches = ctx.splits["train"].batches(32, torch.Generator().manual_seed(0))
    for step in range(2):
        method.training_step(next(batches), StepInfo(step, 1, step, 2, 1), hooks)
    assert len(hooks.turns) == 4 and method.turns == 4
    first, later = hooks.turns[0], hooks.turns[1:]
    assert torch.equal(first["g_before"], first["g_after"])  # the very first turn is not projected
    for turn in later:
        if projection == "off":
            assert torch.equal(turn["g_before"], turn["g_after"])
        else:
            assert not torch.allclose(turn["g_before"], turn["g_after"])
    # replace: the applied gradient is exactly G P^T with the projector as it stood at the last turn
    if projection == "replace":
        assert torch.allclose(later[-1]["g_after"], later[-1]["g_before"] @ method.proj.t(), atol=1e-7)
    # each turn: only the active encoder has a gradient, and the inactive one is not moved by momentum/decay
    names = ctx.model.modalities
    for i, turn in enumerate(hooks.turns):
        active = names[i % 2]
        assert turn["grads_none"] == {m: m != active for m in names}
    for i in range(3):  # between the snapshots of turns i and i+1 only turn i's step ran
        active, inactive = names[i % 2], names[(i + 1) % 2]
        before, after = hooks.turns[i]["params"], hooks.turns[i + 1]["params"]
        assert all(torch.equal(a, b) for a, b in zip(before[inactive], after[inactive], strict=True))
        assert any(not torch.equal(a, b) for a, b in zip(before[active], after[active], strict=True))
    removed = [v for k, v in logged if k.startswith("mla/removed_frac/")]
    assert len(removed) == 3 and all(0 <= float(r) <= 1 for r in removed)
    assert {k for k, _ in logged} >= {"mla/loss/a", "mla/loss/b", "mla/alpha", "mla/proj_gain"}


def test_mla_needs_the_shared_head():
    with pytest.raises(ConfigError, match="shared_head"):
        check_run_config(build_run_config("synthetic", "mla", []))
    with pytest.raises(ConfigError, match="fixed_weights"):
        check_run_config(build_run_config("synthetic", "mla", ["model.fusion=shared_head", "method.fixed_weights=z=1"]))
    check_run_config(build_run_config("synthetic", "mla", ["model.fusion=shared_head"]))


def test_a_run_logs_the_documented_keys_and_fuses_dynamically(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(
        "synthetic",
        "mla",
        ["data.n_train=200", "train.batch_size=32", "model.fusion=shared_head", *NO_PROBES],
        epochs=2,
    )
    run_id = store.create_run(
        config=cfg.to_dict(), name="t", dataset="synthetic", method="mla", fusion="shared_head", modalities=["a", "b"]
    )
    fit(cfg, store, run_id, store.run_dir(run_id))
    df = store.load_metrics(run_id)
    steps = 2 * 7
    for m in ("a", "b"):
        assert (df.key == f"mla/loss/{m}").sum() == steps
        assert (df.key == f"mla/weight/{m}").sum() == 2
    assert (df.key == "mla/removed_frac/a").sum() == steps - 1 and (df.key == "mla/alpha").sum() == steps
    w = df[df.key.str.startswith("mla/weight/")].groupby("step").value.sum()
    assert ((w - 1).abs() < 1e-5).all()
    acc = df[df.key == "val/acc/fused"].value.to_numpy()
    assert (abs(acc - df[df.key == "val/acc_dynamic"].value.to_numpy()) < 1e-6).all()
