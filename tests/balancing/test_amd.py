"""AMD: schedules, realised drop rates, draw coupling, zeroing without rescaling, the per-sample record,
resumable draws, check-time errors and the logged keys of a real run."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmviz.balancing import create_method
from mmviz.balancing.amd import AMDConfig, compute_drop_decisions, compute_drop_probability
from mmviz.contracts import StepInfo
from mmviz.errors import ConfigError
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.build import check_run_config
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit

NO_PROBES = [f"probes.{entry.name}.enabled=false" for entry in PROBES]


def make_method(modalities=("a", "b"), n=64, seed=0, **cfg):
    """An AMD instance set up on a minimal context (the hooks it uses: seed, modalities, labels, log)."""
    logged = []
    ctx = SimpleNamespace(
        modalities=tuple(modalities),
        num_samples=n,
        device=torch.device("cpu"),
        seed=seed,
        dropped_mask=None,
        log=lambda k, v: logged.append((k, v)),
    )
    method = create_method("amd", AMDConfig(**cfg))
    method.setup(ctx)
    return method, ctx, logged


def make_batch(modalities, index, dim=3):
    g = torch.Generator().manual_seed(int(index[0]))
    batch = {m: torch.randn(len(index), dim, generator=g) + 5.0 for m in modalities}
    batch["label"] = torch.zeros(len(index), dtype=torch.long)
    batch["index"] = torch.as_tensor(index)
    return batch


def test_schedules_follow_their_formulas():
    assert compute_drop_probability("constant", 0.8, 0.0, 0.3, 0.1) == 0.8
    assert math.isclose(compute_drop_probability("linear", 0.8, 0.2, 0.5, 0.25), 0.5)
    assert compute_drop_probability("linear", 0.8, 0.2, 0.5, 0.9) == 0.8
    assert math.isclose(compute_drop_probability("cosine", 0.8, 0.0, 1.0, 0.5), 0.4)
    assert math.isclose(compute_drop_probability("cosine", 0.8, 0.0, 1.0, 0.25), 0.8 * (1 - math.cos(math.pi / 4)) / 2)
    assert compute_drop_probability("step", 0.9, 0.1, 0.3, 0.29) == 0.1
    assert compute_drop_probability("step", 0.9, 0.1, 0.3, 0.3) == 0.9


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "step"])
def test_realised_drop_rate_matches_the_schedule_within_sampling_error(schedule):
    method, _, logged = make_method(target="a", p=0.7, p_start=0.1, schedule=schedule, ramp_fraction=0.6)
    batches, bs = 1500, 4
    dropped, expected, variance = 0, 0.0, 0.0
    for step in range(batches):
        info = StepInfo(step, 1, step, batches, 1)
        out = method.transform_batch(make_batch(("a", "b"), [0, 1, 2, 3]), info)
        p = compute_drop_probability(schedule, 0.7, 0.1, 0.6, info.progress)
        dropped += bool((out["b"] == 0).all())
        assert torch.equal(out["a"], make_batch(("a", "b"), [0, 1, 2, 3])["a"])  # the target is never dropped
        expected += p
        variance += p * (1 - p)
    assert abs(dropped - expected) < 4 * math.sqrt(variance)
    probs_b = [v for k, v in logged if k == "dropout_p/b"]
    assert len(probs_b) == batches and all(v == 0 for k, v in logged if k == "dropout_p/a")
    assert math.isclose(probs_b[-1], compute_drop_probability(schedule, 0.7, 0.1, 0.6, (batches - 1) / batches))
    assert bs  # batch size is irrelevant for per-batch draws


def test_shared_draw_couples_the_helpers_and_independent_draws_do_not():
    probs = torch.tensor([0.0, 0.5, 0.5])
    g = torch.Generator().manual_seed(0)
    shared = torch.stack([compute_drop_decisions(probs, "shared_per_batch", 8, g, False) for _ in range(400)])
    assert torch.equal(shared[..., 1], shared[..., 2])  # b and c always dropped together
    assert 0.4 < shared[:, 0, 1].float().mean() < 0.6 and not shared[..., 0].any()
    indep = torch.stack([compute_drop_decisions(probs, "independent_per_batch", 8, g, False) for _ in range(400)])
    differ = (indep[:, 0, 1] != indep[:, 0, 2]).float().mean()
    assert 0.4 < differ < 0.6  # P(exactly one of two p=0.5 draws) = 0.5
    assert torch.equal(indep, indep[:, :1].expand_as(indep))  # one decision per batch
    per_sample = compute_drop_decisions(probs, "independent_per_sample", 4000, g, False)
    assert abs(per_sample[:, 1].float().mean() - 0.5) < 0.03
    assert 0.4 < (per_sample[:, 1] != per_sample[:, 2]).float().mean() < 0.6


def test_without_a_target_never_all_modalities_at_once():
    g = torch.Generator().manual_seed(1)
    for mode in ("shared_per_batch", "independent_per_batch", "independent_per_sample"):
        d = torch.cat([compute_drop_decisions(torch.tensor([1.0, 1.0, 1.0]), mode, 16, g, True) for _ in range(50)])
        assert (d.sum(1) == 2).all()  # p = 1: every draw drops all, one is kept
        assert set(torch.nonzero(~d)[:, 1].tolist()) == {0, 1, 2}  # the kept one is chosen at random
    method, _, _ = make_method(modalities=("a", "b"), p=0.9)
    assert method.dropped == ("a", "b") and method.keep_one


def test_per_sample_mode_zeroes_without_rescaling_keeps_input_and_records_samples():
    method, ctx, logged = make_method(drop=("b",), p=0.5, draw_mode="independent_per_sample", n=40)
    dropped_total = 0
    for bi, start in enumerate(range(0, 40, 8)):
        index = list(range(start, start + 8))
        batch = make_batch(("a", "b"), index)
        copy = {k: v.clone() for k, v in batch.items()}
        out = method.transform_batch(batch, StepInfo(bi, 1, bi, 5, 2))
        assert all(torch.equal(batch[k], copy[k]) for k in copy)  # input untouched
        zero = (out["b"] == 0).all(1)
        assert torch.equal(out["b"][~zero], batch["b"][~zero])  # kept rows unchanged (no 1/(1-p) scaling)
        assert torch.equal(ctx.dropped_mask["b"][index], zero)
        dropped_total += int(zero.sum())
    assert not ctx.dropped_mask["a"].any()
    method.on_epoch_end(1, StepInfo(4, 1, 4, 5, 2), None)
    frac = dict(logged)["amd/drop_frac/b"]
    assert math.isclose(float(frac), dropped_total / 40, rel_tol=1e-6)
    assert int(ctx.dropped_mask["b"].sum()) == dropped_total > 8
    method.on_epoch_start(StepInfo(5, 2, 0, 5, 2))  # a new epoch starts a fresh record
    assert int(ctx.dropped_mask["b"].sum()) == 0 and method.seen == 0


def test_state_dict_resumes_the_draws_exactly():
    method, _, _ = make_method(target="a", p=0.5, draw_mode="independent_per_sample")
    info = StepInfo(3, 1, 3, 10, 1)
    state = method.state_dict()
    first = [method.transform_batch(make_batch(("a", "b"), list(range(8))), info)["b"] for _ in range(5)]
    other, _, _ = make_method(target="a", p=0.5, draw_mode="independent_per_sample", seed=7)
    other.load_state_dict(state)
    again = [other.transform_batch(make_batch(("a", "b"), list(range(8))), info)["b"] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


@pytest.mark.parametrize(
    "sets",
    [
        ["method.target=z"],
        ["method.target=a", "method.drop=a"],
        ["method.p_modality=a=0.5", "method.target=a"],
        ["method.evaluate_on=target"],
        ["method.p_modality=b=1.5"],
    ],
)
def test_bad_settings_fail_before_training(sets):
    with pytest.raises(ConfigError):
        check_run_config(build_run_config("synthetic", "amd", sets))


def test_a_run_logs_the_documented_keys(tmp_path):
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(
        "synthetic",
        "amd",
        ["data.n_train=200", "train.batch_size=32", "method.target=a", "method.evaluate_on=target", *NO_PROBES],
        epochs=2,
    )
    run_id = store.create_run(
        config=cfg.to_dict(), name="t", dataset="synthetic", method="amd", fusion="concat", modalities=["a", "b"]
    )
    fit(cfg, store, run_id, store.run_dir(run_id))
    df = store.load_metrics(run_id)
    keys = set(df.key)
    assert {"dropout_p/a", "dropout_p/b", "amd/drop_frac/a", "amd/drop_frac/b", "val/acc_target"} <= keys
    assert (df[df.key == "dropout_p/b"].value == 0.8).all() and (df[df.key == "dropout_p/a"].value == 0).all()
    frac = df[df.key == "amd/drop_frac/b"].value
    assert len(frac) == 2 and ((frac > 0.4) & (frac <= 1)).all()  # 7 batches per epoch at p = 0.8
    # with evaluate_on=target the run's own val accuracy is the target-only accuracy
    val = df[df.key == "val/acc/fused"].value.to_numpy()
    assert np.allclose(val, df[df.key == "val/acc_target"].value.to_numpy())
