"""PMR: coefficient to the slower modality, prototypes and their EMA, the loss, untouched data order, exact fork."""

import io
import math

import pytest
import torch
import torch.nn.functional as F
from ctx_helpers import fake_ctx

from mmviz.balancing import create_method
from mmviz.balancing.pmr import PMRConfig, compute_pmr_coefficients, compute_prototype_logits
from mmviz.contracts import ModelOutput, StepInfo
from mmviz.launcher import prepare_run
from mmviz.measures import compute_class_means
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.checkpoint import checkpoint_path, load_checkpoint
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit
from mmviz.training.runner import run_training

QUIET = [f"probes.{p}.enabled=false" for p in PROBES.names()]  # probes never change training

SMALL = ["data.n_train=200", "train.batch_size=32", *QUIET]


def make_ctx(modalities, logged, num_classes=3):
    return fake_ctx(logged, modalities=modalities, num_classes=num_classes)


@pytest.mark.parametrize(("shape", "expected"), [("step", 2.0), ("tanh", 2.0 * math.tanh(1.0)), ("linear", 2.0)])
def test_coefficient_goes_to_the_slower_modality(shape, expected):
    beta = compute_pmr_coefficients({"a": torch.tensor(6.0), "b": torch.tensor(3.0)}, 2.0, shape)
    assert float(beta["a"]) == 0.0
    assert math.isclose(float(beta["b"]), expected, rel_tol=1e-6)
    swapped = compute_pmr_coefficients({"a": torch.tensor(2.0), "b": torch.tensor(8.0)}, 2.0, shape)
    assert float(swapped["b"]) == 0.0 and float(swapped["a"]) > 0
    equal = compute_pmr_coefficients({"a": torch.tensor(3.0), "b": torch.tensor(3.0)}, 2.0, shape)
    assert float(equal["a"]) == float(equal["b"]) == 0.0


def test_linear_and_tanh_grow_with_the_imbalance_and_three_modalities_follow_the_leader():
    small = compute_pmr_coefficients({"a": torch.tensor(3.3), "b": torch.tensor(3.0)}, 1.0, "linear")["b"]
    large = compute_pmr_coefficients({"a": torch.tensor(9.0), "b": torch.tensor(3.0)}, 1.0, "linear")["b"]
    assert math.isclose(float(small), 0.1, rel_tol=1e-5) and math.isclose(float(large), 2.0, rel_tol=1e-6)
    beta = compute_pmr_coefficients(
        {"a": torch.tensor(6.0), "b": torch.tensor(3.0), "c": torch.tensor(4.0)}, 1.0, "linear"
    )
    assert float(beta["a"]) == 0.0 and math.isclose(float(beta["b"]), 1.0) and math.isclose(float(beta["c"]), 0.5)


def test_prototypes_are_class_means_and_logits_negative_distances():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    protos, counts = compute_class_means(z, torch.tensor([0, 0, 2]), 3)
    assert torch.equal(protos, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 4.0]]))
    assert counts.tolist() == [2, 0, 1]
    logits = compute_prototype_logits(torch.tensor([[1.0, 4.0]]), protos, temperature=2.0)
    assert torch.allclose(logits, -torch.tensor([[4.0, math.sqrt(17.0), 1.0]]) / 2.0)


def test_loss_is_fused_ce_plus_beta_times_prototypical_ce_of_the_slower_modality():
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2, 0])
    protos = {"a": torch.eye(3) * 3, "b": torch.eye(3) * 3}
    feats = {"a": (torch.eye(3) * 3)[y] + 0.1 * torch.randn(4, 3), "b": torch.randn(4, 3)}  # a near its prototypes
    out = ModelOutput(features=feats, logits=torch.randn(4, 3), unimodal_logits={"a": None, "b": None})
    logged = []
    method = create_method("pmr", PMRConfig(alpha=1.5))
    method.ctx = make_ctx("ab", logged)
    method.prototypes = protos
    loss = method.compute_loss(out, {"label": y}, StepInfo(0, 1, 0, 1, 1))
    pce_b = F.cross_entropy(-torch.cdist(feats["b"], protos["b"]), y)
    assert torch.allclose(loss, F.cross_entropy(out.logits, y) + 1.5 * pce_b)
    logs = dict(logged)
    assert float(logs["coef/pmr/b"]) == 1.5 and float(logs["coef/pmr/a"]) == 0.0
    assert float(logs["pmr/ratio/a"]) > 1 and float(logs["pmr/score/a"]) > float(logs["pmr/score/b"])


