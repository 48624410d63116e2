"""Small stand-ins for CREMA-D, AVE and Kinetics-Sounds, written in exactly the official folder layouts.

The tests load them with the real loaders (:mod:`mmviz.data.av_benchmarks`), and the examples use them when you
have no copy of the data: each clip is a short 16-bit wav (a tone whose pitch depends on the class, plus noise)
and a few jpg frames (a colour that depends on the class, plus noise), so a model can learn something from both.
"""

from __future__ import annotations

import math
import random
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from mmviz.data.av_benchmarks import CREMAD_CLASSES


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write mono float samples in [-1, 1] as a 16-bit PCM wav file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _clip(root: Path, wav: Path, frames: Path, label: int, num_classes: int, n_frames: int, rng: random.Random) -> None:
    rate = 16000
    t = np.arange(int(0.4 * rate)) / rate
    tone = 0.5 * np.sin(2 * math.pi * (300 + 150 * label) * t)
    noise = np.array([rng.gauss(0, 0.05) for _ in range(len(t))])
    write_wav(wav, tone + noise, rate)
    frames.mkdir(parents=True, exist_ok=True)
    hue = np.array([255 * label / max(1, num_classes - 1), 128, 255 - 255 * label / max(1, num_classes - 1)])
    for k in range(n_frames):
        pixels = np.clip(hue + np.array([[[rng.gauss(0, 20)] * 3] * 24] * 32), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(frames / f"{k:05d}.jpg", quality=90)


def write_cremad(root: Path, per_class: int = 4, test_per_class: int = 2, n_frames: int = 2, seed: int = 0) -> Path:
    """A CREMA-D layout under ``root``: ``train.csv``/``test.csv``, ``AudioWAV/``, ``Image-01-FPS/``."""
    rng = random.Random(seed)
    root = Path(root)
    for fname, count in (("train.csv", per_class), ("test.csv", test_per_class)):
        lines = []
        for label, emo in enumerate(CREMAD_CLASSES):
            for k in range(count):
                clip = f"{1001 + k}_{fname[:2].upper()}{label}_{emo}_XX"
                _clip(root, root / "AudioWAV" / f"{clip}.wav", root / "Image-01-FPS" / clip, label, 6, n_frames, rng)
                lines.append(f"{clip},{emo}")
        (root / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_ave(root: Path, classes: tuple[str, ...] = ("Bark", "Church bell", "Flute"), per_class: int = 3,
              n_frames: int = 3, seed: int = 0) -> Path:  # fmt: skip
    """An AVE layout under ``root``: ``trainSet.txt``/``valSet.txt``/``testSet.txt``, ``Audios/``, ``Image-01-FPS-SE/``."""
    rng = random.Random(seed)
    root = Path(root)
    for fname in ("trainSet.txt", "valSet.txt", "testSet.txt"):
        lines = []
        for label, name in enumerate(classes):
            for k in range(per_class):
                vid = f"{fname[:2]}{label}x{k}Ab_Cd"
                _clip(
                    root,
                    root / "Audios" / f"{vid}.wav",
                    root / "Image-01-FPS-SE" / vid,
                    label,
                    len(classes),
                    n_frames,
                    rng,
                )
                lines.append(f"{name}&{vid}&good&0&10")
        (root / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_ks(root: Path, num_classes: int = 3, per_class: int = 4, test_per_class: int = 2, n_frames: int = 3,
             seed: int = 0) -> Path:  # fmt: skip
    """A Kinetics-Sounds layout under ``root``: ``my_train.txt``/``my_test.txt``, ``train/<clip>/``, ``test/<clip>/``."""
    rng = random.Random(seed)
    root = Path(root)
    for fname, folder, count in (("my_train.txt", "train", per_class), ("my_test.txt", "test", test_per_class)):
        lines = []
        for label in range(num_classes):
            for k in range(count):
                clip = f"-{folder[:2]}{label}x{k}_000010_000020"
                base = root / folder / clip
                _clip(root, base / f"{clip}.wav", base, label, num_classes, n_frames, rng)
                lines.append(f"{clip},10,{label}")
        (root / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
