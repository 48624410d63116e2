"""Checkpoints: everything needed to resume a run exactly (model, optimiser, scheduler, method, RNG).

File format (``.pt``, version 2): the magic line ``MMVIZCKPT2\n``, the header length as 8 little-endian bytes,
the CRC-32 of the header and of the tensor bytes (4 little-endian bytes each), a UTF-8 JSON header, then the raw
bytes of every tensor one after another. The header holds the nested state with each tensor replaced by
``{"tensor": [dtype, offset, nbytes, shape]}`` and containers tagged so that int keys, tuples and ordered state
dicts (with their ``_metadata``) come back as they were. Nothing is unpickled on load, so a checkpoint file can
never run code. Loading checks every size against the file (a header of at most :data:`MAX_HEADER_BYTES`, each
tensor inside the data, its byte count matching dtype and shape) and both checksums, so a torn, truncated or
bit-flipped file is refused in one sentence instead of being trained on; version 1 files (no checksums) load.

Why not ``torch.save``: it writes one zip record per tensor with a CRC32 each, and a small model's
checkpoint (~40 tensors, 1.8 MB with Adam's moments) took 1.7 ms per epoch that way against 0.4 ms for one
``os.writev`` straight from the tensors' memory (no copy), which is what a 30 ms epoch on mfeat can afford
(bench/trainer_vs_plain.py). :func:`load_checkpoint` also reads plain ``torch.save`` files
(``weights_only=True``), e.g. checkpoints written by older versions.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from mmviz.errors import StoreError
from mmviz.measures.features import HostCopy

MAGIC = b"MMVIZCKPT2\n"
MAGIC_V1 = b"MMVIZCKPT1\n"  # no checksums; still read
MAX_HEADER_BYTES = 64 << 20  # a header describes tensors; even a large model's is well under a megabyte
_PREFIX = struct.Struct("<QII")  # header length, CRC-32 of the header, CRC-32 of the tensor bytes
TRAINING_KEYS = ("epoch", "step", "model", "optimizer", "rng")  # what a fork needs of a checkpoint
_IOV_CHUNK = 512  # buffers per writev call (the system limit is usually 1024)


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    """Where the checkpoint taken after ``epoch`` epochs lives (epoch 0 = at initialisation)."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt"


def checkpoint_stop_path(run_dir: Path) -> Path:
    """Where the checkpoint of a stopped run's last step lives (labelled with the whole epochs done)."""
    return Path(run_dir) / "checkpoints" / "stopped.pt"


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """The tensor's bytes, in C order, without a copy when it is already a contiguous CPU tensor."""
    if t.requires_grad:
        t = t.detach()
    if not t.is_cpu:
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    try:
        return memoryview(t.numpy()).cast("B")
    except TypeError:  # a dtype numpy lacks (bfloat16, ...)
        return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def _encode(obj: Any, out: list[str], buffers: list[memoryview], offset: list[int]) -> None:
    """Append the JSON text of ``obj`` to ``out``; tensors go to ``buffers`` (as bytes views) and are referenced.

    Emits the text directly (no intermediate lists for ``json.dumps`` to walk again): the header of a small
    model's checkpoint is ~230 nodes, and building it was a third of the checkpoint's cost.
    """
    kind = type(obj)
    if kind is str:
        out.append(_json_str(obj))
    elif kind is int:
        out.append(str(obj))
    elif kind is float:
        out.append(repr(obj) if math.isfinite(obj) else json.dumps(obj))
    elif obj is None:
        out.append("null")
    elif kind is bool:
        out.append("true" if obj else "false")
    elif isinstance(obj, torch.Tensor):
        raw = _tensor_bytes(obj)
        name = _DTYPE_NAMES.get(obj.dtype)
        if name is None:
            name = _DTYPE_NAMES.setdefault(obj.dtype, str(obj.dtype).removeprefix("torch."))
        shape = ",".join(map(str, obj.shape))
        out.append(f'{{"tensor":["{name}",{offset[0]},{raw.nbytes},[{shape}]]}}')
        buffers.append(raw)
        offset[0] += raw.nbytes
    elif isinstance(obj, dict):
        ordered = isinstance(obj, OrderedDict)
        out.append('{"odict":[' if ordered else '{"dict":[')
        for n, (k, v) in enumerate(obj.items()):
            out.append("[" if n == 0 else ",[")
            _encode(k, out, buffers, offset)
            out.append(",")
            _encode(v, out, buffers, offset)
            out.append("]")
        if ordered:
            out.append('],"meta":')
            _encode(getattr(obj, "_metadata", None), out, buffers, offset)
            out.append("}")
        else:
            out.append("]}")
    elif isinstance(obj, (list, tuple)):
        out.append('{"list":[' if isinstance(obj, list) else '{"tuple":[')
        for n, v in enumerate(obj):
            if n:
                out.append(",")
            _encode(v, out, buffers, offset)
        out.append("]}")
    else:
        for plain in (bool, int, float, str):  # subclasses (numpy's float64, enums) as the plain value
            if isinstance(obj, plain):
                _encode(plain(obj), out, buffers, offset)
                return
        raise TypeError(
            f"Cannot checkpoint a value of type {type(obj).__name__}: use tensors, numbers, strings, "
            "lists, tuples and dicts."
        )


