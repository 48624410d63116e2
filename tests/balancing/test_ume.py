"""Uni-modal ensemble: each modality learns only from its own logits; prediction is their sum."""

import torch
import torch.nn.functional as F
from ctx_helpers import fake_ctx

from mmviz.balancing import create_method
from mmviz.contracts import StepInfo
from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training
from models import MultimodalNet

QUIET = [f"probes.{p}.enabled=false" for p in PROBES.names()]  # probes never change training

INFO = StepInfo(0, 1, 0, 1, 1)


def build_ume(fusion="concat"):
    torch.manual_seed(0)
    model = MultimodalNet(
        [("a", "vector", (5,)), ("b", "vector", (4,))], 3, feature_dim=8, hidden_dim=16, fusion=fusion
    )
    logged = []
    ctx = fake_ctx(logged, model=model)
    method = create_method("ume")
    method.setup(ctx)
    return model, method, logged


def test_loss_is_the_sum_of_unimodal_losses_and_each_encoder_learns_only_from_its_own():
    model, method, logged = build_ume()
    batch = {"a": torch.randn(8, 5), "b": torch.randn(8, 4), "label": torch.randint(0, 3, (8,))}
    out = model(batch)
    loss = method.compute_loss(out, batch, INFO)
    y = batch["label"]
    assert torch.allclose(
        loss, F.cross_entropy(out.unimodal_logits["a"], y) + F.cross_entropy(out.unimodal_logits["b"], y)
    )
    assert {k for k, _ in logged} == {"ume/loss/a", "ume/loss/b"}
    loss.backward()
    grad_a = [p.grad.clone() for p in model.encoder_parameters("a")]
    # another input for b changes nothing in a's gradient: no fused loss couples the encoders
    model.zero_grad()
    other = dict(batch, b=torch.randn(8, 4) * 3)
    method.compute_loss(model(other), other, INFO).backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grad_a, model.encoder_parameters("a"), strict=True))


def test_prediction_is_the_sum_of_unimodal_logits():
    for fusion in ("concat", "sum", "shared_head"):
        model, method, _ = build_ume(fusion)
        batch = {"a": torch.randn(4, 5), "b": torch.randn(4, 4), "label": torch.zeros(4, dtype=torch.long)}
        pred = method.predict(model, batch)
        assert torch.allclose(pred.logits, pred.unimodal_logits["a"] + pred.unimodal_logits["b"])
        assert torch.allclose(pred.logits, model(batch).logits, atol=1e-6)  # equals the fused output by construction


def test_trains_end_to_end_and_logs_its_keys(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("synthetic", "ume", ["data.n_train=200", "train.batch_size=32", *QUIET], epochs=2)
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    assert {"ume/loss/a", "ume/loss/b", "val/acc/fused", "val/acc/b"} <= set(store.metric_keys(run_id))
    losses = store.load_metrics(run_id, keys=["ume/loss/b"]).value
    assert losses.iloc[-1] < losses.iloc[0]
