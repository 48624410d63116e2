"""Bundled and generated datasets: shapes, fixed disjoint splits, probe subsets, knobs, user arrays."""

import dataclasses

import numpy as np
import pytest

from mmviz.data import create_dataset
from mmviz.data.arrays import ArraysConfig
from mmviz.data.mfeat import MfeatConfig
from mmviz.data.synthetic import SyntheticConfig
from mmviz.errors import ConfigError, DataError


def _check_splits(d):
    tr, va, te = (set(d.splits[k].tolist()) for k in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr | va | te) == len(d.y)
    assert set(d.probe_index.tolist()) <= va
    for spec in d.modalities:
        assert d.x[spec.name].dtype == np.float32 and d.x[spec.name].shape == (len(d.y), *spec.shape)


def test_mfeat_default_views_real_data():
    d = create_dataset("mfeat")
    assert d.modality_names == ("pix", "fou") and d.num_classes == 10 and len(d.y) == 2000
    assert np.bincount(d.y).tolist() == [200] * 10
    _check_splits(d)
    # val is stratified: every class present
    assert len(np.unique(d.y[d.splits["val"]])) == 10
    # splits do not depend on anything but split_seed
    again = create_dataset("mfeat", MfeatConfig(views=("pix", "fou")))
    assert all(np.array_equal(d.splits[k], again.splits[k]) for k in d.splits)


def test_mfeat_three_views_image_and_noise():
    d = create_dataset("mfeat", MfeatConfig(views=("pix", "fou", "mor"), pix_as_image=True, noise=("fou=1.0",)))
    assert [s.kind for s in d.modalities] == ["image", "vector", "vector"]
    assert d.x["pix"].shape[1:] == (1, 16, 15)
    clean = create_dataset("mfeat", MfeatConfig(views=("pix", "fou", "mor")))
    assert not np.allclose(d.x["fou"], clean.x["fou"]) and np.allclose(d.x["mor"], clean.x["mor"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"views": ("pix",)}, "must name 2 or 3 different views"),
        ({"views": ("pix", "foo")}, "Did you mean 'fou'"),
        ({"noise": ("mor=1",)}, "'noise' parameter of MfeatConfig must be view=std pairs"),
        ({"val_fraction": 0.6}, r"'val_fraction' parameter of MfeatConfig must be a float in \[0.01, 0.5\]"),
    ],
)
def test_mfeat_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MfeatConfig(**kwargs)


def test_synthetic_presets_and_custom():
    d = create_dataset("synthetic")
    assert d.modality_names == ("a", "b") and len(d.splits["train"]) == 2000
    _check_splits(d)
    three = create_dataset("synthetic", SyntheticConfig(preset="custom", n_modalities=3, n_train=300))
    assert three.modality_names == ("a", "b", "c")
    assert three.info["knobs"]["n_modalities"] == 3
    same = create_dataset("synthetic", SyntheticConfig(preset="custom", n_modalities=3, n_train=300))
    assert np.array_equal(three.x["b"], same.x["b"])


def test_synthetic_strength_knob_controls_separability():
    from sklearn.linear_model import LogisticRegression

    accs = []
    for strength in (0.5, 6.0):
        d = create_dataset("synthetic", SyntheticConfig(preset="custom", strength_a=strength, n_train=1000))
        tr, te = d.splits["train"], d.splits["test"]
        clf = LogisticRegression(max_iter=300).fit(d.x["a"][tr], d.y[tr])
        accs.append(clf.score(d.x["a"][te], d.y[te]))
    assert accs[0] < 0.5 < 0.9 < accs[1]


def test_synthetic_knobs_need_custom_preset():
    with pytest.raises(ConfigError, match="only applies with preset 'custom'"):
        SyntheticConfig(preset="balanced", sub_b=8)


