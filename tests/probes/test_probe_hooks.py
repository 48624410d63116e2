"""Each probe driven hook by hook: values against direct computation, state left as found, snapshot files."""

import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmviz.balancing import mask_batch
from mmviz.measures import compute_imbalance, eval_mode
from mmviz.measures.record import coalition_name
from mmviz.probes import PROBES
from mmviz.probes.record import epoch_record
from mmviz.probes.shapley import coalition_arrays, compute_subset_accuracies, model_features, record_shapley
from mmviz.probes.snapshots import snapshot_path

EPOCH_PROBES = [e.name for e in PROBES if e.flags["cadence"] == "epoch"]
STEP_PROBES = [e.name for e in PROBES if e.flags["cadence"] == "step"]


def create(name, **fields):
    entry = PROBES.get(name)
    return entry.factory(entry.config_cls(**fields))


def state_of(model):
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "grads": [(p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
        "rng": (torch.get_rng_state(), np.random.get_state()[1].copy()),
        "modes": [m.training for m in model.modules()],
    }


def assert_unchanged(model, before):
    after = state_of(model)
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before["buffers"], after["buffers"], strict=True))
    for p, (obj, value) in zip(model.parameters(), before["grads"], strict=True):
        assert p.grad is obj and (value is None or torch.equal(p.grad, value))
    assert torch.equal(before["rng"][0], after["rng"][0]) and np.array_equal(before["rng"][1], after["rng"][1])
    assert before["modes"] == after["modes"]


CNN = ["data.pix_as_image=true", "data.val_fraction=0.45", "data.test_fraction=0.44"]  # BatchNorm, small train


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_epoch_probes_leave_weights_modes_and_random_state_as_found(mode, make_harness, tmp_path):
    h = make_harness("mfeat", CNN, run_dir=tmp_path) if mode == "train" else make_harness(run_dir=tmp_path)
    h.model.train(mode != "eval")
    if mode == "mixed":
        h.model.fusion.eval()
    evaluation = h.evaluation()
    h.backward()
    for name in EPOCH_PROBES:
        probe = create(name, probe_every=1) if name == "unimodal_acc" else create(name)
        probe.setup(h.ctx)
        before = state_of(h.model)
        probe.on_epoch_end(3, h.info, evaluation)
        assert_unchanged(h.model, before)


@pytest.mark.parametrize("name", STEP_PROBES)
def test_step_probes_leave_weights_gradients_buffers_and_random_state_as_found(name, make_harness):
    h = make_harness("mfeat", CNN)
    probe = create(name)
    probe.setup(h.ctx)
    out, batch = h.backward()
    before = state_of(h.model)
    probe.on_after_backward(out, batch, h.info)
    probe.on_before_optimizer_step(out, batch, h.info)
    assert_unchanged(h.model, before)
    assert h.logged


def test_grad_norm_measures_before_and_after_the_modulation(make_harness):
    h = make_harness()
    probe = create("grad_norm")
    probe.setup(h.ctx)
    out, batch = h.backward()
    probe.on_after_backward(out, batch, h.info)
    with torch.no_grad():
        for p in h.model.encoder_parameters("a"):
            p.grad.mul_(0.25)  # a method damping modality a
    probe.on_before_optimizer_step(out, batch, h.info)
    direct = {m: torch.cat([p.grad.flatten() for p in h.model.encoder_parameters(m)]).norm() for m in "ab"}
    assert h.values("grad_norm_pre/a")[0] == pytest.approx(4 * float(direct["a"]), rel=1e-5)
    assert h.values("grad_norm/a")[0] == pytest.approx(float(direct["a"]), rel=1e-5)
    assert h.values("grad_norm_pre/b") == h.values("grad_norm/b") == [pytest.approx(float(direct["b"]), rel=1e-5)]


