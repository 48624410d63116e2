"""The files the trainer measures into, defined once: the per-epoch *record* that the analysis process reads, and
the per-epoch *snapshot* of the fixed probe set that the embeddings page reads.

Numpy only (no torch), so the dashboard and the analysis process read these files without importing the model.

A **record** (``<run_dir>/records/epoch_XXXX.rec``, stored as a ``record`` artifact) holds what the epoch-end pass
over the live model measured: the val labels and each modality's val features (float32, exactly as the in-process
diagnostics see them), optionally a fixed train subset's features, and the fused logits of every modality
coalition with the other modalities' inputs zeroed (Shapley values need nothing else), and the fixed probe set's
positions, fused logits, head-split predictions and dropped masks, from which the analysis writes the epoch's
snapshot. Its ``meta`` (JSON) says the epoch, step, modalities, class count and which probes are due. The
analysis process writes the rows it computes from a record, the artifacts of the files it wrote from it (the
snapshot) and an ``analysis`` artifact for the epoch in one transaction, so an epoch is either analysed or pending,
never half done.

A record file is read only by mmviz, once, soon after it is written, so it is a plain layout the trainer writes with
one ``writev`` straight from the arrays' memory (an ``.npz`` took 1.5-3.3 ms of each epoch end to write and as long to
read, issue 15): the 8 bytes :data:`RECORD_MAGIC`, the header's length (8 bytes, little-endian), the header (UTF-8
JSON: ``{"meta": {...}, "arrays": [[name, numpy dtype string, shape, offset], ...]}``), then each array's bytes in C
order, every array starting at a multiple of :data:`RECORD_ALIGN` bytes from the start of the data, which starts at
the first such multiple after the header. Snapshots, which users and the embeddings page read, stay ``.npz`` files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

RECORD_DIR = "records"
RECORD_KIND = "record"  # artifact kind of a record file
ANALYSED_KIND = "analysis"  # artifact kind written with an epoch's analysis rows
DONE_FILE = ".done"  # in RECORD_DIR: the trainer writes no more records
RECORD_SUFFIX = ".rec"
RECORD_MAGIC = b"MMVZREC1"
RECORD_ALIGN = 64

# Record arrays. ``{m}`` is a modality name; a coalition is its modality names joined by '+' ('' = empty set).
RECORD_NAMES = {
    "label": "label",  # (N,) val labels
    "features": "features_{m}",  # (N, D_m) float32 val features
    "train_label": "train_label",  # (n,) labels of the fixed train subset
    "train_features": "train_features_{m}",  # (n, D_m) float32
    "coalition_logits": "clogits_{s}",  # (N, C) float32 fused logits with the modalities outside s zeroed
    # the fixed probe set's part of the val evaluation, from which the analysis writes the epoch's snapshot
    "snapshot_position": "snap_position",  # (n,) int64 positions of the probe set in the val arrays above
    "snapshot_index": "snap_index",  # (n,) int64 their absolute sample indices
    "snapshot_logits": "snap_logits",  # (n, C) float32 fused logits of the loop's val evaluation
    "snapshot_pred": "snap_pred_{m}",  # (n,) int64 head-split prediction of modality m, where the fusion allows it
    "snapshot_dropped": "snap_dropped",  # optional (n,) bool: the sample had a modality dropped
    "snapshot_dropped_view": "snap_dropped_{m}",  # optional (n,) bool per modality
}

# Snapshot arrays (written by the ``snapshots`` probe from an epoch record, read by mmviz.analysis.snapshots). ``{v}``
# is a modality name or 'fused'.
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_KIND = "snapshot"  # artifact kind
SNAPSHOT_NAMES = {
    "index": "index",  # (N,) absolute sample indices, the same every epoch
    "label": "label",  # (N,) class labels
    "features": "features_{v}",  # (N, D_v) float16, float32 when a value lies beyond float16's range (compact_float)
    "pred": "pred_{v}",  # (N,) predicted class (head split or nearest class mean per modality; fused argmax)
    "confidence": "conf_fused",  # (N,) max softmax of the fused logits
    "dropped": "dropped",  # optional (N,) bool: the sample had a modality dropped (amd)
    "dropped_view": "dropped_{v}",  # optional (N,) bool per modality
}


FLOAT16_MAX = float(np.finfo(np.float16).max)


def compact_float(values: np.ndarray) -> np.ndarray:
    """``values`` as float16 when every finite value fits (|x| <= 65504), else as float32.

    Features of an untrained network (BatchNorm on raw inputs) can exceed float16's range; cast, they would become
    ``inf`` (with numpy's overflow warning) and the embeddings page would draw nothing for them.
    """
    values = np.asarray(values)
    finite = values[np.isfinite(values)]
    if finite.size and float(np.abs(finite).max()) > FLOAT16_MAX:
        return values.astype(np.float32, copy=False)
    return values.astype(np.float16)


def coalition_name(coalition) -> str:
    """The record name of a coalition's logits: ``clogits_a+b`` (``clogits_`` for the empty set)."""
    return RECORD_NAMES["coalition_logits"].format(s="+".join(sorted(coalition)))


def record_path(run_dir: str | Path, epoch: int) -> Path:
    """Where the record of ``epoch`` lives."""
    return Path(run_dir) / RECORD_DIR / f"epoch_{epoch:04d}{RECORD_SUFFIX}"


def snapshot_path(run_dir: str | Path, epoch: int) -> Path:
    """Where the snapshot of ``epoch`` lives: ``run_dir/snapshots/epoch_XXXX.npz``."""
    return Path(run_dir) / SNAPSHOT_DIR / f"epoch_{epoch:04d}.npz"


def save_npz(path: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Write ``arrays`` as one ``.npz`` atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:  # straight to the file: no in-memory copy of the archive
            (np.savez_compressed if compress else np.savez)(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _aligned(n: int) -> int:
    return -(-n // RECORD_ALIGN) * RECORD_ALIGN


def save_record(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write one epoch record (the layout in the module docstring) atomically: a temporary file in the same folder,
    written with one ``writev`` from the arrays' own memory (no copy for C-contiguous arrays), then a rename."""
    spec, buffers, end = [], [], 0
    for name, value in arrays.items():
        a = np.asarray(value)
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        if a.dtype.hasobject:
            raise TypeError(f"record array {name!r} has dtype {a.dtype}; a record holds numbers and booleans only")
        start = _aligned(end)
        if start > end:
            buffers.append(bytes(start - end))
        spec.append([name, a.dtype.str, list(a.shape), start])
        buffers.append(memoryview(a.reshape(-1)).cast("B"))
        end = start + a.nbytes
    header = json.dumps({"meta": meta, "arrays": spec}).encode()
    lead = RECORD_MAGIC + len(header).to_bytes(8, "little") + header
    buffers.insert(0, lead + bytes(_aligned(len(lead)) - len(lead)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            written = os.writev(fd, buffers)
            total = sum(len(b) for b in buffers)
            if written < total:  # a short write (a signal, a full disk): the rest the plain way, or the error
                rest = memoryview(b"".join(bytes(b) for b in buffers))[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_record(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one epoch record: ``(meta, arrays)`` (writable arrays over one buffer read from the file). A file that is
    not a record, or is cut short, raises ``ValueError`` naming it."""
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    size = int.from_bytes(data[8:16], "little") if len(data) >= 16 else -1
    if data[:8] != RECORD_MAGIC or size < 0 or 16 + size > len(data):
        raise ValueError(f"{path} is not an mmviz epoch record (it should start with {RECORD_MAGIC!r} and a header)")
    header = json.loads(bytes(data[16 : 16 + size]))
    base = _aligned(16 + size)
    arrays = {}
    for name, dtype, shape, offset in header["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if base + offset + count * dt.itemsize > len(data):
            raise ValueError(f"{path} is cut short: its array {name!r} ends past the end of the file")
        arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=base + offset).reshape(shape)
    return header["meta"], arrays
