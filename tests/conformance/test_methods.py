"""Every registered balancing method: defaults build, config and state round-trip, one finite CPU step that
moves parameters, the input batch untouched, well-formed metric keys, no hooks left, exact fork resume."""

import re

import pytest
import torch
from torch import nn

from mmviz.balancing import METHODS, create_method
from mmviz.data.base import TensorSplit
from mmviz.probes import PROBES
from mmviz.training.build import fusions_with
from mmviz.training.checkpoint import load_checkpoint, save_checkpoint
from mmviz.training.config import build_run_config
from mmviz.training.loop import NullStore, Resume, fit

NAMES = METHODS.names()
KEY_RE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
ONE_STEP = ["data.n_train=50", "train.batch_size=64"]  # one optimiser step per epoch
NO_PROBES = [f"probes.{entry.name}.enabled=false" for entry in PROBES]  # methods alone (probes have their own tests)


class RecordingStore(NullStore):
    """Keeps the metric keys and events a run writes."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.events: list[tuple] = []

    def log_batch(self, run_id, rows, *, events=(), artifacts=(), heartbeat=None) -> None:
        self.keys.update(r[3] for r in rows)
        self.events.extend(events)


def run_config(name: str, sets=(), epochs: int = 1, three: bool = False):
    """A tiny synthetic run of method ``name`` on a fusion the method accepts."""
    factory = METHODS.get(name).factory
    fusion = fusions_with(factory.requires)[0]
    extra = ["data.preset=custom", "data.n_modalities=3"] if three else []
    return build_run_config(
        "synthetic", name, [*ONE_STEP, *NO_PROBES, f"model.fusion={fusion}", *extra, *sets], epochs=epochs
    )


def all_equal(a, b) -> bool:
    """Recursive equality of plain state (tensors, numbers, strings, lists, tuples, dicts)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(all_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(all_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def modules_of(result) -> list[nn.Module]:
    """The model plus every module a method holds (extra modules and nn.Module attributes)."""
    found = [result.model, *result.method.extra_modules().values()]
    found += [v for v in vars(result.method).values() if isinstance(v, nn.Module)]
    return found


@pytest.mark.parametrize("name", NAMES)
def test_defaults_build_and_config_round_trips(name):
    entry = METHODS.get(name)
    method = create_method(name)
    assert isinstance(method.config, entry.config_cls)
    assert entry.summary, f"method {name!r} has no description"
    cfg = entry.config_cls()
    again = entry.config_cls.from_dict(cfg.to_dict())
    assert again == cfg and again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("name", NAMES)
def test_one_step_is_finite_moves_parameters_and_leaves_no_trace(name, tmp_path, monkeypatch):
    seen: list[tuple[dict, dict]] = []
    original = TensorSplit.batches

    def recording_batches(self, batch_size, generator=None, drop_last=False):
        for batch in original(self, batch_size, generator, drop_last):
            if generator is not None:  # the training split
                seen.append((batch, {k: v.clone() for k, v in batch.items()}))
            yield batch

    monkeypatch.setattr(TensorSplit, "batches", recording_batches)
    store = RecordingStore()
    result = fit(run_config(name), store, "t", tmp_path)
    assert result.steps == 1 and seen
    # finite and moved
    init = load_checkpoint(tmp_path / "init.pt")
    params = dict(result.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    assert any(not torch.equal(params[k].detach().cpu(), init[k]) for k in params)
    # the input batch was not mutated
    for batch, copy in seen:
        assert batch.keys() == copy.keys()
        assert all(torch.equal(batch[k], copy[k]) for k in copy), f"{name} mutated its input batch"
    # only well-formed keys
    bad = sorted(k for k in store.keys if not KEY_RE.match(k))
    assert not bad, f"{name} logged malformed keys {bad}"
    # no hooks left on any module or parameter
    for mod in modules_of(result):
        for sub in mod.modules():
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
                assert not getattr(sub, attr, {}), f"{name} left a {attr} on {type(sub).__name__}"
        for p in mod.parameters():
            assert not getattr(p, "_backward_hooks", None), f"{name} left a tensor hook"
            assert not getattr(p, "_post_accumulate_grad_hooks", None), f"{name} left a tensor hook"
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_backward_hooks


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trips_through_a_checkpoint_file(name, tmp_path):
    result = fit(run_config(name))
    state = result.method.state_dict()
    save_checkpoint(tmp_path / "m.pt", {"method": state})
    loaded = load_checkpoint(tmp_path / "m.pt")["method"]
    assert all_equal(state, loaded)
    result.method.load_state_dict(loaded)
    assert all_equal(result.method.state_dict(), state)


@pytest.mark.parametrize("name", NAMES)
def test_three_modalities_take_a_finite_step_unless_the_method_needs_two(name):
    if "two_modalities" in METHODS.get(name).factory.requires:
        pytest.skip(f"{name} works with exactly two modalities")
    result = fit(run_config(name, three=True))
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_fork_from_a_checkpoint_resumes_exactly(name, tmp_path):
    sets = ["data.n_train=96", "train.batch_size=32"]
    cfg = run_config(name, sets, epochs=2)
    parent = fit(cfg, NullStore(), "p", tmp_path / "p")
    resume = Resume(tmp_path / "p" / "checkpoints" / "epoch_0001.pt", tmp_path / "p" / "init.pt", same_method=True)
    fit(cfg, NullStore(), "c", tmp_path / "c", resume=resume)
    end_p = load_checkpoint(tmp_path / "p" / "checkpoints" / "epoch_0002.pt")
    end_c = load_checkpoint(tmp_path / "c" / "checkpoints" / "epoch_0002.pt")
    assert parent.steps == end_c["step"]
    assert all_equal(end_p["model"], end_c["model"]), f"{name}: the forked model differs from its parent"
    assert all_equal(end_p["method"], end_c["method"]), f"{name}: the forked method state differs from its parent"
