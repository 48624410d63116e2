"""Honest imbalance signals on real training runs (issue 14): two copies of one modality read as balanced, and a
modality of pure noise reads as adding nothing, in the stored index, shares, dominant name and the banner.

Data: mfeat's 'pix' view (bundled), written as a user ``arrays`` file with a second modality that is either an
exact copy (two encoders, one input) or standard normal noise. Only the probes under test run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mmviz.analysis.summary import compute_imbalance_banner
from mmviz.data.mfeat import BUNDLED
from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit

EPOCHS = 7
KEEP = {"shapley", "imbalance", "separability"}


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def train(tmp_path, second: str) -> tuple[pd.DataFrame, dict]:
    with np.load(BUNDLED) as z:
        x, y = z["pix"].astype(np.float32), z["label"]
    b = x.copy() if second == "copy" else np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    path = tmp_path / f"{second}.npz"
    np.savez(path, a=x, b=b, label=y)
    sets = [f"probes.{n}.enabled=false" for n in PROBES.names() if n not in KEEP]
    sets += [f"data.path={path}", "data.val_fraction=0.3", "train.threads=1"]
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config("arrays", "baseline", sets, epochs=EPOCHS, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id))
    return store.load_metrics(run_id), store.get_run(run_id)


def per_epoch(frame: pd.DataFrame, key: str) -> pd.Series:
    rows = frame[frame["key"] == key]
    return pd.Series(rows["value"].to_numpy(), index=rows["epoch"].round().astype(int)).sort_index()


def test_two_copies_of_one_modality_read_as_balanced(tmp_path):
    frame, _ = train(tmp_path, "copy")
    index = per_epoch(frame, "imbalance/index")
    purity_a, purity_b = per_epoch(frame, "sep/purity/a"), per_epoch(frame, "sep/purity/b")
    assert len(index) == EPOCHS
    last5 = index.index[-5:]
    assert index[last5].mean() <= 0.05 and index[last5].max() <= 0.10, index.round(3).tolist()
    assert index.max() <= 0.10, index.round(3).tolist()  # at every epoch, not only at the end
    assert abs(purity_a[last5].mean() - purity_b[last5].mean()) <= 0.03, (purity_a.tolist(), purity_b.tolist())


def test_a_modality_of_pure_noise_reads_as_adding_nothing(tmp_path):
    frame, run = train(tmp_path, "noise")
    last5 = per_epoch(frame, "imbalance/index").index[-5:]
    share_b = per_epoch(frame, "imbalance/share/b")[last5]
    index = per_epoch(frame, "imbalance/index")[last5]
    assert (share_b.abs() <= 0.02).all(), share_b.round(4).tolist()  # zero (within val-set noise), or below
    assert ((index - 0.5).abs() <= 0.02).all(), index.round(4).tolist()  # 0.5: the weakest adds nothing
    dominant = frame[frame["key"].str.startswith("imbalance/dominant/") & (frame["value"] == 1.0)]
    assert set(dominant["modality"]) == {"a"}  # stored by name
    banner = compute_imbalance_banner(run, frame, {})
    assert banner.dominant == "a" and abs(banner.shares["b"]) <= 0.02 and banner.level == "warning"
    assert any(line.startswith("b adds nothing to val accuracy") for line in banner.lines), banner.lines
