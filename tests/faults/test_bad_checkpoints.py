"""Forks from files that are not whole mmviz checkpoints are refused before a run exists (issue 12 item 3)."""

import pickle
import shutil
import struct

import pytest
import torch

from mmviz.errors import MmvizError
from mmviz.launcher import prepare_run
from mmviz.store import RunStore
from mmviz.training.checkpoint import MAGIC, MAX_HEADER_BYTES, checkpoint_path, load_checkpoint, save_checkpoint
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training


class Payload:  # pickled by reference: loading it would need this class, which weights_only refuses
    pass


def _whole(tmp_path):
    save_checkpoint(tmp_path / "good.pt", {"epoch": 1, "step": 3, "model": {"w": torch.arange(6.0)}, "rng": {}})
    return (tmp_path / "good.pt").read_bytes()


def _bad_files(tmp_path) -> dict[str, bytes]:
    whole = _whole(tmp_path)
    flipped = bytearray(whole)
    flipped[-5] ^= 0x10  # one bit of a tensor
    return {
        "5 bytes": b"abcde",
        "empty": b"",
        "random": bytes(range(256)) * 8,
        "pickle": pickle.dumps({"epoch": 1, "x": Payload()}),
        "header 2**64-1": MAGIC + struct.pack("<QII", 2**64 - 1, 0, 0) + b"{}",
        "header 2**40": MAGIC + struct.pack("<QII", 2**40, 0, 0) + b"{}",
        "header over the bound": MAGIC + struct.pack("<QII", MAX_HEADER_BYTES + 1, 0, 0) + b"x" * 64,
        "flipped tensor bit": bytes(flipped),
        "magic only": MAGIC,
    }


def test_each_bad_file_is_refused_in_one_sentence(tmp_path):
    for label, content in _bad_files(tmp_path).items():
        path = tmp_path / "bad.pt"
        path.write_bytes(content)
        with pytest.raises(MmvizError) as caught:
            load_checkpoint(path)
        text = str(caught.value)
        assert str(path) in text and text.count(". ") == 0 and "weights_only" not in text, (label, text)


@pytest.fixture(scope="module")
def parent_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    store = RunStore(ws)
    cfg = build_run_config("synthetic", "baseline", ["data.n_train=240", "train.batch_size=60"], epochs=2)
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    return ws, run_id, cfg


@pytest.mark.parametrize("target", ["checkpoint", "init"])
def test_forks_from_bad_files_are_refused_before_a_run_exists(tmp_path, parent_run, target):
    ws, run_id, cfg = parent_run
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    store = RunStore(copy)
    folder = store.run_dir(run_id)
    path = checkpoint_path(folder, 2) if target == "checkpoint" else folder / "init.pt"
    fork_cfg = build_run_config(base=cfg.to_dict(), method="ogm_ge", epochs=3)
    for label, content in _bad_files(tmp_path).items():
        path.write_bytes(content)
        with pytest.raises(MmvizError) as caught:
            prepare_run(store, fork_cfg, parent_run_id=run_id, fork_epoch=2)
        assert str(path) in str(caught.value), (label, str(caught.value))
        assert len(store.list_runs()) == 1, label  # no run was created