def _write(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_arrays_round_trip_with_kinds(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    path = _write(
        tmp_path,
        vec=rng.normal(size=(60, 5)),
        img=rng.normal(size=(60, 1, 4, 4)),
        seq=rng.normal(size=(60, 2, 7)),
        label=y,
    )
    d = create_dataset("arrays", ArraysConfig(path=path))
    assert {s.name: s.kind for s in d.modalities} == {"img": "image", "seq": "sequence", "vec": "vector"}
    _check_splits(d)


def test_arrays_keep_the_modality_order_of_the_file(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 10)
    path = _write(tmp_path, zeta=rng.normal(size=(20, 2)), label=y, alpha=rng.normal(size=(20, 3)))
    assert create_dataset("arrays", ArraysConfig(path=path)).modality_names == ("zeta", "alpha")  # not sorted


def test_arrays_given_splits(tmp_path):
    y = np.repeat(np.arange(2), 10)
    path = _write(
        tmp_path,
        a=np.zeros((20, 3)) + y[:, None],
        b=np.ones((20, 2)),
        label=y,
        train_index=np.arange(0, 20, 2),
        val_index=np.array([1, 3, 11, 13]),
        test_index=np.array([5, 7, 9, 15, 17, 19]),
    )
    d = create_dataset("arrays", ArraysConfig(path=path))
    assert d.splits["val"].tolist() == [1, 3, 11, 13]


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"a": np.zeros((10, 2)), "b": np.zeros((9, 2)), "label": np.arange(10) % 2}, "has 9 samples but there are 10"),
        ({"a": np.full((10, 2), np.nan), "b": np.zeros((10, 2)), "label": np.arange(10) % 2}, "NaN"),
        ({"a": np.zeros((10, 2)), "b": np.zeros((10, 2)), "label": np.arange(10) % 2 + 1}, "must cover 0..C-1"),
        ({"a": np.zeros((10, 2)), "b": np.zeros((10, 2))}, "no label array 'label'"),
        ({"a": np.zeros((10, 2)), "label": np.arange(10) % 2}, "2 or 3 modality arrays"),
        ({"Bad-Name": np.zeros((10, 2)), "b": np.zeros((10, 2)), "label": np.arange(10) % 2}, "lowercase"),
        (
            {"a": np.zeros((10, 2)), "b": np.zeros((10, 2)), "label": np.arange(10) % 2, "train_index": np.arange(5)},
            "split indices need all of",
        ),
    ],
)
def test_arrays_malformed_files_are_refused(tmp_path, arrays, match):
    path = _write(tmp_path, **arrays)
    with pytest.raises(DataError, match=match):
        create_dataset("arrays", ArraysConfig(path=path))


def test_arrays_not_an_npz(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz"):
        create_dataset("arrays", ArraysConfig(path=str(path)))
    with pytest.raises(DataError, match="no such file"):
        create_dataset("arrays", ArraysConfig(path=str(tmp_path / "missing.npz")))


@pytest.mark.parametrize(
    ("name", "sets"),
    [
        ("synthetic", {}),
        ("synthetic", {"preset": "custom", "n_modalities": 3}),
        ("mfeat", {}),
        ("mfeat", {"views": ("fac", "pix", "kar")}),
        ("avdigits", {}),
    ],
)
def test_declared_modality_names_match_the_built_dataset(name, sets):
    from mmviz.data.registry import DATASETS, create_dataset, dataset_modalities

    config = dataclasses.replace(DATASETS.get(name).config_cls(), **sets)
    assert dataset_modalities(name, config) == create_dataset(name, config).modality_names


def test_declared_modality_names_of_a_user_file_read_only_its_listing(tmp_path):
    from mmviz.data.registry import dataset_modalities

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    path = _write(tmp_path, vec=rng.normal(size=(60, 5)), img=rng.normal(size=(60, 1, 4, 4)), label=y)
    config = ArraysConfig(path=path)
    assert (
        dataset_modalities("arrays", config) == create_dataset("arrays", config).modality_names == ("vec", "img")
    )  # the file's order
    with pytest.raises(DataError, match="no such file"):
        dataset_modalities("arrays", ArraysConfig(path=str(tmp_path / "missing.npz")))
