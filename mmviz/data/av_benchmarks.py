"""CREMA-D, AVE and Kinetics-Sounds from your local copy, in the folder layouts the papers' repositories use.

These data sets cannot be downloaded by mmviz (licences, size); point ``root`` at the folder you preprocessed
with the official scripts (OGM-GE ``GeWu-Lab/OGM-GE_CVPR2022``, PMR ``fanyunfeng-bit/Modal-Imbalance-PMR``).
Samples are read lazily (see :mod:`mmviz.data.avfiles`), so train them through a ``DataLoader``: in your own loop
with :mod:`mmviz.api`, or with ``fit(cfg, data=...)``.

Layouts (``root`` / ...):

============== =========================================== ======================== ============================
dataset        split lists                                 audio                    frames
============== =========================================== ======================== ============================
``cremad``     ``train.csv``, ``test.csv``: ``clip,EMO``     ``AudioWAV/<clip>.wav``  ``Image-01-FPS/<clip>/*.jpg``
               (EMO in NEU HAP SAD FEA DIS ANG)
``ave``        ``trainSet.txt``, ``valSet.txt``,             ``Audios/<id>.wav``      ``Image-01-FPS-SE/<id>/*.jpg``
               ``testSet.txt``: ``Category&id&quality&s&e``
``ks``         ``my_train.txt``, ``my_test.txt``:            ``<split>/<clip>/<clip>  ``<split>/<clip>/*.jpg``
               ``clip,frames,label`` (label 0..C-1)          .wav``
============== =========================================== ======================== ============================

Audio recipes: CREMA-D and AVE as OGM-GE's and PMR's loaders (22,050 Hz, the clip looped to 3 s, STFT
``n_fft=512``, hop 353 -> 257 x 188); Kinetics-Sounds as OGM-GE's VGGSound/KS loader (16 kHz, looped to 10 s,
a 5 s excerpt starting at a random point of the first 5 s in training, ``n_fft=256``, hop 128 -> 129 x 626).
Frames: 1 per clip for CREMA-D (OGM-GE's ``--fps 1``), 3 for AVE and KS, 224 x 224.

Decisions on the official loaders' pitfalls: they skip listed clips whose files are missing without a word;
here that is an error naming the list and the clip (set up the data, or remove the line). They draw random frame
indices and then read the first frames of an unsorted folder listing instead; here frames are sorted by name and
the draw is used (evenly spaced at evaluation). CREMA-D and KS have no val list: a stratified ``val_fraction``
of the train list is held out (``split_seed``), so model selection never sees the test list. AVE classes are
numbered in sorted order of their names (PMR numbers them by first appearance in ``testSet.txt``).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from mmviz.config import Config, param
from mmviz.data.registry import DATASETS
from mmviz.errors import ConfigError, DataError

if TYPE_CHECKING:  # the loaders import torch (mmviz.data.avfiles) when called, so declaring them does not
    from mmviz.data.avfiles import FileData

CREMAD_CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
# the AudioRecipe settings of the papers' preprocessing; ``SPEECH_RECIPE`` / ``KS_RECIPE`` are built on first access
# (mmviz.data.avfiles imports torch; declaring the datasets must not)
_RECIPES = {
    "SPEECH_RECIPE": {"sample_rate": 22050, "seconds": 3.0, "loop_to": 3.0, "n_fft": 512, "hop": 353},
    "KS_RECIPE": {"sample_rate": 16000, "seconds": 5.0, "loop_to": 10.0, "n_fft": 256, "hop": 128, "random_start": 5.0},
}


def __getattr__(name: str):
    if name in _RECIPES:
        from mmviz.data.avfiles import AudioRecipe

        return AudioRecipe(**_RECIPES[name])
    raise AttributeError(f"module 'mmviz.data.av_benchmarks' has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class AVFolderConfig(Config):
    """Settings of a local audio-visual data set in the official repositories' layout."""

    root: str = param("", "Folder of your preprocessed copy (split lists, audio and frame folders inside).")
    frames_per_clip: int = param(3, "Frames per clip fed to the visual encoder.", low=1, high=64)
    image_size: int = param(
        224, "Side of the square frames after crop / resize (the papers use 224).", low=8, high=1024
    )
    val_fraction: float = param(
        0.1, "Share of each class of the train list held out for validation when the layout has no val list.",
        low=0.01, high=0.5,
    )  # fmt: skip
    split_seed: int = param(
        0, "Seed of the train/val split (kept fixed so runs are comparable).", low=0, high=2**31 - 1
    )
    probe_size: int = param(
        500, "Size of the fixed stratified val subset used for per-epoch snapshots.", low=10, high=20000
    )
    workers: int = param(
        0, "DataLoader worker processes reading clips when mmviz trains it (0: read in the training process).",
        low=0, high=64,
    )  # fmt: skip

    def check(self) -> None:
        if not self.root:
            raise ConfigError(
                f"The 'root' parameter of {self.title()} must name the data set's folder. Got '' instead."
            )


@dataclasses.dataclass(frozen=True)
class CremadConfig(AVFolderConfig):
    """Settings of CREMA-D (OGM-GE layout)."""

    frames_per_clip: int = param(1, "Frames per clip fed to the visual encoder (OGM-GE uses 1).", low=1, high=64)


def _root(config: AVFolderConfig, dataset: str) -> Path:
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise DataError(f"The {dataset} folder {str(root)!r} does not exist; set 'root' to your preprocessed copy.")
    return root


