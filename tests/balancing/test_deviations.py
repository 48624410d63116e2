"""Deviations from the official code, closed or exposed as options: each checked against hand-computed values."""

import math

import numpy as np
import pytest
import torch
from ctx_helpers import fake_ctx

from mmviz.balancing import create_method
from mmviz.balancing.agm import AGMConfig, compute_running_means, needs_clip
from mmviz.balancing.cggm import clip_coefficients, compute_cggm_coefficients
from mmviz.balancing.ogm_ge import compute_ogm_coefficients
from mmviz.balancing.pmr import compute_prototype_update
from mmviz.balancing.relearn import RelearnConfig, is_reinit_epoch
from mmviz.measures import compute_class_means, compute_kmeans_purity, scale_to_unit_box
from mmviz.probes import PROBES
from mmviz.training.config import build_run_config
from mmviz.training.context import StepInfo
from mmviz.training.loop import fit
from models import MultimodalNet

NO_PROBES = [f"probes.{p.name}.enabled=false" for p in PROBES]


# ----- OGM-GE: a tie damps the first modality, as the official else-branch -------------------------------------
def test_ogm_tie_damps_the_first_modality_like_the_official_else_branch():
    one = torch.tensor(1.0)
    k = compute_ogm_coefficients({"a": one, "v": one}, 0.8, "step")
    assert float(k["a"]) == pytest.approx(1 - math.tanh(0.8)) and float(k["v"]) == 1.0  # 0.33596...
    k = compute_ogm_coefficients({"a": one, "v": one}, 0.8, "step", tie="none")
    assert float(k["a"]) == 1.0 and float(k["v"]) == 1.0
    # no tie: only the leader is damped, whatever the tie rule (ratio_v = 1.25, ratio_a = 0.8)
    k = compute_ogm_coefficients({"a": torch.tensor(0.8), "v": torch.tensor(1.25)}, 0.8, "step")
    assert float(k["a"]) == 1.0 and float(k["v"]) == pytest.approx(1 - math.tanh(1.0))
    # continuous shape at a tie: 1 - tanh(0) = 1, so the rule changes nothing there
    k = compute_ogm_coefficients({"a": one, "v": one}, 0.8, "continuous")
    assert float(k["a"]) == 1.0


# ----- AGM: running mean over previous steps, conditional clip ----------------------------------------------------
def test_agm_running_mean_is_over_previous_steps_only():
    sums, scores = {"a": torch.tensor(6.0)}, {"a": torch.tensor(9.0)}
    assert float(compute_running_means(sums, 3, scores, "previous")["a"]) == 2.0  # 6 / 3
    assert float(compute_running_means(sums, 3, scores, "inclusive")["a"]) == 3.75  # (6 + 9) / 4
    assert float(compute_running_means({"a": torch.tensor(0.0)}, 0, scores, "previous")["a"]) == 0.0


def _agm_with_grads(head_value: float, enc_value: float, clip: str):
    torch.manual_seed(0)
    model = MultimodalNet([("a", "vector", (5,)), ("b", "vector", (4,))], 3, feature_dim=4, hidden_dim=8)
    method = create_method("agm", AGMConfig(grad_clip=clip))
    logged = []
    method.setup(fake_ctx(logged, model=model))
    head = model.fusion.final_linear().weight
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    head.grad[0, 0] = head_value
    first_enc = next(iter(model.encoders["a"].parameters()))
    first_enc.grad.view(-1)[0] = enc_value
    method.on_after_backward(None, {}, StepInfo(0, 1, 0, 1, 1))
    norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    return norm, head.grad[0, 0].item(), dict(logged)


def test_agm_clips_to_norm_one_only_when_a_head_gradient_element_exceeds_one():
    # head element 2, encoder element 3: total norm sqrt(13) -> clipped to 1 (each scaled by 1 / sqrt(13))
    norm, head, logs = _agm_with_grads(2.0, 3.0, "conditional")
    assert norm == pytest.approx(1.0, rel=1e-4) and head == pytest.approx(2.0 / math.sqrt(13), rel=1e-4)
    assert logs["agm/clipped"] == 1.0
    # head element 0.9 (inside [-1, 1]), encoder element 30: norm 30.01 stays (the condition is on the head)
    norm, head, logs = _agm_with_grads(0.9, 30.0, "conditional")
    assert norm == pytest.approx(math.sqrt(0.81 + 900), rel=1e-5) and logs["agm/clipped"] == 0.0
    norm, _, _ = _agm_with_grads(-2.0, 3.0, "off")  # min < -1 also triggers the official clip; 'off' never clips
    assert norm == pytest.approx(math.sqrt(13), rel=1e-5)
    assert needs_clip(torch.tensor([[-1.5, 0.0]])) and not needs_clip(torch.tensor([[1.0, -1.0]]))


