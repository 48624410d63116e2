"""The epoch record file (mmviz.measures.record): what the trainer writes is what the analysis process reads."""

from __future__ import annotations

import numpy as np
import pytest

from mmviz.measures.record import RECORD_ALIGN, RECORD_MAGIC, load_record, record_path, save_record


def test_a_record_reads_back_array_for_array_with_its_meta(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "features_a": rng.normal(size=(7, 5)).astype(np.float32),
        "features_b": np.asfortranarray(rng.normal(size=(7, 3))),  # not C-contiguous: written in C order
        "view": rng.normal(size=(6, 4)).astype(np.float32)[::2, 1:],  # a strided view
        "label": np.arange(7, dtype=np.int64),
        "dropped": np.array([True, False, True]),
        "half": np.array([1.5, -2.0], dtype=np.float16),
        "scalar": np.array(3.25),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "odd": np.arange(3, dtype=np.int8),  # 3 bytes: the next array starts aligned all the same
    }
    meta = {"epoch": 3, "step": 42, "modalities": ["a", "b"], "probes": ["separability"], "text": "ü"}
    path = record_path(tmp_path, 3)
    save_record(path, meta, arrays)
    assert path.name == "epoch_0003.rec" and path.read_bytes().startswith(RECORD_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    got_meta, got = load_record(path)
    assert got_meta == meta and list(got) == list(arrays)
    for name, value in arrays.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert np.array_equal(got[name], value), name
        assert got[name].flags.writeable
    got["features_a"] += 1  # writable arrays: probes may work in place without touching the others
    assert np.array_equal(got["label"], arrays["label"])


def test_arrays_start_at_aligned_offsets(tmp_path):
    path = tmp_path / "r.rec"
    save_record(path, {}, {"a": np.arange(3, dtype=np.int8), "b": np.arange(5, dtype=np.float64)})
    data = path.read_bytes()
    first = data.index(np.arange(5, dtype=np.float64).tobytes())
    assert first % RECORD_ALIGN == 0 and data.index(bytes([0, 1, 2])) % RECORD_ALIGN == 0


def test_a_file_that_is_not_a_whole_record_is_named_in_one_sentence(tmp_path):
    path = tmp_path / "epoch_0001.rec"
    save_record(path, {"epoch": 1}, {"x": np.arange(100, dtype=np.float32)})
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 10])
    with pytest.raises(ValueError, match=r"epoch_0001\.rec is cut short: its array 'x' ends past the end of the file"):
        load_record(path)
    path.write_bytes(b"PK\x03\x04 an old .npz")
    with pytest.raises(ValueError, match=r"epoch_0001\.rec is not an mmviz epoch record"):
        load_record(path)
    path.write_bytes(whole[:20])  # the header cut short
    with pytest.raises(ValueError, match="is not an mmviz epoch record"):
        load_record(path)


def test_object_arrays_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "r.rec"
    with pytest.raises(TypeError, match="record array 'o' has dtype object"):
        save_record(path, {}, {"o": np.array([{}, 1], dtype=object)})
    assert not path.exists() and list(tmp_path.iterdir()) == []
