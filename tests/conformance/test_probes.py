"""Every registered probe: defaults build and round-trip, it can be re-timed and switched off, it leaves training
bit-for-bit unchanged (parameters, buffers, global random state), leaves no hooks behind, logs well-formed keys, and
works with 2 and 3 modalities and with fusions that have no per-modality logits."""

import random
import re

import numpy as np
import pytest
import torch

from mmviz.balancing import METHODS
from mmviz.contracts import Hooks
from mmviz.errors import ConfigError
from mmviz.probes import PROBES, create_probes
from mmviz.store.keys import parse_key
from mmviz.training import loop
from mmviz.training.build import fusions_with
from mmviz.training.config import build_run_config
from mmviz.training.loop import NullStore, fit

NAMES = PROBES.names()
KEY_RE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
SMALL = ["data.n_train=120", "train.batch_size=32", "train.threads=1"]  # 4 steps per epoch
OFF = [f"probes.{name}.enabled=false" for name in NAMES]
# A BatchNorm network: grad_conflict's extra train-mode forward must not move the running statistics.
BN_MODEL = ["data.pix_as_image=true", "data.val_fraction=0.45", "data.test_fraction=0.44", "train.threads=1"]


def dense(names=NAMES) -> list[str]:
    """Settings that run the given probes at every step and every epoch, without a cost budget (the linear probe
    every epoch too)."""
    out = []
    for name in names:
        fields = {s.name for s in PROBES.get(name).config_cls.field_specs()}
        out += [f"probes.{name}.every_n_steps=1", f"probes.{name}.every_n_epochs=1", f"probes.{name}.max_overhead=0"]
        if "probe_every" in fields:
            out.append(f"probes.{name}.probe_every=1")
    return out


def only(names) -> list[str]:
    """Enable exactly ``names`` (densely) and disable every other probe."""
    return [f"probes.{n}.enabled=false" for n in NAMES if n not in names] + dense(names)


