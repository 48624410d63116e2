"""Build the AV-Fashion audio file: spoken Fashion-MNIST class names synthesised by espeak-ng.

The images are not copied: :mod:`mmviz.data.avfashion` reads Fashion-MNIST's 70,000 real images straight from
Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``, IDX gz files). This script
makes only the audio side, with the same voices, speeds, pitches, held-out voices and 40 x 20 log-mel features as
AV-Digits (:mod:`mmviz.data.avdigits_build`, whose functions it calls), for the ten class names instead of the
digit words. Everything is deterministic (fixed numpy seed; espeak-ng's command line is bit-exact).

    python -m mmviz.data.avfashion_build [--out PATH] [--clips N] [--workers W]

The default output is ``~/.cache/mmviz/avfashion.npz`` (``$MMVIZ_AVFASHION`` overrides where the loader looks).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy

from mmviz.data import avdigits_build as av
from mmviz.data.avfashion import CLASS_WORDS, SEED, default_out
from mmviz.errors import DataError


def build_avfashion(out_path: Path, n_clips: int = 3000, workers: int = 2) -> Path:
    """Synthesise ``n_clips`` spoken class names (balanced over the ten classes) and save their log-mel features.

    Args:
        out_path: the ``.npz`` file to write (parent folders are created).
        n_clips: number of clips, at least 40 (so every class has held-out-voice and training-voice clips).
        workers: espeak-ng processes run at a time.
    """
    if n_clips < 4 * len(CLASS_WORDS):
        raise DataError(f"AV-Fashion needs at least {4 * len(CLASS_WORDS)} clips. Got {n_clips!r} instead.")
    exe = av.espeak_path()
    plan = av.clip_plan(n_clips, seed=SEED)
    voices = [f"{av.ACCENTS[a]}+{av.VARIANTS[v]}" for a, v in zip(plan["accent"], plan["variant"], strict=True)]

    def one(i: int) -> tuple[np.ndarray, float]:
        word = CLASS_WORDS[plan["label"][i]]
        return av.logmel_features(av.synthesise(exe, word, voices[i], int(plan["speed"][i]), int(plan["pitch"][i])))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, range(n_clips)))
    noise_mean, noise_shape = av.noise_reference()
    meta = {
        "dataset": "avfashion",
        "description": "Spoken Fashion-MNIST class names (espeak-ng) for pairing with Debian's Fashion-MNIST.",
        "espeak_ng": av.espeak_version(exe),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__},
        "parameters": {
            "n_clips": n_clips,
            "seed": SEED,
            "words": list(CLASS_WORDS),
            "accents": list(av.ACCENTS),
            "variants": list(av.VARIANTS),
            "heldout_variants": list(av.HELDOUT_VARIANTS),
            "features": "as avdigits: 16 kHz, 1.0 s, n_fft 512, hop 160, 40 mel bands, log, pooled to 20 frames",
        },
        "synthesis_seconds": round(time.perf_counter() - t0, 2),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        audio=np.stack([r[0] for r in results]).astype(np.float16),
        audio_label=plan["label"],
        audio_variant=plan["variant"],
        audio_heldout=np.isin(plan["variant"], [av.VARIANTS.index(v) for v in av.HELDOUT_VARIANTS]),
        audio_power=np.array([r[1] for r in results], dtype=np.float32),
        noise_mel_mean=noise_mean,
        noise_mel_shape=noise_shape,
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    tmp.replace(out_path)
    return out_path


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m mmviz.data.avfashion_build [--out PATH] [--clips N] [--workers W]``."""
    parser = argparse.ArgumentParser(prog="python -m mmviz.data.avfashion_build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"output .npz (default: {default_out()})")
    parser.add_argument("--clips", type=int, default=3000, help="number of spoken class-name clips (default: 3000)")
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at a time (default: 2)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        path = build_avfashion(args.out or default_out(), n_clips=args.clips, workers=args.workers)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.clips} clips) in {time.perf_counter() - t0:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