def _list_file(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise DataError(
            f"The split list {str(path)!r} does not exist; the layout needs it (see mmviz.data.av_benchmarks)."
        )
    return path


def _rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-empty rows of a split list with their 1-based line numbers (a UTF-8 BOM is ignored)."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(fh, delimiter=delimiter), 1) if row]


def _bad_line(path: Path, line: int, what: str) -> DataError:
    return DataError(f"Line {line} of the split list {str(path)!r} {what}.")


def _finish(name: str, config: AVFolderConfig, classes, split_clips, listed_in, recipe, attribution) -> FileData:
    from mmviz.data.avfiles import AudioRecipe, build_file_data

    recipe = AudioRecipe(**recipe)
    return build_file_data(
        name, classes, split_clips, listed_in, recipe=recipe, frames_per_clip=config.frames_per_clip,
        image_size=config.image_size, val_fraction=config.val_fraction, split_seed=config.split_seed,
        probe_size=config.probe_size, attribution=attribution, info={"root": str(Path(config.root).resolve())},
        num_workers=config.workers,
    )  # fmt: skip


@DATASETS.register("cremad", config=CremadConfig, kind="files", modalities=("audio", "visual"))
def load_cremad(config: CremadConfig) -> FileData:
    """CREMA-D from your copy: 7,442 clips of 91 actors speaking with 6 emotions; audio vs a face frame (6 classes)."""
    from mmviz.data.avfiles import Clip

    root = _root(config, "CREMA-D")
    split_clips: dict[str, list[Clip]] = {}
    listed_in: dict[str, Path] = {}
    for split, fname in (("train", "train.csv"), ("test", "test.csv")):
        path = _list_file(root, fname)
        clips = []
        for line, row in _rows(path, ","):
            if len(row) < 2 or row[1] not in CREMAD_CLASSES:
                got = row[1] if len(row) > 1 else "nothing"
                raise _bad_line(
                    path, line, f"must be 'clip,EMOTION' with EMOTION one of {', '.join(CREMAD_CLASSES)}; got {got!r}"
                )
            clip = row[0]
            clips.append(
                Clip(
                    clip, CREMAD_CLASSES.index(row[1]), root / "AudioWAV" / f"{clip}.wav", root / "Image-01-FPS" / clip
                )
            )
            listed_in[clip] = path
        split_clips[split] = clips
    return _finish(
        "cremad", config, CREMAD_CLASSES, split_clips, listed_in, _RECIPES["SPEECH_RECIPE"],
        "CREMA-D (Cao et al., IEEE TAC 2014), Open Database License; your local copy.",
    )  # fmt: skip


@DATASETS.register("ave", config=AVFolderConfig, kind="files", modalities=("audio", "visual"))
def load_ave(config: AVFolderConfig) -> FileData:
    """AVE from your copy: 4,143 ten-second YouTube clips of 28 audio-visual event classes (PMR layout)."""
    from mmviz.data.avfiles import Clip

    root = _root(config, "AVE")
    parsed: dict[str, list[tuple[str, str]]] = {}
    listed_in: dict[str, Path] = {}
    for split, fname in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        path = _list_file(root, fname)
        items = []
        for line, row in _rows(path, "&"):
            if len(row) < 2 or not row[0] or not row[1]:
                raise _bad_line(path, line, f"must be 'Category&VideoID&...'; got {'&'.join(row)!r}")
            items.append((row[0], row[1]))
            listed_in[row[1]] = path
        parsed[split] = items
    classes = tuple(sorted({c for items in parsed.values() for c, _ in items}))
    split_clips = {
        split: [Clip(vid, classes.index(c), root / "Audios" / f"{vid}.wav", root / "Image-01-FPS-SE" / vid) for c, vid in items]
        for split, items in parsed.items()
    }  # fmt: skip
    return _finish(
        "ave", config, classes, split_clips, listed_in, _RECIPES["SPEECH_RECIPE"],
        "AVE (Tian et al., ECCV 2018), YouTube clips; your local copy.",
    )  # fmt: skip


@DATASETS.register("ks", config=AVFolderConfig, kind="files", modalities=("audio", "visual"))
def load_kinetics_sounds(config: AVFolderConfig) -> FileData:
    """Kinetics-Sounds from your copy: Kinetics clips of classes you can hear (OGM-GE layout, labels 0..C-1)."""
    from mmviz.data.avfiles import Clip

    root = _root(config, "Kinetics-Sounds")
    split_clips: dict[str, list[Clip]] = {}
    listed_in: dict[str, Path] = {}
    labels: set[int] = set()
    for split, fname, folder in (("train", "my_train.txt", "train"), ("test", "my_test.txt", "test")):
        path = _list_file(root, fname)
        clips = []
        for line, row in _rows(path, ","):
            if len(row) < 3 or not row[2].isdigit():
                raise _bad_line(path, line, f"must be 'clip,frames,label' with an integer label; got {','.join(row)!r}")
            clip, label = row[0], int(row[2])
            labels.add(label)
            clips.append(Clip(clip, label, root / folder / clip / f"{clip}.wav", root / folder / clip))
            listed_in[clip] = path
        split_clips[split] = clips
    num = max(labels) + 1 if labels else 0
    return _finish(
        "ks", config, tuple(str(i) for i in range(num)), split_clips, listed_in, _RECIPES["KS_RECIPE"],
        "Kinetics-Sounds (Arandjelovic & Zisserman, ICCV 2017; a Kinetics subset), YouTube clips; your local copy.",
    )  # fmt: skip
