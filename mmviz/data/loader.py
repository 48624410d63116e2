"""Data from outside: a user's ``torch.utils.data.Dataset`` per split, batched by a ``DataLoader``.

The in-memory datasets (:class:`mmviz.data.base.MultimodalData`) stay the fast path. :class:`LoaderData` takes any
map-style datasets whose items are dicts of tensors keyed by modality name plus ``"label"`` (for example samples
loaded lazily from files), and :class:`LoaderSplit` batches them with a ``DataLoader`` (``num_workers`` worker
processes; pinned memory on CUDA) in the same order an in-memory split uses for the same generator, so a run
gives the same metrics from either. Probes and snapshots work on a fixed stratified probe subset of val drawn
through the same dataset (:meth:`LoaderSplit.subset`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from mmviz.data.base import DataDescription, ModalitySpec, stratified_subset
from mmviz.errors import ConfigError, DataError

__all__ = ["LoaderData", "LoaderSplit", "check_batch"]


def check_batch(batch: Any, modalities: Sequence[str], where: str) -> None:
    """Refuse a batch that is not a dict with a tensor per modality and a ``label`` tensor, in one sentence."""
    if not isinstance(batch, dict):
        raise ConfigError(
            f"The {where} yields {type(batch).__name__} batches; mmviz needs dict batches "
            f"({', '.join(repr(m) for m in modalities)} and 'label' -> tensors)."
        )
    missing = [k for k in (*modalities, "label") if not isinstance(batch.get(k), torch.Tensor)]
    if missing:
        raise ConfigError(
            f"The {where} yields batches without a tensor under {missing[0]!r}; they have keys "
            f"{', '.join(map(repr, batch))}, and mmviz needs {', '.join(repr(m) for m in (*modalities, 'label'))}."
        )


def _read_with_state(read: Callable[[], Any], state: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """``read()`` under torch's CPU random state ``state``; returns its result and the state after it. The global
    random state is as before the call."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(state)
        out = read()
        return out, torch.get_rng_state()


