"""AV-Fashion: Fashion-MNIST's 70,000 real images paired by class with spoken class names (espeak-ng).

Images come from Debian's ``dataset-fashion-mnist`` package (read in place, never copied); the audio file of
spoken class names ("T-shirt", "trouser", ..., "ankle boot") is made once by :mod:`mmviz.data.avfashion_build`
(``python -m mmviz.data.avfashion_build``, about 30 s for 3,000 clips) and looked for at ``$MMVIZ_AVFASHION`` or
``~/.cache/mmviz/avfashion.npz``. Pairing, held-out test voices, noise knobs and features follow AV-Digits
(:mod:`mmviz.data.avdigits`), whose functions this module calls. The default encoders are CNNs (2-D for the
image, 1-D for the 40 x 20 log-mel sequence). By default audio carries white noise at -3 dB SNR, the setting
DATA.md §3.6 measured (image alone 0.85, audio alone 0.92 on 10,000 images).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
from pathlib import Path

import numpy as np

from mmviz.config import param
from mmviz.data.avdigits import image_audio_data, pair_clips_by_label
from mmviz.data.base import MultimodalData
from mmviz.data.registry import DATASETS, SplitConfig
from mmviz.errors import DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_WORDS = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
SEED = 20261201
INSTALL_HINT = "Install it with: apt-get install dataset-fashion-mnist (Debian bookworm main)."


def default_out() -> Path:
    """Where the audio file is written and looked for: ``$MMVIZ_AVFASHION`` or ``~/.cache/mmviz/avfashion.npz``."""
    override = os.environ.get("MMVIZ_AVFASHION", "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "mmviz" / "avfashion.npz"


def _read_idx(path: Path, offset: int) -> np.ndarray:
    """The uint8 payload of a gzipped IDX file after its ``offset``-byte header."""
    if not path.is_file():
        raise DataError(f"The Fashion-MNIST file {str(path)!r} does not exist. {INSTALL_HINT}")
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(folder: Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 70,000 Fashion-MNIST images ``(N, 28, 28)`` uint8, labels ``(N,)`` int64 and ``is_test`` ``(N,)`` bool
    (the official 10,000-image test set last)."""
    images, labels = [], []
    for prefix in ("train", "t10k"):
        img = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 16)
        lab = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 8)
        if img.size != lab.size * 784:
            raise DataError(f"Fashion-MNIST {prefix} files disagree: {img.size} pixels for {lab.size} labels.")
        images.append(img.reshape(-1, 28, 28))
        labels.append(lab.astype(np.int64))
    is_test = np.concatenate([np.zeros(len(labels[0]), bool), np.ones(len(labels[1]), bool)])
    return np.concatenate(images), np.concatenate(labels), is_test


BUILD_HINT = "Build it with: python -m mmviz.data.avfashion_build (needs Debian's espeak-ng)."
AUDIO_KEYS = ("audio", "audio_label", "audio_heldout", "audio_power", "noise_mel_mean", "noise_mel_shape", "meta")
ATTRIBUTION = (
    "Images: Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, Zalando Research; MIT licence), from Debian's "
    "dataset-fashion-mnist package. Audio: synthetic speech of the class names generated with espeak-ng "
    "(GPL-3+ program; only its output is used)."
)


@dataclasses.dataclass(frozen=True)
class AVFashionConfig(SplitConfig):
    """Settings of AV-Fashion: sample count and noise on each modality."""

    n_samples: int = param(
        10000,
        "Number of image/audio pairs used (stratified subset of the 70,000 images; 70000 = all, for a GPU).",
        low=100,
        high=70000,
        log=True,
    )
    image_noise: float = param(
        0.0, "Std of Gaussian noise added to the images after scaling pixels to [0, 1]. 0 = clean.", low=0.0, high=3.0
    )
    audio_snr_db: float = param(
        -3.0,
        "Signal-to-noise ratio in dB of white noise added to the audio (mel power domain). 40 adds no noise.",
        low=-20.0,
        high=40.0,
        step=1.0,
    )
    noise_seed: int = param(0, "Seed of the image and audio noise draws.", low=0, high=2**31 - 1)


def avfashion_audio_path() -> Path:
    """The audio file the loader reads (``$MMVIZ_AVFASHION`` or ``~/.cache/mmviz/avfashion.npz``)."""
    return default_out().resolve()


@functools.lru_cache(maxsize=2)
def _read_audio(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in AUDIO_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"The AV-Fashion audio file {path!r} lacks {', '.join(missing)}. {BUILD_HINT}")
            arrays = {k: npz[k] for k in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"The AV-Fashion audio file {path!r} is not a readable npz ({exc}). {BUILD_HINT}") from None
    if arrays["audio"].shape[1:] != (40, 20):
        raise DataError(f"The AV-Fashion audio file {path!r} has audio of shape {arrays['audio'].shape}. {BUILD_HINT}")
    return arrays


@functools.lru_cache(maxsize=1)
def _images() -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = load_fashion_mnist(FASHION_DIR)
    return images, labels


@DATASETS.register(
    "avfashion",
    config=AVFashionConfig,
    description=(
        "AV-Fashion: Fashion-MNIST's 70,000 real clothing images paired by class with synthetic speech of the class "
        "names (espeak-ng), audio as 40x20 log-mel at -3 dB SNR; test clips come from held-out voices.\n"
        "A larger audio-visual dataset (CNN encoders). Needs Debian's dataset-fashion-mnist and a one-off "
        "python -m mmviz.data.avfashion_build."
    ),
    kind="real",
    modalities=("image", "audio"),
)
def load_avfashion(config: AVFashionConfig) -> MultimodalData:
    """Load AV-Fashion: Fashion-MNIST images paired with spoken class names of the same class."""
    path = avfashion_audio_path()
    if not path.is_file():
        raise DataError(f"The AV-Fashion audio file {str(path)!r} does not exist. {BUILD_HINT}")
    stat = path.stat()
    arrays = _read_audio(str(path), stat.st_mtime_ns, stat.st_size)
    images, labels = _images()
    image_index, clip_index, splits = pair_clips_by_label(
        labels, arrays["audio_label"], arrays["audio_heldout"], config, "AV-Fashion audio", BUILD_HINT
    )
    return image_audio_data(
        "avfashion",
        config,
        images[image_index],
        labels[image_index],
        arrays,
        clip_index,
        splits,
        descriptions=(
            "Fashion-MNIST clothing image, 28x28 grayscale",
            "spoken class name (synthetic speech), 40 mel x 20 frames",
        ),
        classes=CLASS_WORDS,
        attribution=ATTRIBUTION,
        info={"file": str(path), "images": str(FASHION_DIR)},
    )