def test_score_ratio_matches_the_ogm_ge_formula(make_harness):
    h = make_harness()
    probe = create("score_ratio")
    probe.setup(h.ctx)
    out, batch = h.backward()
    probe.on_after_backward(out, batch, h.info)
    y = batch["label"]
    s = {m: float(out.unimodal_logits[m].detach().softmax(1)[torch.arange(len(y)), y].sum()) for m in "ab"}
    assert h.values("score/a") == [pytest.approx(s["a"], rel=1e-5)]
    assert h.values("ratio/a") == [pytest.approx(s["a"] / s["b"], rel=1e-5)]
    assert h.values("ratio/b") == [pytest.approx(s["b"] / s["a"], rel=1e-5)]


def test_grad_conflict_matches_a_direct_computation(make_harness):
    h = make_harness()
    probe = create("grad_conflict")
    probe.setup(h.ctx)
    out, batch = h.backward()
    probe.on_after_backward(out, batch, h.info)
    again = h.model(batch)
    y = batch["label"]
    for m in "ab":
        params = h.model.encoder_parameters(m)
        g_uni = torch.autograd.grad(F.cross_entropy(again.unimodal_logits[m], y), params, retain_graph=True)
        g_fus = torch.autograd.grad(F.cross_entropy(again.logits, y), params, retain_graph=True)
        u, f = torch.cat([g.flatten() for g in g_uni]), torch.cat([g.flatten() for g in g_fus])
        assert h.values(f"conflict/cos/{m}") == [pytest.approx(float(F.cosine_similarity(u, f, dim=0)), abs=1e-5)]


def test_param_dist_is_zero_at_init_and_the_distance_after_a_change(make_harness):
    h = make_harness()
    probe = create("param_dist")
    probe.setup(h.ctx)
    probe.on_epoch_end(1, h.info, None)
    assert h.values("param_dist/a") == [0.0] and h.values("param_dist/b") == [0.0]
    with torch.no_grad():
        h.model.encoder_parameters("b")[0].add_(0.5)
    probe.on_epoch_end(2, h.info, None)
    n = h.model.encoder_parameters("b")[0].numel()
    assert h.values("param_dist/b")[1] == pytest.approx(0.5 * n**0.5, rel=1e-5)
    assert h.values("param_dist/a")[1] == 0.0


def test_prototype_drift_appears_from_the_second_evaluation(make_harness):
    h = make_harness()
    probe = create("prototypes")
    probe.setup(h.ctx)
    probe.on_epoch_end(1, h.info, h.evaluation())
    assert "proto/drift/a" not in h.keys() and {"proto/intra/a", "proto/inter/b", "proto/margin/a"} <= h.keys()
    probe.on_epoch_end(2, h.info, h.evaluation())
    assert h.values("proto/drift/a") == [0.0]  # same weights, same prototypes


@pytest.mark.parametrize("dataset", ["synthetic", "mfeat"])
def test_shapley_subset_accuracies_equal_masked_forwards(dataset, make_harness):
    sets = ["data.pix_as_image=true"] if dataset == "mfeat" else []  # a BatchNorm CNN on pix
    h = make_harness(dataset, sets)
    h.model.eval()
    features, labels = model_features(h.ctx, h.evaluation())
    shapes = {s.name: tuple(s.shape) for s in h.data.modalities}
    accs = compute_subset_accuracies(h.model, features, labels, shapes)
    mods = h.ctx.modalities
    batch = h.ctx.splits["val"].subset(range(len(h.ctx.splits["val"])))
    with torch.no_grad():
        for r in range(len(mods) + 1):
            for kept in itertools.combinations(mods, r):
                out = h.model(mask_batch(batch, [m for m in mods if m not in kept]))
                assert accs[frozenset(kept)] == pytest.approx(
                    float((out.logits.argmax(1) == batch["label"]).float().mean()), abs=1.5 / len(labels)
                )


def test_shapley_ignores_evaluation_features_of_a_masking_method(make_harness):
    h = make_harness()
    own, _ = model_features(h.ctx, None)
    masked = h.evaluation(lambda m, b: m(mask_batch(b, ["b"])))  # e.g. the unimodal reference's predict
    reused, _ = model_features(h.ctx, masked)
    assert torch.allclose(reused["b"], own["b"]) and not torch.allclose(masked.features["b"], own["b"])
    plain = h.evaluation()
    assert model_features(h.ctx, plain)[0] is plain.features  # reused when it is the model's own forward


