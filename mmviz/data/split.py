"""Tensor splits: one split of an in-memory dataset on a device, batched (implements ``mmviz.contracts.DataSplit``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mmviz.data.base import MultimodalData


class TensorSplit:
    """One split of a dataset held as tensors on a device, iterated in mini-batches.

    Batches are ``dict[str, Tensor]`` keyed by modality name plus ``"label"`` and ``"index"`` (the
    absolute sample index, used e.g. to mark samples of dropped batches).
    """

    def __init__(self, data: MultimodalData, index: np.ndarray, device: torch.device) -> None:
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        self.modalities = data.modality_names
        self.tensors = {m: torch.as_tensor(data.x[m][idx.numpy()]).to(device) for m in self.modalities}
        self.tensors["label"] = torch.as_tensor(data.y[idx.numpy()], dtype=torch.long).to(device)
        self.tensors["index"] = idx.to(device)
        self.device = device

    def __len__(self) -> int:
        return int(self.tensors["label"].shape[0])

    @property
    def labels(self) -> torch.Tensor:
        """Every sample's label ``(N,)``, in split order (on the split's device)."""
        return self.tensors["label"]

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches per pass."""
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches; shuffled with ``generator`` (a CPU generator) when given, else in order."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order.to(self.device)
        nb = self.num_batches(batch_size, drop_last)
        for b in range(nb):
            sel = order[b * batch_size : (b + 1) * batch_size]
            yield {k: v.index_select(0, sel) for k, v in self.tensors.items()}

    def subset(self, positions: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """The samples at the given positions of this split, as one batch."""
        sel = torch.as_tensor(np.asarray(positions), dtype=torch.long, device=self.device)
        return {k: v.index_select(0, sel) for k, v in self.tensors.items()}
