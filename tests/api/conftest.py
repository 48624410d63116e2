"""A tiny dict-batch dataset and model for the own-loop API tests."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from models import MultimodalNet


class TwoModalities(Dataset):
    """``n`` samples of 3 classes: modality ``a`` (8-d) is informative, ``b`` (6-d) barely."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.a = torch.randn(n, 8, generator=g) + 1.5 * self.y[:, None]
        self.b = torch.randn(n, 6, generator=g) + 0.3 * self.y[:, None]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"a": self.a[i], "b": self.b[i], "label": self.y[i]}


def tiny_setup(seed: int = 0):
    """A contract model, its optimiser and train / val loaders (3 batches per epoch)."""
    torch.manual_seed(seed)
    model = MultimodalNet([("a", "vector", (8,)), ("b", "vector", (6,))], 3, feature_dim=16, hidden_dim=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train = DataLoader(TwoModalities(48, 0), batch_size=16, shuffle=True)
    val = DataLoader(TwoModalities(30, 1), batch_size=32)
    return model, opt, train, val


def train_epochs(run, model, opt, train, epochs: int) -> None:
    """The user's plain loop with the API's calls."""
    for _ in range(epochs):
        for batch in train:
            batch = run.transform(batch)
            out = model(batch)
            loss = run.loss(out, batch)
            opt.zero_grad()
            loss.backward()
            run.after_backward(out, batch, loss)
            opt.step()
        run.end_epoch()


@pytest.fixture
def tiny():
    """:func:`tiny_setup`."""
    return tiny_setup


@pytest.fixture
def loop():
    """:func:`train_epochs`."""
    return train_epochs