@functools.lru_cache(maxsize=4096)
def _json_str(text: str) -> str:
    """A string as JSON (cached: state-dict keys repeat in every checkpoint of a run)."""
    return json.dumps(text)


def _decode(obj: Any, data: bytearray, start: int) -> Any:
    if not isinstance(obj, dict):
        return obj
    if "tensor" in obj:
        dtype, offset, nbytes, shape = obj["tensor"]
        dt = getattr(torch, str(dtype), None)
        if not isinstance(dt, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        if not all(type(v) is int and v >= 0 for v in (offset, nbytes, *shape)):
            raise ValueError(f"bad tensor entry {obj['tensor']!r}")
        if math.prod(shape) * dt.itemsize != nbytes or start + offset + nbytes > len(data):
            raise ValueError(f"tensor of shape {shape} and {nbytes} bytes does not fit the file")
        if nbytes == 0:
            return torch.empty(shape, dtype=dt)
        raw = torch.frombuffer(data, dtype=torch.uint8, count=nbytes, offset=start + offset)
        return raw.view(dt).reshape(shape).clone()
    if "dict" in obj:
        return {_decode(k, data, start): _decode(v, data, start) for k, v in obj["dict"]}
    if "odict" in obj:
        out = OrderedDict((_decode(k, data, start), _decode(v, data, start)) for k, v in obj["odict"])
        if obj.get("meta") is not None:
            out._metadata = _decode(obj["meta"], data, start)  # type: ignore[attr-defined]
        return out
    if "list" in obj:
        return [_decode(v, data, start) for v in obj["list"]]
    if "tuple" in obj:
        return tuple(_decode(v, data, start) for v in obj["tuple"])
    raise ValueError(f"unknown entry {sorted(obj)}")


def _write_all(fd: int, buffers: list[memoryview]) -> None:
    """Write every buffer in order, with as few system calls as the kernel allows."""
    for i in range(0, len(buffers), _IOV_CHUNK):
        chunk = [b for b in buffers[i : i + _IOV_CHUNK] if b.nbytes]
        written = os.writev(fd, chunk) if chunk else 0
        for b in chunk:  # a short write (rare: full disk, signals) continues from where it stopped
            if written >= b.nbytes:
                written -= b.nbytes
                continue
            rest = b[written:]
            written = 0
            while rest.nbytes:
                rest = rest[os.write(fd, rest) :]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temp file + rename) so a killed run never leaves a half-written checkpoint.

    Tensors are written straight from their memory: the caller must not change them until this returns.
    """
    path = Path(path)
    buffers: list[memoryview] = []
    parts: list[str] = []
    _encode(state, parts, buffers, [0])
    header = "".join(parts).encode()
    crc = 0
    for b in buffers:
        crc = zlib.crc32(b, crc)
    prefix = _PREFIX.pack(len(header), zlib.crc32(header), crc)
    tmp = path.with_suffix(".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the first checkpoint of a run creates the folder
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            _write_all(fd, [memoryview(MAGIC), memoryview(prefix), memoryview(header), *buffers])
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk: give the space of the partial file back, name the file
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _not_mmviz(path: Path) -> StoreError:
    return StoreError(
        f"{str(path)!r} is not an mmviz checkpoint nor a torch.save file of tensors; fork from another epoch."
    )


def _damaged(path: Path, why: str) -> StoreError:
    return StoreError(f"The checkpoint {str(path)!r} is damaged ({why}); fork from another epoch.")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU (never unpickling code); raise ``StoreError`` for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"No checkpoint at {str(path)!r}.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        if magic not in (MAGIC, MAGIC_V1):
            try:  # a plain torch.save file (older versions); weights_only never runs pickled code
                with warnings.catch_warnings():  # e.g. about a pickle protocol: the refusal below says enough
                    warnings.simplefilter("ignore")
                    return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - torch's message advises weights_only=False: never quote it
                raise _not_mmviz(path) from exc
        prefix = f.read(_PREFIX.size if magic == MAGIC else 8)
        if len(prefix) < (_PREFIX.size if magic == MAGIC else 8):
            raise _damaged(path, "it ends inside its header")
        n, header_crc, data_crc = _PREFIX.unpack(prefix) if magic == MAGIC else (*struct.unpack("<Q", prefix), 0, 0)
        start = len(magic) + len(prefix)
        if n > min(MAX_HEADER_BYTES, size - start):
            raise _damaged(path, f"its header claims {n} bytes but the file has {size - start} after the prefix")
        header = f.read(n)
        data = bytearray(size - start - n)
        f.readinto(data)
    if magic == MAGIC and zlib.crc32(header) != header_crc:
        raise _damaged(path, "its header checksum does not match: bytes changed on disk")
    try:
        layout = json.loads(header)
        end = _data_end(layout)
    except (ValueError, TypeError, RecursionError) as exc:
        raise _damaged(path, f"its header is not valid: {exc}") from exc
    if end > len(data):
        raise StoreError(
            f"The checkpoint {str(path)!r} is cut short (a write was interrupted); fork from another epoch."
        )
    if magic == MAGIC and zlib.crc32(data) != data_crc:
        raise _damaged(path, "its tensor checksum does not match: bytes changed on disk")
    try:
        return _decode(layout, data, 0)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OverflowError, RecursionError) as exc:
        raise _damaged(path, str(exc)) from exc


def _data_end(layout: Any) -> int:
    """The number of tensor bytes a header refers to (the end of its last tensor)."""
    end, stack = 0, [layout]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            entry = obj.get("tensor")
            if entry is not None:
                _, offset, nbytes, _ = entry
                if type(offset) is not int or type(nbytes) is not int or offset < 0 or nbytes < 0:
                    raise ValueError(f"bad tensor entry {entry!r}")
                end = max(end, offset + nbytes)
            else:
                stack.extend(obj.values())
        elif isinstance(obj, list):
            stack.extend(obj)
    return end


def check_checkpoint(path: Path, keys: tuple[str, ...] = TRAINING_KEYS) -> dict[str, Any]:
    """Load ``path`` and refuse, in one sentence, anything but a whole checkpoint holding ``keys``; returns it.

    A fork checks its parent's checkpoint (``keys`` = :data:`TRAINING_KEYS`) and ``init.pt`` (a state dict of
    tensors, ``keys=()``) this way before its run exists.
    """
    path = Path(path)
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise _not_mmviz(path)
    missing = [k for k in keys if k not in state]
    if missing:
        raise StoreError(
            f"{str(path)!r} is not a training checkpoint (it lacks {', '.join(map(repr, missing))}); "
            "fork from another epoch."
        )
    if not keys and not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StoreError(f"{str(path)!r} is not a state dict of tensors; the parent run's files are damaged.")
    return state


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The random states a resumed run needs: torch's global CPU/CUDA state and the data-order generator."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["data"])


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], n_model_params: int, same_layout: bool
) -> None:
    """Load a saved optimiser state; when the method's extra parameters differ, keep only the model's part.

    The model's parameters always come first (group 0) so their state can be carried across a fork
    that changes the balancing method. Hyper-parameters (lr, momentum, ...) stay those of ``optimizer``.
    """
    current = optimizer.state_dict()
    if same_layout:
        merged = {"state": saved["state"], "param_groups": saved["param_groups"]}
    else:
        state = {k: v for k, v in saved["state"].items() if int(k) < n_model_params}
        groups = [dict(saved["param_groups"][0])] + current["param_groups"][1:]
        merged = {"state": state, "param_groups": groups}
    # keep the new run's hyper-parameters
    for g_new, g_old in zip(current["param_groups"], merged["param_groups"], strict=False):
        for k, v in g_new.items():
            if k != "params":
                g_old[k] = v
    optimizer.load_state_dict(merged)


class CheckpointWriter:
    """Writes checkpoints, on a background thread when ``background`` (then the loop pays only for a CPU copy).

    ``fit`` always uses the background thread. On a GPU the copy is non-blocking device-to-host transfers into
    pinned memory (:class:`mmviz.measures.features.HostCopy`), which the writer thread waits for, so the transfer
    and the write overlap the next epoch. On the CPU the copy is a memcpy (~0.2 ms for the demo's 1.8 MB) and the
    CRC-32 (~0.9 ms) and the write run beside the next epoch's first steps (both release the GIL): written in place
    they were the largest fixed cost of a 33 ms mfeat epoch (bench/trainer_vs_plain.py).
    ``wait()`` blocks until every queued write is on disk (called before reading a checkpoint back and at
    the end of a run); a write error is re-raised there, or by the next ``submit`` once it has happened.
    """

    def __init__(self, background: bool = True) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.background = background
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmviz-ckpt") if background else None
        self._pending: list = []

    def submit(self, path: Path, state: dict[str, Any], done=None) -> None:
        """Write ``state`` to ``path`` (now, or queued with a copy taken now); ``done()`` runs after the write."""
        if self._pool is None:
            save_checkpoint(path, state)
            if done is not None:
                done()
            return
        self._raise_failed()
        snapshot = HostCopy(state)  # on CUDA: queued copies; the weights' next updates come after them

        def work() -> None:
            save_checkpoint(path, snapshot.result())
            if done is not None:
                done()

        self._pending.append(self._pool.submit(work))

    def _raise_failed(self) -> None:
        """Re-raise the error of a write that has already failed (a full disk ends the run at the next epoch, not
        at the end of the run)."""
        done, running = [], []
        for fut in self._pending:
            (done if fut.done() else running).append(fut)
        self._pending = running
        for fut in done:
            fut.result()

    def wait(self) -> None:
        """Block until all queued checkpoints are written."""
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()

    def close(self) -> None:
        """Wait for pending writes and stop the thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
