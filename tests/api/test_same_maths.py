"""Every balancing method applied from a user's loop through mmviz.api gives exactly what it gives inside fit().

Same data in the same order, same seed, same optimiser: after two epochs (steps, evaluations and the methods'
epoch ends) every parameter is bit-for-bit equal, so every gradient the method produced was identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import mmviz.api
from mmviz.balancing import METHODS
from mmviz.data import create_dataset
from mmviz.probes import PROBES
from mmviz.store import open_store
from mmviz.training.build import build_model, build_optimizer, fusions_with
from mmviz.training.config import build_run_config
from mmviz.training.loop import NullStore, fit

EPOCHS = 2


class RecordingStore(NullStore):
    """Keeps the values fit() logs, per key in step order."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def log_batch(self, run_id, rows, *, events=(), artifacts=(), heartbeat=None) -> None:
        for _, _, _, key, value in rows:
            self.values.setdefault(key, []).append(value)


class ArraysDataset(Dataset):
    """The in-memory dataset's samples of one split as dict samples (what a user's Dataset yields)."""

    def __init__(self, data, split: str) -> None:
        self.data, self.idx = data, data.splits[split]

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict:
        j = int(self.idx[i])
        out = {m: torch.as_tensor(self.data.x[m][j]) for m in self.data.modality_names}
        return {**out, "label": torch.tensor(int(self.data.y[j])), "index": torch.tensor(j)}


class FitOrder(Sampler):
    """fit()'s shuffling: one ``randperm`` per epoch from a generator seeded with the run's seed."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.g = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.g).tolist())


def _config(name: str):
    factory = METHODS.get(name).factory
    fusion = fusions_with(factory.requires)[0]
    sets = ["data.n_train=120", "train.batch_size=32", f"model.fusion={fusion}", "optim.name=sgd", "optim.lr=0.05"]
    sets += [f"probes.{e.name}.enabled=false" for e in PROBES]
    return build_run_config("synthetic", name, sets, epochs=EPOCHS)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_from_your_loop_equals_fit(name, tmp_path):
    cfg = _config(name)
    recorded = RecordingStore()
    inside = fit(cfg, recorded, save_checkpoints=False)

    data = create_dataset(cfg.dataset, cfg.data)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data)
    optimizer = build_optimizer(cfg.optim, [list(model.parameters())])
    train = ArraysDataset(data, "train")
    loader = DataLoader(train, batch_size=cfg.train.batch_size, sampler=FitOrder(len(train), cfg.train.seed),
                        generator=torch.Generator())  # fmt: skip
    val = DataLoader(ArraysDataset(data, "val"), batch_size=256, generator=torch.Generator())
    with mmviz.api.watch(
        model, train_loader=loader, val_loader=val, epochs=EPOCHS, optimizer=optimizer, method=name,
        method_params=cfg.method_params.to_dict(), probes={e.name: False for e in PROBES}, workspace=tmp_path,
        eval_batch_size=cfg.train.eval_batch_size, seed=cfg.train.seed, num_samples=len(data.y),
    ) as run:  # fmt: skip
        for _ in range(EPOCHS):
            for batch in loader:
                if run.method.replaces_step:
                    run.training_step(batch)
                    continue
                batch = run.transform(batch)
                out = model(batch)
                loss = run.loss(out, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                run.after_backward(out, batch, loss)
                optimizer.step()
            run.end_epoch()
    # the same loss at every step, the same val loss after every epoch: the same gradients all along
    mine = open_store(tmp_path).load_metrics(run.run_id, ["train/loss", "val/loss"])
    for key in ("train/loss", "val/loss"):
        got = mine[mine.key == key].sort_values("step")["value"].tolist()
        assert got == recorded.values[key], f"{name}: {key} differs"
        assert len(got) == (EPOCHS if key == "val/loss" else EPOCHS * len(loader)) and np.all(np.isfinite(got))
    if inside.best_epoch == EPOCHS:  # fit() ends on its best-on-val weights: comparable when that is the last
        for (k, a), b in zip(inside.model.state_dict().items(), model.state_dict().values(), strict=True):
            assert torch.equal(a, b), f"{name}: {k} differs"
    assert run.best_val_acc == inside.best_val_acc