def test_shapley_takes_the_all_modalities_logits_from_the_models_own_evaluation(make_harness):
    h = make_harness()
    mods = h.ctx.modalities
    everything, nothing = coalition_name(frozenset(mods)), coalition_name(frozenset())
    plain = h.evaluation()
    fused = coalition_arrays(h.ctx, plain, {})[everything]  # not the model's own forward: fused again
    own = dataclasses.replace(plain, model_forward=True, logits=plain.logits + 1.0)  # marked to tell them apart
    arrays = coalition_arrays(h.ctx, own, {})
    assert torch.equal(arrays[everything], own.logits)  # Acc(all) is then the logged val accuracy
    assert torch.allclose(fused, plain.logits, atol=1e-5) and not torch.allclose(fused, own.logits)
    batch = h.ctx.splits["val"].subset(range(len(h.ctx.splits["val"])))
    with torch.no_grad(), eval_mode(h.model):
        zeroed = h.model(mask_batch(batch, list(mods))).logits
    assert arrays[nothing].shape == zeroed.shape  # fused once, one row per sample
    assert torch.allclose(arrays[nothing], zeroed, atol=1e-5)


def test_shapley_takes_the_features_of_the_models_own_evaluation_without_encoding_again(make_harness, monkeypatch):
    """A method that does not override ``predict`` evaluates with the model's forward: its features are the model's
    own, so no val samples are encoded again to check them (that took ~0.6 ms of each epoch end on the demo)."""
    from mmviz.balancing.baseline import Baseline

    h = make_harness()
    own = h.evaluation(Baseline().predict)
    assert own.model_forward and not h.evaluation().model_forward
    encoded = []
    real = h.model.encode
    monkeypatch.setattr(h.model, "encode", lambda batch: encoded.append(len(batch["label"])) or real(batch))
    assert model_features(h.ctx, own)[0] is own.features and encoded == []
    target_only = h.evaluation(lambda m, b: m(mask_batch(b, ["b"])))  # a method's own predict: checked, re-encoded
    assert not target_only.model_forward
    features, _ = model_features(h.ctx, target_only)
    assert encoded and features is not target_only.features
    assert torch.allclose(features["a"], own.features["a"]) and torch.allclose(features["b"], own.features["b"])


def test_imbalance_follows_the_shapley_probe_and_reuses_its_measured_logits(make_harness):
    h = make_harness()
    shapley, imbalance = create("shapley"), create("imbalance")
    for p in (shapley, imbalance):
        p.setup(h.ctx)
    ev = h.evaluation()
    shapley.on_epoch_end(1, h.info, ev)
    recorder = epoch_record(h.ctx, 1, h.info)
    measured = dict(recorder.arrays)
    imbalance.on_epoch_end(1, h.info, ev)
    assert {k: id(v) for k, v in recorder.arrays.items()} == {k: id(v) for k, v in measured.items()}  # no new pass
    phi = dict(zip("ab", h.values("val/shapley/a") + h.values("val/shapley/b"), strict=True))
    index, dominant, shares = compute_imbalance(phi)
    assert h.values("imbalance/index") == [pytest.approx(index)]
    assert h.values(f"imbalance/dominant/{dominant}") == [1.0]
    assert h.values("imbalance/share/a") == [pytest.approx(shares["a"])]
    h.next_epoch()
    imbalance.on_epoch_end(2, h.info, ev)  # the shapley probe skipped this epoch: so does imbalance
    assert len(h.values("imbalance/index")) == 1


def test_imbalance_computes_shapley_values_itself_when_that_probe_is_off(make_harness):
    h = make_harness(sets=["probes.shapley.enabled=false"])
    imbalance = create("imbalance")
    imbalance.setup(h.ctx)
    ev = h.evaluation()
    imbalance.on_epoch_end(1, h.info, ev)
    record = epoch_record(h.ctx, 1, h.info)
    phi = record_shapley(record.meta, record.arrays)
    assert h.values("imbalance/share/a") == [pytest.approx(phi["a"] / (abs(phi["a"]) + abs(phi["b"])))]


