"""The user's own data: a ``.npz`` file with one array per modality plus integer labels.

Array shapes decide the modality kind: ``(N, D)`` vector, ``(N, C, L)`` sequence, ``(N, C, H, W)`` image.
Optional ``train_index`` / ``val_index`` / ``test_index`` arrays fix the split; otherwise a stratified
split is drawn with ``split_seed``. Vector and sequence modalities are z-scored on the train split.

Every way a file can be unusable is refused with one sentence naming the file, before any run exists: not an
``.npz`` archive (a ``.npy`` file, a truncated zip), arrays whose headers claim more bytes than the archive holds or
than the machine has memory for (checked from the headers, before anything is loaded), no samples, a 0-d
modality, complex or non-numeric features, split indices that are not integers or leave a split empty.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mmviz.config import param
from mmviz.data.base import ModalitySpec, MultimodalData, standardize, stratified_split, stratified_subset
from mmviz.data.registry import DATASETS, SplitConfig
from mmviz.errors import ConfigError, DataError

SPLIT_KEYS = ("train_index", "val_index", "test_index")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class ArraysConfig(SplitConfig):
    """Settings of the user-supplied ``arrays`` dataset."""

    path: str = param("", "Path of a .npz file: one array per modality, a label array, optional split indices.")
    label_key: str = param("label", "Name of the label array in the file.")
    standardize: bool = param(True, "Z-score vector and sequence modalities with train-split statistics.")

    def check(self) -> None:
        super().check()
        if not self.path:
            raise ConfigError(f"The 'path' parameter of {self.title()} must name a .npz file. Got '' instead.")


def _fail(path: str, what: str) -> DataError:
    return DataError(f"The arrays file {path!r} is not usable: {what}.")


def arrays_modalities(config: ArraysConfig) -> tuple[str, ...]:
    """The modality names in the .npz file (its array names but labels and splits) in the file's order, as the
    dataset keeps them, reading only its listing."""
    path = config.path
    if not Path(path).is_file():
        raise _fail(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
    except (OSError, ValueError) as exc:
        raise _fail(path, f"it is not a readable .npz archive ({exc})") from None
    return tuple(n for n in names if n != config.label_key and n not in SPLIT_KEYS)


def available_memory() -> int:
    """Bytes of memory this process can still use (``MemAvailable``, else physical pages free)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _member_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of the archive from its header alone; refuse what cannot be loaded."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as fh:
            npy = fh.read(6) == b"\x93NUMPY"
        raise (
            _fail(path, "it is a single .npy array; save one array per modality and the labels with numpy.savez")
            if npy
            else _fail(path, "it is not a readable .npz archive (not a zip file, or a truncated one)")
        ) from None
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, _, dtype = (
                        np.lib.format.read_array_header_1_0(fh)
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0(fh)
                    )
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise _fail(path, f"its array {name!r} cannot be read ({exc})") from None
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if dtype.hasobject:
                raise _fail(path, f"array {name!r} holds Python objects; save numbers only")
            if nbytes > info.file_size:
                raise _fail(
                    path,
                    f"array {name!r} claims shape {tuple(shape)} ({nbytes:,} bytes) but the file holds only "
                    f"{info.file_size:,} bytes for it (truncated or damaged)",
                )
            total += nbytes
            out[name] = (tuple(shape), dtype)
    free = available_memory()
    if 2 * total > free:  # the arrays plus their float32 copies
        raise _fail(
            path,
            f"its arrays need {total / 2**30:.1f} GiB (twice that while converting) but only "
            f"{free / 2**30:.1f} GiB of memory is available",
        )
    return out