def test_entropy_regulariser_raises_the_leaders_entropy_only_when_on():
    y = torch.tensor([0, 1])
    protos = {"a": torch.eye(3) * 3, "b": torch.eye(3) * 3}
    feats = {"a": (torch.eye(3) * 3)[y], "b": torch.zeros(2, 3)}
    out = ModelOutput(features=feats, logits=torch.zeros(2, 3), unimodal_logits={"a": None, "b": None})
    losses = {}
    for w in (0.0, 0.5):
        method = create_method("pmr", PMRConfig(alpha=0.0, entropy_weight=w, entropy_epochs=1))
        method.ctx = make_ctx("ab", [])
        method.prototypes = protos
        losses[w] = method.compute_loss(out, {"label": y}, StepInfo(0, 1, 0, 1, 1))
    q = F.softmax(-torch.cdist(feats["a"], protos["a"]), 1)
    entropy = -(q * q.log()).sum(1).mean()
    assert torch.allclose(losses[0.5], losses[0.0] - 0.5 * entropy)


def test_prototype_passes_leave_training_untouched():
    """With alpha = 0 PMR is the baseline bit for bit: the eval-mode prototype passes use their own generator."""
    a = fit(build_run_config("synthetic", "baseline", SMALL, epochs=2))
    b = fit(build_run_config("synthetic", "pmr", SMALL + ["method.alpha=0"], epochs=2))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_prototypes_are_an_ema_of_fresh_class_means():
    r = fit(
        build_run_config("synthetic", "pmr", SMALL + ["method.proto_fraction=1", "method.momentum_coef=0.25"], epochs=1)
    )
    method, ctx = r.method, r.method.ctx
    old = {m: p.clone() for m, p in method.prototypes.items()}
    method.update_prototypes()
    ctx.model.eval()
    with torch.no_grad():
        batch = ctx.splits["train"].subset(torch.arange(len(ctx.splits["train"])))
        feats = ctx.model(batch).features
    for m in ctx.modalities:
        fresh, _ = compute_class_means(feats[m], batch["label"], ctx.num_classes)
        assert torch.allclose(method.prototypes[m], 0.75 * fresh + 0.25 * old[m], atol=1e-5)


def test_trains_logs_its_keys_and_a_fork_resumes_exactly(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "pmr", SMALL + ["method.coefficient=tanh"], epochs=2)
    parent = prepare_run(store, cfg)
    assert run_training(store, parent) == "finished"
    keys = set(store.metric_keys(parent))
    for q in ("coef/pmr", "pmr/ratio", "pmr/score", "pmr/pce", "pmr/proto_drift"):
        assert {f"{q}/a", f"{q}/b"} <= keys
    child = prepare_run(store, cfg, parent_run_id=parent, fork_epoch=1)
    assert run_training(store, child) == "finished"
    end_p = load_checkpoint(checkpoint_path(store.run_dir(parent), 2))
    end_c = load_checkpoint(checkpoint_path(store.run_dir(child), 2))
    assert all(torch.equal(end_p["model"][k], end_c["model"][k]) for k in end_p["model"])
    for m in ("a", "b"):
        assert torch.equal(end_p["method"]["prototypes"][m], end_c["method"]["prototypes"][m])
    assert torch.equal(end_p["method"]["generator"], end_c["method"]["generator"])


def test_state_round_trips_through_a_weights_only_checkpoint():
    r = fit(build_run_config("synthetic", "pmr", SMALL, epochs=1))
    buf = io.BytesIO()
    torch.save(r.method.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = create_method("pmr")
    fresh.setup(r.method.ctx)
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.prototypes[m], r.method.prototypes[m]) for m in ("a", "b"))
    assert torch.equal(fresh._gen.get_state(), r.method._gen.get_state())
