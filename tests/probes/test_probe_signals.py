"""Done-when checks: real runs store every probe's key family, the CLI export shows them, and on the synthetic preset
where modality 'a' dominates by construction the exported signals say so."""

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmviz.launcher import prepare_run
from mmviz.probes import PROBES
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.loop import NullStore, fit

ROOT = Path(__file__).resolve().parents[2]
# Every key family of the probes, per modality ({m}) or not.
FAMILIES = [
    "grad_norm_pre/{m}", "grad_norm/{m}", "param_dist/{m}", "val/acc_ncm/{m}", "val/acc_probe/{m}",
    "val/acc_probe/fused", "score/{m}", "ratio/{m}", "sep/purity/{m}", "sep/silhouette/{m}", "sep/fisher/{m}",
    "sep/purity/fused", "sep/silhouette/fused", "sep/fisher/fused", "proto/intra/{m}", "proto/inter/{m}",
    "proto/margin/{m}", "proto/drift/{m}", "conflict/cos/{m}", "val/shapley/{m}", "imbalance/index",
    "imbalance/dominant/{m}", "imbalance/share/{m}",
]  # fmt: skip
# The default cadences, plus the logistic-regression probe (off by default) and a shorter conflict period so a
# three-epoch run has them too.
# The default probe set (cadences and cost budgets) plus the logistic-regression probe, which is off by default.
EXTRA = ["probes.unimodal_acc.probe_every=1", "train.threads=1"]
NO_BUDGET = [f"probes.{name}.max_overhead=0" for name in PROBES.names()]  # deterministic: every due call runs


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def train_and_export(tmp_path: Path, dataset: str, sets: list[str], epochs: int) -> tuple[RunStore, str, pd.DataFrame]:
    """Train in-process into a real store, then read the metrics back through ``python -m mmviz export``."""
    store = RunStore(tmp_path / "ws")
    cfg = build_run_config(dataset, "baseline", sets, epochs=epochs, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id))
    out = subprocess.run(
        [sys.executable, "-m", "mmviz", "export", run_id, "--format", "csv", "--workspace", str(tmp_path / "ws")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return store, run_id, pd.read_csv(io.StringIO(out.stdout))


class RecordingKeys(NullStore):
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def log_batch(self, run_id, rows, **extra) -> None:
        self.keys.update(r[3] for r in rows)


def expected(modalities) -> set[str]:
    return {f.format(m=m) for f in FAMILIES for m in modalities}


def test_mfeat_run_stores_and_exports_every_key_family(tmp_path):
    store, run_id, df = train_and_export(tmp_path, "mfeat", [*EXTRA, *NO_BUDGET], epochs=3)
    assert expected(["pix", "fou"]) <= set(df.key)
    row = df[df.key == "sep/purity/fused"].iloc[0]
    assert (row.split if isinstance(row.split, str) else None, row.quantity, row.modality) == (
        None,
        "sep/purity",
        "fused",
    )
    assert list(df[df.key == "grad_norm_pre/pix"].step) == list(range(66))  # 3 x 22 steps
    assert list(df[df.key == "conflict/cos/fou"].step) == [0, 20, 40, 60]
    snaps = store.load_artifacts(run_id, kind="snapshot")
    assert list(snaps.epoch) == [1, 2, 3] and all((store.run_dir(run_id) / p).is_file() for p in snaps.path)


def test_default_budgets_still_log_every_probe_on_a_short_run():
    """With the default cost budgets a probe thins out but each one logs (the last epoch always runs)."""
    store = RecordingKeys()
    fit(build_run_config("synthetic", "baseline", ["data.n_train=200", "train.threads=1"], epochs=2), store, "r")
    families = set(FAMILIES) - {"val/acc_probe/{m}", "val/acc_probe/fused", "proto/drift/{m}"}  # probe off; 1 point
    assert {f.format(m=m) for f in families for m in "ab"} <= store.keys


@pytest.fixture(scope="module")
def dominant(tmp_path_factory) -> pd.DataFrame:
    """Three epochs on the 'dominant' synthetic preset (a: 1 Gaussian per class; b: 4 sub-clusters per class)."""
    n = torch.get_num_threads()
    try:
        sets = [*EXTRA, *NO_BUDGET, "data.preset=dominant", "probes.grad_conflict.every_n_steps=20"]
        return train_and_export(tmp_path_factory.mktemp("dominant"), "synthetic", sets, epochs=3)[2]
    finally:
        torch.set_num_threads(n)


def last(df: pd.DataFrame, key: str) -> float:
    return float(df[df.key == key].sort_values("step").value.iloc[-1])


def test_dominant_preset_stores_every_key_family(dominant):
    assert expected("ab") <= set(dominant.key)


def test_dominant_modality_has_larger_early_gradients(dominant):
    # measured over seeds 0-2: mean over the first epoch's steps a ~0.42, b ~0.375 (+12%)
    first = dominant[dominant.epoch < 1]
    mean = {m: first[first.key == f"grad_norm_pre/{m}"].value.mean() for m in "ab"}
    assert mean["a"] > 1.05 * mean["b"]


def test_dominant_modality_has_the_larger_shapley_share_and_is_named_dominant(dominant):
    # measured over seeds 0-2 (epochs 1-3): share of a 0.64-0.71
    shares = dominant[dominant.key == "imbalance/share/a"].value
    assert (shares > 0.55).all()
    named = dominant[dominant.key.str.startswith("imbalance/dominant/") & (dominant.value == 1)]
    assert len(named) and (named.modality == "a").all()  # the export names the dominant modality
    assert last(dominant, "val/shapley/a") > last(dominant, "val/shapley/b")
    assert 0.15 < last(dominant, "imbalance/index") < 0.6


def test_dominant_modality_has_the_higher_probe_accuracy_and_separability(dominant):
    # measured over seeds 0-2 at epoch 3: probe a 0.82-0.84 vs b 0.61-0.65; purity a 0.68-0.84 vs b 0.43-0.52
    assert last(dominant, "val/acc_probe/a") > last(dominant, "val/acc_probe/b") + 0.1
    assert last(dominant, "val/acc_ncm/a") > last(dominant, "val/acc_ncm/b") + 0.1
    assert last(dominant, "sep/purity/a") > last(dominant, "sep/purity/b")
    assert last(dominant, "sep/silhouette/a") > last(dominant, "sep/silhouette/b")
    assert last(dominant, "proto/margin/a") > last(dominant, "proto/margin/b")
    assert last(dominant, "val/acc_probe/fused") >= last(dominant, "val/acc_probe/a")
    ratio = dominant[dominant.key == "ratio/a"].value
    assert ratio[dominant.epoch >= 1].mean() > 1.2  # a is the more confident modality (OGM-GE's rho > 1)
