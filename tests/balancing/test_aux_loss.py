"""The multi-loss baseline: loss = fused CE + weighted per-modality CE; weights parsed and checked; end-to-end."""

import pytest
import torch
import torch.nn.functional as F
from ctx_helpers import fake_ctx

from mmviz.balancing import create_method
from mmviz.balancing.aux_loss import AuxLossConfig
from mmviz.balancing.settings import parse_modality_map
from mmviz.contracts import ModelOutput, StepInfo
from mmviz.errors import ConfigError
from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.build import check_run_config
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training

QUIET = [f"probes.{p}.enabled=false" for p in PROBES.names()]  # probes never change training


def make_ctx(modalities, logged):
    return fake_ctx(logged, modalities=modalities)


def test_loss_adds_each_modality_cross_entropy_with_its_weight():
    y = torch.tensor([0, 2, 1])
    uni = {m: torch.randn(3, 3) for m in "abc"}
    out = ModelOutput(features={}, logits=torch.randn(3, 3), unimodal_logits=uni)
    logged = []
    method = create_method("aux_loss", AuxLossConfig(weight=0.5, weights="c=2"))
    method.setup(make_ctx("abc", logged))
    loss = method.compute_loss(out, {"label": y}, StepInfo(0, 1, 0, 1, 1))
    ce = {m: F.cross_entropy(uni[m], y) for m in "abc"}
    assert torch.allclose(loss, F.cross_entropy(out.logits, y) + 0.5 * ce["a"] + 0.5 * ce["b"] + 2 * ce["c"])
    logs = dict(logged)
    assert logs["coef/aux_loss/a"] == 0.5 and logs["coef/aux_loss/c"] == 2.0
    assert torch.allclose(logs["aux_loss/loss/b"], ce["b"])


def test_weight_overrides_are_validated():
    assert parse_modality_map(AuxLossConfig(weights=" b=2, a=0.5 "), "weights") == {"b": 2.0, "a": 0.5}
    for bad in ("b", "b=x", "b=-1", "=1"):
        with pytest.raises(ConfigError, match="'weights' parameter of AuxLossConfig"):
            AuxLossConfig(weights=bad)
    cfg = build_run_config("synthetic", "aux_loss", ["data.n_train=200", "method.weights=z=1"], epochs=1)
    with pytest.raises(ConfigError, match="modality 'z'"):
        check_run_config(cfg)


@pytest.mark.parametrize("method", ["aux_loss", "ume"])
@pytest.mark.parametrize("fusion", ["film", "gated"])
def test_needs_per_modality_logits(method, fusion):
    cfg = build_run_config("synthetic", method, ["data.n_train=200", f"model.fusion={fusion}"], epochs=1)
    with pytest.raises(ConfigError, match=f"Method '{method}' needs per-modality logits.*'concat' or 'sum'"):
        check_run_config(cfg)


def test_trains_end_to_end_and_logs_its_keys(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(
        "synthetic", "aux_loss", ["data.n_train=200", "train.batch_size=32", *QUIET, "model.fusion=sum"], epochs=2
    )
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    keys = set(store.metric_keys(run_id))
    assert {"aux_loss/loss/a", "aux_loss/loss/b", "coef/aux_loss/a", "coef/aux_loss/b"} <= keys
    assert set(store.load_metrics(run_id, key_prefix="coef/aux_loss/").value) == {1.0}