def test_linear_probe_runs_only_when_due(make_harness):
    h = make_harness()
    ev = h.evaluation()
    probe = create("unimodal_acc", probe_every=0)  # no linear probe
    probe.setup(h.ctx)
    probe.on_epoch_end(3, h.info, ev)
    assert {"val/acc_ncm/a", "val/acc_ncm/b"} == h.keys()
    probe = create("unimodal_acc", probe_every=2)
    probe.setup(h.ctx)
    probe.on_epoch_end(1, h.info, ev)
    assert "val/acc_probe/a" not in h.keys()
    probe.on_epoch_end(3, h.info, ev)  # the last epoch (info.total_epochs == 3)
    assert {"val/acc_probe/a", "val/acc_probe/b", "val/acc_probe/fused"} <= h.keys()


def test_snapshots_write_float16_arrays_of_the_fixed_probe_set(make_harness, tmp_path):
    h = make_harness(run_dir=tmp_path)
    h.ctx.dropped_mask = {"b": np.arange(len(h.data.y)) % 2 == 0}
    probe = create("snapshots")
    probe.setup(h.ctx)
    for epoch in (1, 2):
        probe.on_epoch_end(epoch, h.info, h.evaluation())
    assert [a[:3] for a in h.artifacts] == [
        (1, "snapshot", "snapshots/epoch_0001.npz"),
        (2, "snapshot", "snapshots/epoch_0002.npz"),
    ]
    assert h.artifacts[0][3]["pred_source"] == {"a": "head", "b": "head"} and h.artifacts[0][3]["fused"] == "concat"
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["epoch_0001.npz", "epoch_0002.npz"]
    with np.load(snapshot_path(tmp_path, 1)) as one, np.load(snapshot_path(tmp_path, 2)) as two:
        index = np.asarray(h.data.probe_index)
        assert np.array_equal(one["index"], index) and np.array_equal(two["index"], index)
        assert np.array_equal(one["label"], h.data.y[index])
        n = len(index)
        assert one["features_a"].dtype == np.float16 and one["features_a"].shape == (n, 128)
        assert one["features_fused"].shape == (n, 256) and one["conf_fused"].dtype == np.float16
        assert one["pred_a"].shape == one["pred_fused"].shape == (n,)
        assert np.array_equal(one["dropped_b"], index % 2 == 0)
    from mmviz.analysis.snapshots import load_snapshot  # the dashboard's reader understands the files

    snap = load_snapshot(snapshot_path(tmp_path, 2), epoch=2)
    assert snap.views == ("a", "b", "fused") and snap.n == n and set(snap.dropped) == {"a", "b", "fused"}


def test_snapshot_features_beyond_float16_range_are_kept_as_float32(make_harness, tmp_path):
    """An untrained BatchNorm net's features can exceed 65504: cast to float16 they were inf, with a warning."""
    import warnings

    h = make_harness(run_dir=tmp_path)
    evaluation = h.evaluation()
    evaluation.features["a"] = evaluation.features["a"] * 1e6
    probe = create("snapshots")
    probe.setup(h.ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" fails the test
        probe.on_epoch_end(1, h.info, evaluation)
    index = np.flatnonzero(np.isin(evaluation.index.numpy(), h.ctx.probe_index))
    with np.load(snapshot_path(tmp_path, 1)) as snap:
        assert snap["features_a"].dtype == np.float32 and snap["features_fused"].dtype == np.float32
        assert np.array_equal(snap["features_a"], evaluation.features["a"][index].numpy())
        assert np.isfinite(snap["features_fused"]).all()
        assert snap["features_b"].dtype == np.float16  # in range: still compact
    from mmviz.analysis.snapshots import load_snapshot

    assert np.isfinite(load_snapshot(snapshot_path(tmp_path, 1), epoch=1).features["a"]).all()


def test_snapshots_need_a_run_folder(make_harness):
    h = make_harness(run_dir=None)
    probe = create("snapshots")
    probe.setup(h.ctx)
    probe.on_epoch_end(1, h.info, h.evaluation())
    assert not h.artifacts
