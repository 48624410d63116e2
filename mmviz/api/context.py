"""The bridge from a user's loop to what methods and probes read: the run context over the user's DataLoaders.

Methods and probes see a run through :class:`mmviz.training.context.TrainContext`; inside ``fit()`` its splits are
in-memory tensors. Here they are the user's ``DataLoader``s (:class:`LoaderSplit`): batches come from the loader
in its own order (moved to the model's device), chosen samples from its dataset, and the fixed probe subset for
snapshots is drawn once from val. Everything else is the same object ``fit()`` hands over, so a method or probe
runs the same code on both paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from mmviz.data.base import ModalitySpec, stratified_subset
from mmviz.errors import ConfigError

_KIND = {1: "vector", 2: "sequence", 3: "image", 4: "video"}


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch's tensors on ``device`` (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


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


class LoaderSplit:
    """One split of the user's data as methods and probes see a split, backed by a ``DataLoader``'s dataset.

    ``batches`` reads the dataset in order (shuffled with a generator when given) in batches of the size asked
    for, with the user's loader's workers, collate function and pinned memory; ``index`` is the sample's absolute
    index (the dataset's ``index`` attribute, else its position) unless the dataset yields its own. ``subset`` reads chosen samples; ``tensors["label"]`` holds
    every label in dataset order (from the dataset's ``labels`` when it has them, else read once).
    """

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        self.loader = loader
        self.device = device
        self._labels: torch.Tensor | None = None
        # Methods and probes read a split as fit() holds it: without the training augmentation (and so without
        # drawing from torch's random state), when the dataset can say how.
        plain = getattr(loader.dataset, "without_augmentation", None)
        self.dataset = plain() if callable(plain) else loader.dataset
        given = getattr(self.dataset, "index", None)  # absolute sample indices, when the dataset has them
        given = None if callable(given) else given  # (a list's index() method is not that)
        self.index = torch.as_tensor(np.asarray(given if given is not None else np.arange(len(self))), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.loader.dataset)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches per pass."""
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of the dataset on the device: in order, or shuffled with ``generator`` (a CPU generator)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        if drop_last and n >= batch_size:
            order = order[: n - n % batch_size]
        src = self.loader
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=src.num_workers,
            collate_fn=src.collate_fn, pin_memory=src.pin_memory, generator=torch.Generator(),
        )  # fmt: skip
        for b, batch in enumerate(loader):
            batch = to_device(dict(batch), self.device)
            if "index" not in batch:
                batch["index"] = self.index[order[b * batch_size : (b + 1) * batch_size]].to(self.device)
            yield batch

    def subset(self, positions: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """The samples at ``positions`` of the dataset, collated into one batch on the device."""
        positions = [int(i) for i in np.asarray(positions).reshape(-1)]
        batch = dict(default_collate([self.dataset[i] for i in positions]))
        batch.setdefault("index", self.index[torch.as_tensor(positions, dtype=torch.long)])
        return to_device(batch, self.device)

    @property
    def labels(self) -> torch.Tensor:
        """Every sample's label ``(N,)`` on the CPU, in dataset order (the dataset's ``labels``, else read once)."""
        if self._labels is None:
            labels = getattr(self.dataset, "labels", None)
            if labels is None:
                labels = [int(self.dataset[i]["label"]) for i in range(len(self))]
            self._labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        return self._labels

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """``{"label": (N,)}``: every label in dataset order."""
        return {"label": self.labels}


@dataclasses.dataclass
class LoopData:
    """What methods and probes read of a dataset, for data the user's loaders yield.

    ``y`` has one entry per absolute sample index (``batch["index"]``: the dataset's ``num_samples`` when it says
    how many there are, else train plus val), ``probe_index`` the fixed subset of val used by snapshots.
    """

    name: str
    modalities: tuple[ModalitySpec, ...]
    classes: tuple[str, ...]
    y: np.ndarray
    probe_index: np.ndarray

    @property
    def modality_names(self) -> tuple[str, ...]:
        """Modality names in the fixed order."""
        return tuple(s.name for s in self.modalities)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def num_samples(self) -> int:
        """Number of absolute sample indices (the length of ``y``)."""
        return len(self.y)


def describe_data(
    name: str, modalities: Sequence[str], num_classes: int, train: LoaderSplit, val: LoaderSplit | None,
    probe_size: int, seed: int, num_samples: int | None = None,
) -> LoopData:  # fmt: skip
    """Modality specs from one val (else train) sample, the index space, and the fixed snapshot probe subset."""
    source = val if val is not None else train
    sample = source.loader.dataset[0]
    check_batch(sample, modalities, "dataset")
    specs = []
    for m in modalities:
        shape = tuple(int(s) for s in sample[m].shape)
        if len(shape) not in _KIND:
            raise ConfigError(f"Modality {m!r} has samples of shape {shape}; mmviz takes 1 to 4 dimensions per sample.")
        specs.append(ModalitySpec(m, _KIND[len(shape)], shape))
    probe = np.zeros(0, dtype=np.int64)
    if val is not None:
        labels = val.labels.numpy()
        probe = val.index.numpy()[stratified_subset(np.arange(len(labels)), labels, probe_size, seed)]
    size = num_samples or getattr(source.loader.dataset, "num_samples", None) or len(train) + len(val or ())
    return LoopData(name, tuple(specs), tuple(str(c) for c in range(num_classes)), np.zeros(size, np.int64), probe)


def null_autocast() -> contextlib.AbstractContextManager:
    """No mixed precision: the user's loop decides its own."""
    return contextlib.nullcontext()
