"""AV-Fashion on a tiny subset: real Fashion-MNIST images from Debian, a 40-clip espeak-ng build."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from mmviz.data import DATASETS, create_dataset
from mmviz.data.avfashion import CLASS_WORDS, FASHION_DIR, AVFashionConfig, load_fashion_mnist
from mmviz.data.avfashion_build import build_avfashion
from mmviz.errors import ConfigError, DataError
from mmviz.training.config import build_run_config

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="needs Debian's espeak-ng and dataset-fashion-mnist (make system)",
)


@pytest.fixture(scope="module")
def audio_file(tmp_path_factory) -> Path:
    return build_avfashion(tmp_path_factory.mktemp("avf") / "avfashion.npz", n_clips=40, workers=2)


def test_debian_images_are_all_70000_with_the_official_test_set_last():
    images, labels, is_test = load_fashion_mnist()
    assert images.shape == (70000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [7000] * 10 and int(is_test.sum()) == 10000 and is_test[-1]


def test_tiny_build_pairs_images_with_spoken_class_names(audio_file, monkeypatch):
    monkeypatch.setenv("MMVIZ_AVFASHION", str(audio_file))
    with np.load(audio_file) as npz:
        assert npz["audio"].shape == (40, 40, 20) and np.bincount(npz["audio_label"]).tolist() == [4] * 10
        heldout, clip_labels = npz["audio_heldout"], npz["audio_label"]
    data = create_dataset("avfashion", AVFashionConfig(n_samples=200))
    assert data.classes == CLASS_WORDS and data.modality_names == ("image", "audio")
    assert data.x["image"].shape == (200, 1, 28, 28) and data.x["audio"].shape == (200, 40, 20)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 140, "val": 30, "test": 30}
    images, labels, _ = load_fashion_mnist()
    assert set(np.unique(data.y)) == set(range(10))
    train = data.splits["train"]
    assert abs(float(data.x["image"][train].mean())) < 1e-4  # z-scored on train
    # every test image is paired with a held-out-voice clip of its own class (speaker-independent test)
    from mmviz.data.avdigits import pair_clips_by_label

    image_index, clip_index, splits = pair_clips_by_label(
        labels, clip_labels, heldout, AVFashionConfig(n_samples=200), "x", ""
    )
    assert heldout[clip_index[splits["test"]]].all() and not heldout[clip_index[splits["train"]]].any()
    assert (clip_labels[clip_index] == labels[image_index]).all()
    assert DATASETS.get("avfashion").flags["kind"] == "real"


def test_missing_audio_file_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MMVIZ_AVFASHION", str(tmp_path / "none.npz"))
    with pytest.raises(DataError, match=r"does not exist\. Build it with: python -m mmviz\.data\.avfashion_build"):
        create_dataset("avfashion", AVFashionConfig(n_samples=200))


def test_bad_settings_are_named_before_anything_starts():
    with pytest.raises(ConfigError, match=r"'n_samples' parameter .* \[100, 70000\]\. Got 90000"):
        build_run_config("avfashion", "baseline", ["data.n_samples=90000"])
