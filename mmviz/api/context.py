"""The bridge from a user's loop to what methods and probes read: the run context over the user's DataLoaders.

Methods and probes see a run through :class:`mmviz.training.context.TrainContext`; inside ``fit()`` its splits are
in-memory tensors or :class:`mmviz.data.loader.LoaderSplit`s. Here they are ``LoaderSplit``s over the user's
``DataLoader``s (:meth:`LoaderSplit.from_loader`): batches read with the loader's workers and collate function
(moved to the model's device), chosen samples from its dataset, and the fixed probe subset for snapshots is drawn
once from val. Everything else is the same object ``fit()`` hands over, so a method or probe
runs the same code on both paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import numpy as np

from mmviz.data.base import DataDescription, ModalitySpec, stratified_subset
from mmviz.data.loader import LoaderSplit, check_batch
from mmviz.errors import ConfigError

_KIND = {1: "vector", 2: "sequence", 3: "image", 4: "video"}


@dataclasses.dataclass
class LoopData(DataDescription):
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
    def num_samples(self) -> int:
        """Number of absolute sample indices (the length of ``y``)."""
        return len(self.y)


def describe_data(
    name: str, modalities: Sequence[str], num_classes: int, train: LoaderSplit, val: LoaderSplit | None,
    probe_size: int, seed: int, num_samples: int | None = None,
) -> LoopData:  # fmt: skip
    """Modality specs from one val (else train) sample, the index space, and the fixed snapshot probe subset."""
    source = val if val is not None else train
    sample = source.dataset[0]
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
    size = num_samples or getattr(source.dataset, "num_samples", None) or len(train) + len(val or ())
    return LoopData(name, tuple(specs), tuple(str(c) for c in range(num_classes)), np.zeros(size, np.int64), probe)


def null_autocast() -> contextlib.AbstractContextManager:
    """No mixed precision: the user's loop decides its own."""
    return contextlib.nullcontext()
