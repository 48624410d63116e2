"""Dataset building blocks: modality specs, the in-memory multimodal dataset, splits and batching.

All bundled datasets are small, so a dataset lives in memory as one float32 array per modality plus
integer labels, with fixed train / val / test index arrays (val is never the test set) and a fixed,
stratified probe subset of val used for per-epoch snapshots.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmviz.errors import DataError

MODALITY_KINDS = ("vector", "image", "sequence", "video")


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """One modality: its name, kind (vector, image or sequence) and per-sample shape.

    Shapes: vector ``(D,)``; image ``(C, H, W)``; sequence ``(C, L)`` (channels x time, e.g. mel bands x frames);
    video ``(C, T, H, W)`` (channels x frames x height x width, the papers' frame clips).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise DataError(f"Modality {self.name!r} has kind {self.kind!r}; valid kinds: {', '.join(MODALITY_KINDS)}.")
        expected = {"vector": 1, "image": 3, "sequence": 2, "video": 4}[self.kind]
        if len(self.shape) != expected:
            raise DataError(
                f"Modality {self.name!r} of kind {self.kind!r} needs a {expected}-d shape, got {self.shape}."
            )

    def to_dict(self) -> dict:
        """JSON-able form (stored with each run)."""
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape), "description": self.description}


class DataDescription:
    """What every kind of run data says of itself (in memory, from files, from a user's datasets).

    Subclasses (dataclasses) have ``name``, ``modalities`` (the :class:`ModalitySpec`s in the fixed order),
    ``classes`` and ``probe_index``; ``splits`` (split -> absolute indices), ``attribution`` and ``info`` are optional.
    """

    @property
    def modality_names(self) -> tuple[str, ...]:
        """Modality names in the fixed order."""
        return tuple(s.name for s in self.modalities)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def summary(self) -> dict:
        """JSON-able description (modalities, classes, split sizes) stored with each run."""
        return {
            "name": self.name,
            "modalities": [s.to_dict() for s in self.modalities],
            "classes": list(self.classes),
            "splits": {k: int(len(v)) for k, v in getattr(self, "splits", {}).items()},
            "probe_size": int(len(self.probe_index)),
            "attribution": getattr(self, "attribution", ""),
            "info": getattr(self, "info", {}),
        }


@dataclasses.dataclass
class MultimodalData(DataDescription):
    """An in-memory multimodal classification dataset with fixed splits.

    Attributes:
        name: registry name of the dataset.
        modalities: the modalities, in the fixed iteration order used everywhere.
        classes: class names; labels are ``0 .. len(classes) - 1``.
        x: per modality a float32 array ``(N, *spec.shape)``.
        y: int64 labels ``(N,)``.
        splits: ``train`` / ``val`` / ``test`` -> sorted absolute index arrays, disjoint.
        probe_index: fixed stratified subset of ``splits["val"]`` (absolute indices) for snapshots.
        attribution: licence / source text shown in the UI.
        info: free-form facts (e.g. per-modality noise) stored with the run.
    """

    name: str
    modalities: tuple[ModalitySpec, ...]
    classes: tuple[str, ...]
    x: dict[str, np.ndarray]
    y: np.ndarray
    splits: dict[str, np.ndarray]
    probe_index: np.ndarray
    attribution: str = ""
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.y)
        for spec in self.modalities:
            arr = self.x[spec.name]
            if arr.shape != (n, *spec.shape):
                raise DataError(f"Modality {spec.name!r} has shape {arr.shape}, expected {(n, *spec.shape)}.")
        for split in ("train", "val", "test"):
            if split not in self.splits or len(self.splits[split]) == 0:
                raise DataError(f"Dataset {self.name!r} has an empty {split!r} split.")

    @property
    def num_samples(self) -> int:
        """Number of samples over all splits (the absolute index space)."""
        return len(self.y)

    def to_splits(self, device) -> dict:
        """The three splits as tensors on ``device`` (:class:`mmviz.data.split.TensorSplit`; imports torch)."""
        from mmviz.data.split import TensorSplit

        return {s: TensorSplit(self, self.splits[s], device) for s in ("train", "val", "test")}


def stratified_split(y: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Split indices per class into named parts with the given fractions (the last part takes the rest).

    Deterministic for a given seed; every part gets at least one sample of each class when the class
    has enough samples.
    """
    rng = np.random.default_rng(seed)
    names = list(fractions)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        start = 0
        for i, name in enumerate(names):
            if i == len(names) - 1:
                parts[name].append(idx[start:])
            else:
                k = int(round(fractions[name] * len(idx)))
                parts[name].append(idx[start : start + k])
                start += k
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}


def stratified_subset(index: np.ndarray, y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A fixed stratified subset of ``index`` with at most ``size`` elements (class shares preserved)."""
    index = np.asarray(index)
    if len(index) <= size:
        return np.sort(index).astype(np.int64)
    rng = np.random.default_rng(seed)
    labels = y[index]
    chosen = []
    for c in np.unique(labels):
        members = index[labels == c]
        k = max(1, int(round(size * len(members) / len(index))))
        chosen.append(rng.choice(members, size=min(k, len(members)), replace=False))
    out = np.sort(np.concatenate(chosen))[:size]
    return out.astype(np.int64)


def standardize(x: np.ndarray, train_index: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Z-score each feature with mean and std fitted on the train split only."""
    mu = x[train_index].mean(axis=0, keepdims=True)
    sd = x[train_index].std(axis=0, keepdims=True)
    return ((x - mu) / (sd + eps)).astype(np.float32)


def __getattr__(name: str):
    if name == "TensorSplit":  # torch lives in mmviz.data.split; this module stays importable without it
        from mmviz.data.split import TensorSplit

        return TensorSplit
    raise AttributeError(f"module 'mmviz.data.base' has no attribute {name!r}")
