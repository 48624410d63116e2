"""The checkpoint file format: exact round trips, old torch.save files, damaged files, no code on load."""

import math
import time
from collections import OrderedDict

import pytest
import torch

from mmviz.errors import StoreError
from mmviz.training.checkpoint import MAGIC, CheckpointWriter, check_checkpoint, load_checkpoint, save_checkpoint


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    return model, opt


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def test_a_training_state_round_trips_exactly(tmp_path):
    model, opt = _model_and_optimizer()
    state = {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),  # int keys, tuples (betas), 0-dim step tensors
        "rng": {"torch": torch.get_rng_state(), "data": torch.Generator().manual_seed(5).get_state()},
        "odd": {
            "bf16": torch.randn(5).bfloat16(),
            "bool": torch.tensor([True, False, True]),
            "int": torch.arange(6, dtype=torch.int64).reshape(2, 3),
            "transposed": torch.arange(12.0).reshape(3, 4).t(),
            "empty": torch.zeros(0, 4),
            "scalars": [None, True, 7, -2.5, float("inf"), float("nan"), "text", (1, (2, 3))],
        },
    }
    save_checkpoint(tmp_path / "c.pt", state)
    assert (tmp_path / "c.pt").read_bytes().startswith(MAGIC)
    loaded = load_checkpoint(tmp_path / "c.pt")
    _assert_same(state, loaded)
    assert loaded["model"]._metadata == state["model"]._metadata  # module versions kept
    # the loaded state restores a fresh model and optimiser, and tensors are independent copies
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    fresh.load_state_dict(loaded["model"])
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    fresh_opt.load_state_dict(loaded["optimizer"])
    loaded["model"]["0.weight"].add_(1.0)
    assert not torch.equal(loaded["model"]["0.weight"], model.state_dict()["0.weight"])


def test_plain_torch_save_files_still_load(tmp_path):
    model, _ = _model_and_optimizer()
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded["epoch"] == 1 and isinstance(loaded["model"], OrderedDict)


def test_missing_and_damaged_files_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    model, opt = _model_and_optimizer()
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict()})
    data = (tmp_path / "c.pt").read_bytes()
    check_checkpoint(tmp_path / "c.pt", keys=("model", "optimizer"))
    (tmp_path / "short.pt").write_bytes(data[: len(data) - 100])  # a torn write
    with pytest.raises(StoreError, match="cut short"):
        load_checkpoint(tmp_path / "short.pt")
    with pytest.raises(StoreError, match="cut short"):
        check_checkpoint(tmp_path / "short.pt")
    (tmp_path / "header.pt").write_bytes(data[:40])
    with pytest.raises(StoreError, match="damaged"):
        load_checkpoint(tmp_path / "header.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(StoreError, match="not an mmviz checkpoint"):
        load_checkpoint(tmp_path / "text.pt")


def test_an_unsupported_value_is_refused_and_leaves_no_file(tmp_path):
    with pytest.raises(TypeError, match="Cannot checkpoint a value of type object"):
        save_checkpoint(tmp_path / "c.pt", {"x": object()})
    assert not list(tmp_path.iterdir())


def test_the_folder_is_created_and_writes_replace_atomically(tmp_path):
    path = tmp_path / "run" / "checkpoints" / "epoch_0001.pt"
    save_checkpoint(path, {"a": torch.ones(2)})
    save_checkpoint(path, {"a": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["a"], torch.zeros(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_0001.pt"]  # no temp file left


@pytest.mark.parametrize("background", [False, True])
def test_writer_snapshots_the_state_it_was_given(tmp_path, background):
    t = torch.ones(3)
    writer = CheckpointWriter(background=background)
    done = []
    writer.submit(tmp_path / "a.pt", {"t": t}, lambda: done.append(1))
    t.add_(1.0)  # training goes on after submit returns
    writer.close()
    assert done == [1] and torch.equal(load_checkpoint(tmp_path / "a.pt")["t"], torch.ones(3))


def test_a_background_write_keeps_a_state_dicts_order_and_metadata(tmp_path):
    """The background writer (the GPU path) copies the state first; a model's state dict must come back as one
    (an OrderedDict with ``_metadata``), as the in-place write keeps it."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = {"model": model.state_dict(), "step": torch.tensor(4)}
    for background in (False, True):
        writer = CheckpointWriter(background=background)
        writer.submit(tmp_path / f"{background}.pt", state)
        writer.close()
        loaded = load_checkpoint(tmp_path / f"{background}.pt")["model"]
        assert isinstance(loaded, OrderedDict) and list(loaded) == list(model.state_dict())
        assert loaded._metadata == model.state_dict()._metadata


@pytest.mark.parametrize("clone", [True, False])
def test_host_copy_of_cpu_tensors(clone):
    from mmviz.measures.features import HostCopy

    t = torch.ones(2)
    state = OrderedDict(a=t, b=[t, (1, "x")])
    state._metadata = {"": {"version": 1}}
    copy = HostCopy(state, clone=clone)
    t.add_(1.0)
    out = copy.result()
    assert not copy.pending and out._metadata == {"": {"version": 1}} and out["b"][1] == (1, "x")
    assert torch.equal(out["a"], torch.ones(2) if clone else t)
    assert (out["a"].data_ptr() == t.data_ptr()) is not clone  # without clone: the same memory, no copy


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_host_copy_of_cuda_tensors_is_pinned_and_survives_later_updates():
    from mmviz.measures.features import HostCopy

    t = torch.ones(1 << 20, device="cuda")
    copy = HostCopy({"t": t})
    t.add_(1.0)  # queued after the copy on the same stream
    out = copy.result()["t"]
    assert out.is_pinned() and not out.is_cuda and torch.equal(out, torch.ones(1 << 20))


def test_a_failed_background_write_is_raised_by_the_next_submit(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    writer = CheckpointWriter(background=True)
    writer.submit(blocked / "a.pt", {"t": torch.ones(1)})  # its folder cannot be created
    deadline = time.monotonic() + 30
    while writer._pending and not writer._pending[0].done() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(OSError):
        writer.submit(tmp_path / "b.pt", {"t": torch.ones(1)})
    writer.close()