class RecordingStore(NullStore):
    """Keeps metric rows and artifacts."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.artifacts: list[tuple] = []

    def log_batch(self, run_id, rows, *, events=(), artifacts=(), heartbeat=None) -> None:
        self.rows.extend(rows)
        self.artifacts.extend(artifacts)

    @property
    def keys(self) -> set[str]:
        return {r[3] for r in self.rows}


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def global_rng() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def train(dataset: str, sets: list[str], epochs: int = 2, store=None, run_dir=None):
    """Fit a run; return its final state dict and the global random states right after."""
    result = fit(build_run_config(dataset, "baseline", sets, epochs=epochs), store, "r", run_dir)
    return {k: v.clone() for k, v in result.model.state_dict().items()}, global_rng(), result


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def assert_no_hooks(model: torch.nn.Module) -> None:
    for name, mod in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert not getattr(mod, attr), f"{attr} left on {name or 'model'}"
    for name, p in model.named_parameters():
        assert not getattr(p, "_post_accumulate_grad_hooks", None), f"grad hook left on {name}"
        assert not getattr(p, "_backward_hooks", None), f"tensor hook left on {name}"


@pytest.fixture(scope="module")
def reference():
    """Parameters and random states after the small synthetic and BatchNorm runs without probes."""
    n = torch.get_num_threads()
    try:
        return {"synthetic": train("synthetic", SMALL + OFF)[:2], "mfeat": train("mfeat", BN_MODEL + OFF)[:2]}
    finally:
        torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ registry


@pytest.mark.parametrize("name", NAMES)
def test_defaults_build_round_trip_and_describe_themselves(name):
    entry = PROBES.get(name)
    cfg = entry.config_cls()
    assert entry.config_cls.from_dict(cfg.to_dict()) == cfg
    probe = entry.factory(cfg)
    assert probe.name == name and probe.per_step != probe.per_epoch
    assert len(entry.description.split()) > 40, f"probe {name!r} needs a docstring saying what it measures"
    assert entry.flags["cadence"] in ("step", "epoch") and all(
        KEY_RE.match(k.replace("<m>", "m")) for k in entry.flags["keys"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_probe_can_be_retimed_and_switched_off(name):
    cfg = build_run_config(
        "synthetic", "baseline", [f"probes.{name}.every_n_epochs=7", f"probes.{name}.every_n_steps=3"]
    )
    assert (cfg.probes[name].every_n_epochs, cfg.probes[name].every_n_steps) == (7, 3)
    off = build_run_config("synthetic", "baseline", [f"probes.{name}.enabled=false"])
    assert name not in [p.name for p in create_probes(off.probes)]
    assert name in [p.name for p in create_probes(cfg.probes)]
    with pytest.raises(ConfigError, match="every_n_epoch"):
        build_run_config("synthetic", "baseline", [f"probes.{name}.every_n_epoch=2"])


def test_probes_run_in_order_so_imbalance_follows_shapley():
    names = [p.name for p in create_probes(build_run_config("synthetic", "baseline").probes)]
    assert names.index("imbalance") > names.index("shapley")
    assert names.index("imbalance") > names.index("unimodal_acc")


# -------------------------------------------------------------------------------- training unchanged


@pytest.mark.parametrize("name", [*NAMES, "all"])
def test_probe_leaves_training_bit_identical(name, reference):
    names = NAMES if name == "all" else [name]
    state, rng, result = train("synthetic", SMALL + only(names))
    ref_state, ref_rng = reference["synthetic"]
    assert_same(state, ref_state)
    assert torch.equal(rng[0], ref_rng[0]) and np.array_equal(rng[1], ref_rng[1]) and rng[2] == ref_rng[2]
    assert_no_hooks(result.model)


def test_all_probes_leave_a_batchnorm_network_bit_identical(reference, tmp_path):
    store = RecordingStore()
    state, rng, result = train("mfeat", BN_MODEL + dense(), store=store, run_dir=tmp_path)
    assert any("running_mean" in k for k in state)
    assert_same(state, reference["mfeat"][0])
    assert torch.equal(rng[0], reference["mfeat"][1][0])
    assert_no_hooks(result.model)
    assert {"conflict/cos/pix", "val/shapley/pix", "sep/purity/fused"} <= store.keys


# --------------------------------------------------------------------------------- keys and modalities

FAMILIES = {
    "grad_norm_pre/{m}",
    "grad_norm/{m}",
    "param_dist/{m}",
    "val/acc_ncm/{m}",
    "val/acc_probe/{m}",
    "val/acc_probe/fused",
    "score/{m}",
    "ratio/{m}",
    "sep/purity/{m}",
    "sep/silhouette/{m}",
    "sep/fisher/{m}",
    "sep/purity/fused",
    "proto/intra/{m}",
    "proto/inter/{m}",
    "proto/margin/{m}",
    "proto/drift/{m}",
    "conflict/cos/{m}",
    "val/shapley/{m}",
    "imbalance/index",
    "imbalance/dominant/{m}",
    "imbalance/share/{m}",
}
HEAD_SPLIT = {"score/{m}", "ratio/{m}", "conflict/cos/{m}"}


def expected_keys(modalities, families=FAMILIES) -> set[str]:
    return {f.format(m=m) for f in families for m in modalities}


@pytest.mark.parametrize("three", [False, True], ids=["2 modalities", "3 modalities"])
def test_every_key_family_is_logged_well_formed(three, tmp_path):
    mods = ("a", "b", "c") if three else ("a", "b")
    extra = ["data.preset=custom", "data.n_modalities=3"] if three else []
    store = RecordingStore()
    train("synthetic", SMALL + extra + dense(), store=store, run_dir=tmp_path)
    assert expected_keys(mods) <= store.keys
    for key in store.keys:
        assert KEY_RE.match(key), key
        _, _, modality = parse_key(key, mods)
        if key.split("/")[-1] in (*mods, "fused"):
            assert modality == key.split("/")[-1]
    values = [r[4] for r in store.rows if r[3].startswith(("imbalance/", "val/shapley", "sep/", "proto/"))]
    assert all(np.isfinite(values))
    index = [r[4] for r in store.rows if r[3] == "imbalance/index"]
    assert all(0 <= v <= 1 for v in index)
    shares = {m: [r[4] for r in store.rows if r[3] == f"imbalance/share/{m}"] for m in mods}
    assert all(abs(sum(map(abs, s)) - 1) < 1e-6 for s in zip(*shares.values(), strict=True))
    snaps = [a for a in store.artifacts if a[1] == "snapshot"]
    assert [a[0] for a in snaps] == [1, 2] and snaps[0][3]["pred_source"] == dict.fromkeys(mods, "head")


@pytest.mark.parametrize("fusion", ["film", "gated"])
def test_fusion_without_head_split_skips_only_the_head_split_keys(fusion, tmp_path):
    store = RecordingStore()
    state, _, _ = train("synthetic", SMALL + dense() + [f"model.fusion={fusion}"], store=store, run_dir=tmp_path)
    ref, _, _ = train("synthetic", SMALL + OFF + [f"model.fusion={fusion}"])
    assert_same(state, ref)
    assert expected_keys("ab", FAMILIES - HEAD_SPLIT) <= store.keys
    assert not store.keys & (expected_keys("ab", HEAD_SPLIT) | {"val/acc/a", "val/acc/b"})
    snap = [a for a in store.artifacts if a[1] == "snapshot"][-1]
    assert snap[3]["pred_source"] == {"a": "ncm", "b": "ncm"}
    with np.load(tmp_path / snap[2]) as z:
        assert set(z["pred_a"].tolist()) <= set(range(10))


# ------------------------------------------------------------------------------ grad_norm after methods


class _TrueNorms(Hooks):
    """A test-only probe appended after the registered ones: the encoders' gradient norms right before each step."""

    name, per_step, per_epoch, order = "true_norm", True, False, 99

    def __init__(self) -> None:
        self.norms: list[dict[str, float]] = []

    def setup(self, ctx) -> None:
        self.ctx = ctx

    def due_step(self, info) -> bool:
        return True

    def on_after_backward(self, out, batch, info) -> None:
        pass

    def on_before_optimizer_step(self, out, batch, info) -> None:
        norms = {}
        for m in self.ctx.modalities:
            grads = [p.grad.flatten() for p in self.ctx.model.encoder_parameters(m) if p.grad is not None]
            norms[m] = float(torch.cat(grads).norm()) if grads else 0.0
        self.norms.append(norms)


@pytest.mark.parametrize("method", METHODS.names())
def test_grad_norm_after_modulation_matches_the_gradients_every_method_leaves(method, monkeypatch):
    """``grad_norm/<m>`` reuses the pre-modulation value when the gradients are untouched; check that every method's
    modulation is seen (a method that changed gradients behind autograd's version counters would fail here)."""
    spy = _TrueNorms()
    real = loop.create_probes
    monkeypatch.setattr(loop, "create_probes", lambda cfgs: [*real(cfgs), spy])
    factory = METHODS.get(method).factory
    fusion = fusions_with(factory.requires)[0]
    store = RecordingStore()
    sets = ["data.n_train=64", "train.batch_size=32", "train.threads=1", f"model.fusion={fusion}", *only(["grad_norm"])]
    fit(build_run_config("synthetic", method, sets, epochs=1), store, "r")
    assert spy.norms
    for m in ("a", "b"):
        logged = [r[4] for r in store.rows if r[3] == f"grad_norm/{m}"]
        assert logged == pytest.approx([n[m] for n in spy.norms], rel=1e-5, abs=1e-8), (method, m)
