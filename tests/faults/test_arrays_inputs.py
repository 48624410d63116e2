"""Unusable ``arrays`` files: one sentence naming the file, before a run exists, never a crash (item 4)."""

import io
import zipfile

import numpy as np
import pytest

import mmviz.data.arrays as arrays_module
from mmviz import launcher
from mmviz.errors import DataError, MmvizError
from mmviz.store import RunStore

N = 30


def _good(**change):
    y = np.arange(N) % 2
    arrays = {"a": np.random.default_rng(0).normal(size=(N, 3)), "b": np.ones((N, 2)), "label": y}
    arrays.update(change)
    return {k: v for k, v in arrays.items() if v is not None}


def _npy_bytes(shape, dtype="<f8", payload=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _write_case(path, case):
    if case == "npy":
        with open(path, "wb") as fh:  # a .npy file given where the .npz belongs
            np.save(fh, np.zeros((N, 3)))
        return
    if case in ("huge 45 GiB", "huge 29 TiB"):
        shape = (N, 200_000_000) if case == "huge 45 GiB" else (N, 130_000_000_000)
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("a.npy", _npy_bytes(shape, payload=b"\0" * 64))
            z.writestr("b.npy", _npy_bytes((N, 2), payload=b"\0" * (N * 16)))
            lab = io.BytesIO()
            np.save(lab, np.arange(N) % 2)
            z.writestr("label.npy", lab.getvalue())
        return
    if case == "truncated zip":
        buf = io.BytesIO()
        np.savez(buf, **_good())
        path.write_bytes(buf.getvalue()[:-200])
        return
    arrays = {
        "0 samples": _good(a=np.zeros((0, 3)), b=np.zeros((0, 2)), label=np.zeros(0, dtype=np.int64)),
        "0-d modality": _good(a=np.float64(3.0)),
        "empty train split": _good(
            train_index=np.array([], dtype=np.int64), val_index=np.arange(0, 15), test_index=np.arange(15, 30)
        ),
        "complex features": _good(a=np.ones((N, 3)) + 1j),
        "float split indices": _good(
            train_index=np.arange(0, 20) + 0.5, val_index=np.arange(20, 25.0), test_index=np.arange(25, 30.0)
        ),
    }[case]
    np.savez(path, **arrays)


CASES = {
    "0 samples": "is empty (0 samples)",
    "npy": "single .npy array",
    "0-d modality": "modality 'a' is a 0-d array",
    "huge 45 GiB": "claims shape (30, 200000000)",
    "huge 29 TiB": "claims shape (30, 130000000000)",
    "truncated zip": "not a readable .npz archive",
    "empty train split": "the train split is empty",
    "complex features": "complex dtype complex128",
    "float split indices": "must be integers, got dtype float64",
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_unusable_file_is_refused_in_one_sentence_before_a_run_exists(tmp_path, case):
    path = tmp_path / "data.npz"
    _write_case(path, case)
    store = RunStore(tmp_path / "ws")
    with _no_warnings():
        with pytest.raises(MmvizError) as caught:  # what the dashboard's launch form catches
            launcher.launch(store, "arrays", "baseline", overrides={"data": {"path": str(path)}})
    text = str(caught.value)
    assert isinstance(caught.value, DataError) and str(path) in text and CASES[case] in text, text
    assert "\n" not in text
    assert store.list_runs().empty


class _no_warnings:
    """Fail when numpy warns (an empty split used to print 11 lines of warnings before being refused)."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def test_an_honest_file_larger_than_memory_is_refused_from_its_headers(tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    np.savez(path, **_good(a=np.zeros((N, 4096))))
    monkeypatch.setattr(arrays_module, "available_memory", lambda: 100_000)  # a machine with 100 kB free
    with pytest.raises(DataError, match=r"its arrays need 0\.0 GiB .* but only 0\.0 GiB of memory is available"):
        arrays_module.load_arrays(arrays_module.ArraysConfig(path=str(path)))
