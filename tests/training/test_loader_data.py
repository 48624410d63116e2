"""fit() on a user's Dataset per split, loaded lazily from files by DataLoader workers, gives the same metrics as the
same data in memory (same seed, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from mmviz.data import create_dataset
from mmviz.data.loader import LoaderData
from mmviz.data.synthetic import SyntheticConfig
from mmviz.training.config import build_run_config
from mmviz.training.loop import NullStore, fit


class FileDataset(Dataset):
    """One .npy file per sample and modality, read only when the item is asked for (as a large dataset would be)."""

    def __init__(self, folder, index: np.ndarray, modalities: tuple[str, ...]) -> None:
        self.folder, self.index, self.modalities = folder, index, modalities
        self.reads = 0

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.reads += 1
        k = int(self.index[i])
        item = {m: torch.from_numpy(np.load(self.folder / f"{k}_{m}.npy")) for m in self.modalities}
        item["label"] = torch.tensor(int(np.load(self.folder / f"{k}_label.npy")))
        item["index"] = torch.tensor(k)
        return item


class Recording(NullStore):
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def log_batch(self, run_id, rows, *, events=(), artifacts=(), heartbeat=None) -> None:
        self.rows.extend(rows)


def metrics(store: Recording) -> dict[tuple[str, int], float]:
    return {(r[3], r[0]): r[4] for r in store.rows if not r[3].startswith("sys/")}


@pytest.mark.parametrize("workers", [0, 2])
def test_a_lazily_loaded_file_dataset_gives_the_in_memory_metrics(tmp_path, workers):
    data = create_dataset("synthetic", SyntheticConfig(n_train=120))
    for k in range(len(data.y)):
        for m in data.modality_names:
            np.save(tmp_path / f"{k}_{m}.npy", data.x[m][k])
        np.save(tmp_path / f"{k}_label.npy", data.y[k])
    files = LoaderData(
        *(FileDataset(tmp_path, data.splits[s], data.modality_names) for s in ("train", "val", "test")),
        modalities=data.modalities,
        classes=data.classes,
        num_workers=workers,
    )
    # the same absolute indices as the in-memory splits (LoaderData numbers train, val, test in order)
    order = np.concatenate([data.splits[s] for s in ("train", "val", "test")])
    memory = create_dataset("synthetic", SyntheticConfig(n_train=120))
    memory.splits = {s: np.searchsorted(order, order[files.splits[s]]) for s in files.splits}
    memory.x = {m: v[order] for m, v in memory.x.items()}
    memory.y = memory.y[order]
    memory.probe_index = files.probe_index
    budgets = [f"probes.{p}.max_overhead=0" for p in ("grad_norm", "score_ratio", "grad_conflict")]  # deterministic
    sets = ["data.n_train=120", "train.batch_size=32", "probes.snapshots.enabled=false", *budgets]
    cfg = build_run_config("synthetic", "ogm_ge", sets, epochs=2)
    a, b = Recording(), Recording()
    ra = fit(cfg, a, "a", data=memory)
    rb = fit(cfg, b, "b", data=files)
    assert files.train.reads > 0 and files.val.reads > 0  # really read through the datasets
    ma, mb = metrics(a), metrics(b)
    assert ma.keys() == mb.keys() and len(ma) > 50
    assert all(mb[k] == pytest.approx(ma[k], rel=1e-5, abs=1e-6) for k in ma), [k for k in ma if ma[k] != mb[k]][:5]
    assert rb.test == pytest.approx(ra.test, rel=1e-6)


class Augmenting(Dataset):
    """Items whose augmentation draws from torch's global random state, as a training transform does."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"a": torch.full((2,), float(i)) + torch.rand(2), "label": torch.tensor(i % 2)}


def test_a_split_reads_an_augmenting_dataset_without_touching_the_training_random_state():
    from mmviz.data.loader import LoaderSplit

    def epochs(split, probe_reads: int):
        """Two shuffled passes as fit() makes them (one generator), with a probe's reads of the split in between."""
        g = torch.Generator().manual_seed(1)
        out = []
        for _ in range(2):
            out.append(torch.cat([b["a"] for b in split.batches(4, g)]))
            for _ in range(probe_reads):
                list(split.batches(3))
                split.subset([0, 3])
        return out

    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, second = epochs(LoaderSplit(Augmenting(), "cpu"), probe_reads=2)
    assert torch.equal(torch.get_rng_state(), before)  # dropout etc. in the training step see the same draws
    assert not torch.allclose(first, second)  # the augmentation differs from epoch to epoch
    again = epochs(LoaderSplit(Augmenting(), "cpu"), probe_reads=0)
    assert torch.equal(again[0], first) and torch.equal(again[1], second)  # reproducible, whatever probes read