@DATASETS.register("arrays", config=ArraysConfig, kind="user", modalities=arrays_modalities)
def load_arrays(config: ArraysConfig) -> MultimodalData:
    """Your own data from a .npz file: one array per modality (2 or 3) plus integer labels 0..C-1."""
    path = config.path
    if not Path(path).is_file():
        raise _fail(path, "no such file")
    headers = _member_headers(path)
    for name, (shape, dtype) in headers.items():
        if name == config.label_key or name in SPLIT_KEYS:
            continue
        if not shape:
            raise _fail(path, f"modality {name!r} is a 0-d array; use (N, D), (N, C, L) or (N, C, H, W)")
        if np.issubdtype(dtype, np.complexfloating):
            raise _fail(
                path, f"modality {name!r} has complex dtype {dtype}; store real and imaginary parts as features"
            )
    for key in SPLIT_KEYS:
        if key in headers and not np.issubdtype(headers[key][1], np.integer):
            raise _fail(path, f"split indices {key!r} must be integers, got dtype {headers[key][1]}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _fail(path, f"it is not a readable .npz archive ({exc})") from None
    except MemoryError:
        raise _fail(path, "its arrays do not fit in memory") from None
    if config.label_key not in arrays:
        raise _fail(path, f"it has no label array {config.label_key!r} (arrays: {', '.join(sorted(arrays))})")
    y = arrays.pop(config.label_key)
    given = {k: arrays.pop(k) for k in SPLIT_KEYS if k in arrays}
    if y.ndim != 1 or not (
        np.issubdtype(y.dtype, np.integer)
        or (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)))
    ):
        raise _fail(path, f"labels must be a 1-d array of integers, got dtype {y.dtype} and shape {y.shape}")
    y = y.astype(np.int64)
    n = len(y)
    if n == 0:
        raise _fail(path, f"the label array {config.label_key!r} is empty (0 samples)")
    classes = np.unique(y)
    if len(classes) < 2 or classes.min() != 0 or classes.max() != len(classes) - 1:
        raise _fail(
            path,
            f"labels must cover 0..C-1 with C >= 2, got values {classes.min()}..{classes.max()} "
            f"({len(classes)} distinct)",
        )
    if not 2 <= len(arrays) <= 3:
        raise _fail(
            path,
            f"it must hold 2 or 3 modality arrays besides the labels, got {len(arrays)} "
            f"({', '.join(sorted(arrays)) or 'none'})",
        )
    specs, x = [], {}
    for name in arrays:  # the order of the file (np.savez keeps the order the arrays were given)
        arr = arrays[name]
        if not _NAME.match(name):
            raise _fail(path, f"modality name {name!r} must be lowercase letters, digits and underscores")
        if len(arr) != n:
            raise _fail(path, f"modality {name!r} has {len(arr)} samples but there are {n} labels")
        if not np.issubdtype(arr.dtype, np.number):
            raise _fail(path, f"modality {name!r} has non-numeric dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise _fail(path, f"modality {name!r} contains NaN or infinite values")
        kind = {2: "vector", 3: "sequence", 4: "image"}.get(arr.ndim)
        if kind is None:
            raise _fail(path, f"modality {name!r} has {arr.ndim} dimensions; use (N, D), (N, C, L) or (N, C, H, W)")
        specs.append(ModalitySpec(name, kind, tuple(int(s) for s in arr.shape[1:])))
        x[name] = arr.astype(np.float32)
    if given:
        if set(given) != set(SPLIT_KEYS):
            raise _fail(path, f"split indices need all of {', '.join(SPLIT_KEYS)}, got only {', '.join(sorted(given))}")
        splits = {k.removesuffix("_index"): np.sort(v.astype(np.int64)) for k, v in given.items()}
        empty = [k for k, v in splits.items() if v.ndim != 1 or len(v) == 0]
        if empty:
            raise _fail(path, f"the {empty[0]} split is empty (or not a 1-d index array); every split needs samples")
        allidx = np.concatenate(list(splits.values()))
        if allidx.min() < 0 or allidx.max() >= n or len(np.unique(allidx)) != len(allidx):
            raise _fail(path, "split indices must be disjoint and within 0..N-1")
    else:
        counts = np.bincount(y)
        if counts.min() < 3:
            raise _fail(
                path,
                f"class {int(counts.argmin())} has {int(counts.min())} samples; each class needs >= 3 "
                "for a train/val/test split",
            )
        splits = stratified_split(
            y,
            {
                "train": 1 - config.val_fraction - config.test_fraction,
                "val": config.val_fraction,
                "test": config.test_fraction,
            },
            config.split_seed,
        )
    if config.standardize:
        for spec in specs:
            if spec.kind != "image":
                flat = x[spec.name].reshape(n, -1)
                x[spec.name] = standardize(flat, splits["train"]).reshape(x[spec.name].shape)
    return MultimodalData(
        name="arrays",
        modalities=tuple(specs),
        classes=tuple(str(c) for c in classes),
        x=x,
        y=y,
        splits=splits,
        probe_index=stratified_subset(splits["val"], y, config.probe_size, config.split_seed),
        attribution=f"User data from {path}.",
        info={"path": str(Path(path).resolve())},
    )