class LoaderSplit:
    """One split as a ``Dataset``, batched through a ``DataLoader``; implements :class:`mmviz.contracts.DataSplit`.

    Both ``fit()`` (:meth:`LoaderData.to_splits`, :meth:`mmviz.data.avfiles.FileData.to_splits`) and a user's own
    loop (:meth:`from_loader`, over the user's ``DataLoader``) read data from outside through this one class.

    Args:
        dataset: map-style dataset; ``dataset[i]`` is a dict of tensors (modalities and ``"label"``).
        device: where batches go.
        index: the absolute sample index of each item (added to batches as ``"index"`` unless the items carry
            their own); None: the dataset's ``index`` attribute when it has one, else the positions.
        labels: every item's label ``(N,)``; None: the dataset's ``labels`` attribute, else read once from the items.
        num_workers: DataLoader worker processes. pin_memory: default on CUDA. collate_fn: the DataLoader's.
        loader: the user's ``DataLoader`` this split was made from (:meth:`from_loader`), else None.
    """

    def __init__(
        self,
        dataset: Dataset,
        device: torch.device | str,
        *,
        index: np.ndarray | Sequence[int] | None = None,
        labels: torch.Tensor | np.ndarray | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        collate_fn: Callable | None = None,
        loader: DataLoader | None = None,
    ) -> None:
        self.dataset = dataset
        self.device = torch.device(device)
        self.num_workers = num_workers
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.loader = loader
        if index is None:
            given = getattr(dataset, "index", None)  # absolute sample indices, when the dataset has them
            index = given if given is not None and not callable(given) else np.arange(len(dataset))  # (not list.index)
        self.index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        self._labels = torch.as_tensor(np.asarray(labels), dtype=torch.long) if labels is not None else None

    @classmethod
    def from_loader(cls, loader: DataLoader, device: torch.device | str) -> LoaderSplit:
        """The split behind a user's ``DataLoader``, read with its workers, collate function and pinned memory.

        Methods and probes read a split as ``fit()`` holds it: without the training augmentation (and so without
        drawing from torch's random state) when the dataset can say how (a ``without_augmentation()`` method).
        """
        plain = getattr(loader.dataset, "without_augmentation", None)
        return cls(
            plain() if callable(plain) else loader.dataset, device, num_workers=loader.num_workers,
            pin_memory=loader.pin_memory, collate_fn=loader.collate_fn, loader=loader,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        """Every sample's label ``(N,)`` on the CPU, in split order (the dataset's ``labels``, else read once)."""
        if self._labels is None:
            labels = getattr(self.dataset, "labels", None)
            if labels is None:
                labels = [int(self.dataset[i]["label"]) for i in range(len(self))]
            self._labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        return self._labels

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches per pass."""
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def _to_device(self, batch: dict, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        batch.setdefault("index", self.index[positions])
        batch["label"] = batch["label"].long()
        return {k: v.to(self.device, non_blocking=self.pin_memory) for k, v in batch.items()}

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches; shuffled with ``generator`` as an in-memory split would (same draws), else in order.

        A dataset's own random draws (a training augmentation) never touch torch's global random state, which the
        training step owns: worker processes are seeded from the pass's order (shuffled passes; 0 in order), and
        without workers the samples are read under a random state of the pass's own, seeded the same way. So a
        run's passes are reproducible, an augmentation differs from epoch to epoch, and a probe reading a split (any
        number of times) leaves training unchanged.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        nb = self.num_batches(batch_size, drop_last)
        chunks = [order[b * batch_size : (b + 1) * batch_size].tolist() for b in range(nb)]
        seed = hash(tuple(order[:64].tolist())) % 2**62 if generator is not None else 0  # (ints hash to themselves)
        loader = DataLoader(
            self.dataset, batch_sampler=chunks, num_workers=self.num_workers, collate_fn=self.collate_fn,
            pin_memory=self.pin_memory, persistent_workers=False,
            generator=torch.Generator().manual_seed(seed),  # the workers' base seed
        )  # fmt: skip
        batches = iter(loader)
        state = torch.Generator().manual_seed(seed).get_state()  # the in-process reads' own random state
        for chunk in chunks:
            if self.num_workers:
                batch = next(batches)
            else:
                batch, state = _read_with_state(lambda: next(batches), state)
            yield self._to_device(dict(batch), torch.as_tensor(chunk))

    def subset(self, positions: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """The samples at the given positions, as one batch (read through the dataset)."""
        pos = [int(p) for p in np.asarray(positions).reshape(-1)]
        items, _ = _read_with_state(
            lambda: [self.dataset[p] for p in pos], torch.Generator().manual_seed(0).get_state()
        )
        return self._to_device(dict(self.collate_fn(items)), torch.as_tensor(pos))


@dataclasses.dataclass
class LoaderData(DataDescription):
    """A run's data as one map-style ``Dataset`` per split (train, val, test), loaded by ``DataLoader`` workers.

    Attributes:
        train, val, test: the splits, each a ``Dataset`` or a ``DataLoader`` over one; each item a dict of tensors
            keyed by modality name plus ``"label"``. A ``DataLoader``'s workers, collate function and pinned memory
            are used; its batch size and order are not: ``fit()`` batches with ``train.batch_size`` and shuffles with
            the run's seed, so runs are reproducible.
        modalities: the modality specs (name, kind, per-sample shape), in the fixed order.
        classes: class names (labels are ``0 .. C-1``).
        num_workers: DataLoader worker processes per pass.
        probe_size: size of the fixed stratified probe subset of val (snapshots).
        labels: optional per split labels ``(N,)`` (else read once from the items).

    Samples get absolute indices train first, then val, then test.
    """

    train: Dataset | DataLoader
    val: Dataset | DataLoader
    test: Dataset | DataLoader
    modalities: tuple[ModalitySpec, ...]
    classes: tuple[str, ...]
    num_workers: int = 0
    probe_size: int = 2000
    labels: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    name: str = "loader"

    def __post_init__(self) -> None:
        start = 0
        self.splits: dict[str, np.ndarray] = {}
        self._loaders: dict[str, DataLoader] = {}
        for split in ("train", "val", "test"):
            given = getattr(self, split)
            if isinstance(given, DataLoader):
                self._loaders[split] = given
                setattr(self, split, given.dataset)
            n = len(getattr(self, split))
            if n == 0:
                raise DataError(f"The {split!r} dataset given to LoaderData is empty.")
            check_batch(getattr(self, split)[0], self.modality_names, f"{split!r} dataset given to LoaderData")
            self.splits[split] = np.arange(start, start + n)
            start += n
        self.num_samples = start
        self._val_labels: np.ndarray | None = None

    def to_splits(self, device: torch.device) -> dict[str, LoaderSplit]:
        """The three splits as :class:`LoaderSplit` on ``device``."""
        out = {}
        for s in ("train", "val", "test"):
            loader = self._loaders.get(s)
            reading = {"num_workers": self.num_workers}
            if loader is not None:
                reading = {"num_workers": loader.num_workers, "collate_fn": loader.collate_fn}
                reading["pin_memory"] = loader.pin_memory or None  # pinned on CUDA in any case
            out[s] = LoaderSplit(getattr(self, s), device, index=self.splits[s], labels=self.labels.get(s), **reading)
        self._val_labels = out["val"].labels.numpy()
        return out

    @property
    def probe_index(self) -> np.ndarray:
        """Absolute indices of the fixed stratified probe subset of val (after :meth:`to_splits`)."""
        labels = self._val_labels
        if labels is None:
            labels = np.asarray([int(self.val[i]["label"]) for i in range(len(self.val))])
            self._val_labels = labels
        return stratified_subset(self.splits["val"], labels, self.probe_size, seed=0)