# ----- PMR: the update after the first epoch replaces -------------------------------------------------------------
def test_pmr_prototype_update_hand_values():
    fresh, old = torch.tensor([[4.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 4.0], [1.0, 1.0]])
    present = torch.tensor([[True], [False]])
    got = compute_prototype_update(fresh, old, present, 0.25)
    assert torch.equal(got, torch.tensor([[3.0, 1.0], [1.0, 1.0]]))  # 0.75 * fresh + 0.25 * old; absent kept
    assert torch.equal(compute_prototype_update(fresh, old, present, 0.0), torch.tensor([[4.0, 0.0], [1.0, 1.0]]))


@pytest.mark.parametrize("first", ["replace", "blend"])
def test_pmr_first_update_replaces_by_default(first):
    sets = ["data.n_train=200", "train.batch_size=32", "method.proto_fraction=1", "method.momentum_coef=0.5"]
    r = fit(build_run_config("synthetic", "pmr", sets + [f"method.first_update={first}"] + NO_PROBES, epochs=1))
    method, ctx = r.method, r.method.ctx  # the method state is the best epoch's, before its epoch-end update
    initial = {m: p.clone() for m, p in method.prototypes.items()}
    method.on_epoch_end(1, None, None)  # the update after the first epoch
    ctx.model.eval()
    with torch.no_grad():
        batch = ctx.splits["train"].subset(torch.arange(len(ctx.splits["train"])))
        feats = ctx.model(batch).features
    for m in ctx.modalities:
        fresh, _ = compute_class_means(feats[m], batch["label"], ctx.num_classes)
        want = fresh if first == "replace" else 0.5 * fresh + 0.5 * initial[m]
        assert torch.allclose(method.prototypes[m], want, atol=1e-5)
        assert not torch.allclose(fresh, initial[m], atol=1e-3)  # the two variants differ here


# ----- Re-learning: official timing and k-means restarts -----------------------------------------------------------
def test_relearn_official_timing_is_after_epochs_21_41_61():
    def events(timing, limit=3):
        count, out = 0, []
        for done in range(1, 91):
            if is_reinit_epoch(done, 20, count, limit, timing):
                count += 1
                out.append(done)
        return out

    assert events("official") == [21, 41, 61]
    assert events("every") == [20, 40, 60]
    assert events("official", limit=2) == [21, 41]


def test_relearn_kmeans_uses_sklearns_default_restarts():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    n_init = RelearnConfig().kmeans_n_init
    clusters = KMeans(n_clusters=4, random_state=0).fit_predict(scale_to_unit_box(x))  # the official call
    want = sum(np.bincount(y[clusters == c]).max() for c in np.unique(clusters)) / 300
    assert compute_kmeans_purity(x, y, 4, random_state=0, n_init=n_init) == pytest.approx(want)
    assert n_init == 1 and KMeans().n_init == "auto"  # 'auto' = one run with k-means++ (scikit-learn >= 1.4)


# ----- CGGM: the official unclipped B as a variant ------------------------------------------------------------------
def test_cggm_unclipped_b_is_selectable():
    delta = torch.tensor([0.3, -0.1])  # S = 0.2: B = [(0.2 - 0.3) / 0.2, (0.2 + 0.1) / 0.2] = [-0.5, 1.5]
    b = compute_cggm_coefficients(delta)
    assert torch.allclose(b, torch.tensor([-0.5, 1.5]), atol=1e-6)
    assert torch.allclose(clip_coefficients(b, "none", 1.0), torch.tensor([-0.5, 1.5]), atol=1e-6)
    assert torch.allclose(clip_coefficients(b, "clip", 1.0), torch.tensor([0.0, 1.0]))
    assert torch.allclose(clip_coefficients(b, "clip", 1.2), torch.tensor([0.0, 1.2]))
