"""Audio-visual datasets loaded lazily from files: wav audio, extracted frames per clip, split lists.

The layout and the preprocessing follow the official repositories of the audio-visual imbalance papers (OGM-GE,
PMR, MLA); the three layouts themselves are in :mod:`mmviz.data.av_benchmarks`. Here is what they share:

- **Audio** (:func:`read_wav`, :func:`compute_log_spectrogram`): a PCM wav file read with the standard library,
  averaged to mono and resampled to the recipe's rate (linear interpolation; the repositories' ``librosa.load``
  uses a band-limited resampler, so audio that is not already at the recipe's rate differs slightly), looped to
  the recipe's length, clipped to [-1, 1], then ``log(|STFT| + 1e-7)`` with ``torch.stft`` (periodic Hann window of
  ``n_fft`` samples, centred frames with zero padding: librosa's defaults).
- **Frames** (:func:`load_frames`): ``frames_per_clip`` jpg frames of the clip's folder, in name order; training
  picks them at random (sorted), evaluation evenly spaced. Training: a random resized crop (scale 0.08-1,
  aspect 3/4-4/3) and a horizontal flip with probability 0.5; evaluation: a resize to ``image_size`` squared;
  both scaled to [0, 1] and normalised with the ImageNet mean and std, as the repositories' torchvision
  transforms do. A clip tensor is ``(3, T, H, W)``.
- **Checks before training** (:func:`check_clips`): the root folder, the split lists, every listed clip's wav
  (readable PCM header, not truncated) and frame folder (at least one frame, first frame readable). Each
  problem is one sentence naming the file; nothing is left to fail in the middle of an epoch.

A sample is ``{"audio": (F, T_a), "visual": (3, T, H, W), "label": int64, "index": int64}``: the dict batches
a ``DataLoader`` collates for ``fit`` and for your own loop.
"""

from __future__ import annotations

import dataclasses
import math
import os
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from mmviz.data.base import DataDescription, ModalitySpec, stratified_split, stratified_subset
from mmviz.data.loader import LoaderSplit
from mmviz.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class AudioRecipe:
    """How a wav file becomes a log spectrogram.

    Attributes:
        sample_rate: rate the audio is resampled to (Hz).
        seconds: length of the excerpt (the clip is looped until it is at least ``loop_to`` s long).
        loop_to: the clip is tiled until it lasts at least this long (s).
        n_fft: STFT window and FFT size; the spectrogram has ``n_fft // 2 + 1`` frequency rows.
        hop: STFT hop length in samples.
        random_start: the latest start of the excerpt in training (s); 0 = always from the start. Evaluation
            always starts at 0, so val and test inputs are fixed.
    """

    sample_rate: int
    seconds: float
    loop_to: float
    n_fft: int
    hop: int
    random_start: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        """``(frequency rows, time frames)`` of the spectrogram."""
        n = int(round(self.seconds * self.sample_rate))
        return self.n_fft // 2 + 1, 1 + n // self.hop


@dataclasses.dataclass(frozen=True)
class Clip:
    """One listed clip: its id, label, wav file and frame folder."""

    clip_id: str
    label: int
    wav: Path
    frames: Path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples in [-1, 1] as float32 mono ``(N,)`` and the sample rate of a PCM wav file (8/16/24/32-bit).

    Raises DataError naming the file when it is not a readable, uncompressed PCM wav.
    """
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as exc:
        raise DataError(f"The audio file {str(path)!r} is not a readable PCM wav file ({exc}).") from None
    if len(raw) < n * channels * width or n == 0:
        raise DataError(f"The audio file {str(path)!r} is truncated or empty: its header promises {n} frames.")
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    else:
        dtype = {2: np.int16, 4: np.int32}[width]
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    return x.reshape(-1, channels).mean(axis=1), rate


def check_wav(path: Path) -> None:
    """Raise DataError naming ``path`` unless it is a PCM wav whose header and length are consistent (cheap)."""
    try:
        with wave.open(str(path), "rb") as w:
            n, frame_bytes = w.getnframes(), w.getnchannels() * w.getsampwidth()
            if w.getsampwidth() not in (1, 2, 3, 4):
                raise DataError(
                    f"The audio file {str(path)!r} has {8 * w.getsampwidth()}-bit samples; use 8-32 bit PCM."
                )
            if n == 0:
                raise DataError(f"The audio file {str(path)!r} holds no samples.")
            w.setpos(n - 1)
            if len(w.readframes(1)) != frame_bytes:
                raise DataError(f"The audio file {str(path)!r} is truncated: its header promises {n} frames.")
    except (wave.Error, EOFError, OSError) as exc:
        raise DataError(f"The audio file {str(path)!r} is not a readable PCM wav file ({exc}).") from None


def resample(x: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """``x`` ``(N,)`` at ``rate`` Hz resampled to ``target`` Hz by linear interpolation (unchanged when equal)."""
    if rate == target:
        return x
    n = max(1, int(round(len(x) * target / rate)))
    return F.interpolate(x.view(1, 1, -1), size=n, mode="linear", align_corners=False).view(-1)


def compute_log_spectrogram(
    samples: torch.Tensor, rate: int, recipe: AudioRecipe, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The recipe's log-magnitude STFT ``(n_fft // 2 + 1, frames)`` of mono ``samples`` ``(N,)`` at ``rate`` Hz.

    ``generator`` draws the excerpt's start in training (``recipe.random_start`` > 0); None = start at 0.
    """
    x = resample(samples.float(), rate, recipe.sample_rate)
    need = int(round(recipe.seconds * recipe.sample_rate))
    loop_to = max(need, int(round(recipe.loop_to * recipe.sample_rate)))
    if len(x) < loop_to:
        x = x.repeat(math.ceil(loop_to / len(x)))
    start = 0
    if generator is not None and recipe.random_start > 0:
        latest = min(int(recipe.random_start * recipe.sample_rate), len(x) - need)
        start = int(torch.randint(0, latest + 1, (1,), generator=generator)) if latest > 0 else 0
    x = x[start : start + need].clamp(-1.0, 1.0)
    window = torch.hann_window(recipe.n_fft, periodic=True)
    spec = torch.stft(
        x, recipe.n_fft, recipe.hop, recipe.n_fft, window, center=True, pad_mode="constant", return_complex=True
    )
    return torch.log(spec.abs() + 1e-7)


def list_frames(folder: Path) -> list[Path]:
    """The frame images of a clip folder, in name order."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(FRAME_SUFFIXES))
    except OSError:
        return []
    return [folder / n for n in names]


def _random_resized_crop(img: Image.Image, size: int, g: torch.Generator) -> Image.Image:
    """A crop of 8-100% of the area with aspect 3/4-4/3 (10 tries, else the centred largest), resized to size^2."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(0.08, 1.0, generator=g))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)))
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            return img.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))


def load_frames(paths: Sequence[Path], count: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` frames of a clip as a normalised ``(3, count, size, size)`` tensor.

    With ``generator`` (training): frames drawn at random (distinct when there are enough, in time order), each
    randomly cropped and flipped. Without (evaluation): evenly spaced frames, resized.
    """
    n = len(paths)
    if generator is not None:
        if n >= count:
            picks = sorted(torch.randperm(n, generator=generator)[:count].tolist())
        else:
            picks = sorted(torch.randint(0, n, (count,), generator=generator).tolist())
    else:
        picks = [min(n - 1, int(i * n / count)) for i in range(count)]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = torch.empty(3, count, size, size)
    for t, i in enumerate(picks):
        try:
            with Image.open(paths[i]) as im:
                img = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"The frame {str(paths[i])!r} is not a readable image ({exc}).") from None
        if generator is not None:
            img = _random_resized_crop(img, size, generator)
            if float(torch.rand(1, generator=generator)) < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            img = img.resize((size, size), Image.BILINEAR)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
        out[:, t] = (x.permute(2, 0, 1).float() / 255.0 - mean) / std
    return out


def check_clips(clips: Sequence[Clip], listed_in: dict[str, Path]) -> None:
    """Refuse, with one sentence naming the file, clips whose wav or frames are missing, empty or unreadable.

    ``listed_in`` maps a clip id to the split list that names it (for the message). Runs before any training.
    """
    missing_wav = [c for c in clips if not c.wav.is_file()]
    if missing_wav:
        c = missing_wav[0]
        raise DataError(
            f"The split list {str(listed_in[c.clip_id])!r} names clip {c.clip_id!r}, but its audio file "
            f"{str(c.wav)!r} does not exist ({len(missing_wav)} listed clips lack their wav file)."
        )
    missing_dir = [c for c in clips if not c.frames.is_dir()]
    if missing_dir:
        c = missing_dir[0]
        raise DataError(
            f"The split list {str(listed_in[c.clip_id])!r} names clip {c.clip_id!r}, but its frame folder "
            f"{str(c.frames)!r} does not exist ({len(missing_dir)} listed clips lack their frame folder)."
        )
    for c in clips:
        frames = list_frames(c.frames)
        if not frames:
            raise DataError(
                f"The frame folder {str(c.frames)!r} of clip {c.clip_id!r} holds no frames "
                f"({', '.join(FRAME_SUFFIXES)} files); extract its frames or remove it from the split list."
            )
        try:
            with Image.open(frames[0]) as im:
                im.size  # noqa: B018 - the header is parsed on open; this is the cheap readability check
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(
                f"The frame {str(frames[0])!r} of clip {c.clip_id!r} is not a readable image ({exc})."
            ) from None
        check_wav(c.wav)


class ClipDataset(torch.utils.data.Dataset):
    """One split of a file dataset: sample ``i`` is read from disk when asked for (dict samples, see module doc).

    ``train=True`` applies the random excerpt, frame choice, crop and flip, drawn from torch's global random
    state (which a ``DataLoader`` seeds per worker and epoch from its own generator): reproducible for a seed.
    """

    def __init__(self, data: FileData, split: str, train: bool) -> None:
        self.data = data
        self._split = split
        self.positions = data.splits[split]
        self.train = train

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def index(self) -> np.ndarray:
        """Each sample's absolute index (its clip's position over all splits): what batches carry as ``index``."""
        return np.asarray(self.positions, dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        """Every sample's label, in this split's order (read from the split list, not from the files)."""
        return np.array([self.data.clips[int(i)].label for i in self.positions], dtype=np.int64)

    def without_augmentation(self) -> ClipDataset:
        """The same split read as for evaluation (fixed excerpt and frames, no crop or flip, no random draws)."""
        return ClipDataset(self.data, self._split, False)

    @property
    def num_samples(self) -> int:
        """Size of the absolute sample index space (``index`` counts clips over all splits)."""
        return len(self.data.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.positions[i])
        clip = self.data.clips[index]
        g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,)))) if self.train else None
        samples, rate = read_wav(clip.wav)
        audio = compute_log_spectrogram(torch.from_numpy(samples), rate, self.data.recipe, g)
        frames = list_frames(clip.frames)
        if not frames:
            raise DataError(f"The frame folder {str(clip.frames)!r} of clip {clip.clip_id!r} holds no frames any more.")
        visual = load_frames(frames, self.data.frames_per_clip, self.data.image_size, g)
        return {
            "audio": audio,
            "visual": visual,
            "label": torch.tensor(clip.label, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }


@dataclasses.dataclass
class FileData(DataDescription):
    """A multimodal dataset whose samples stay on disk until a ``DataLoader`` asks for them.

    Same description as the in-memory :class:`~mmviz.data.base.MultimodalData` (name, modalities, classes,
    splits and probe subset as absolute sample indices, attribution, info), plus the clips and how to read them.
    """

    name: str
    modalities: tuple[ModalitySpec, ...]
    classes: tuple[str, ...]
    clips: list[Clip]
    splits: dict[str, np.ndarray]
    probe_index: np.ndarray
    recipe: AudioRecipe
    frames_per_clip: int
    image_size: int
    attribution: str = ""
    info: dict = dataclasses.field(default_factory=dict)
    num_workers: int = 0
    lazy = True  # samples are read from files through a DataLoader, never held as arrays

    @property
    def y(self) -> np.ndarray:
        """Labels of every clip ``(N,)``."""
        return np.array([c.label for c in self.clips], dtype=np.int64)

    @property
    def num_samples(self) -> int:
        """Number of clips over all splits (the absolute index space)."""
        return len(self.clips)

    def to_splits(self, device: torch.device) -> dict[str, LoaderSplit]:
        """The three splits for ``fit()``: clips read by ``num_workers`` DataLoader workers (train augmented)."""
        return {s: LoaderSplit(self.dataset(s), device, num_workers=self.num_workers) for s in ("train", "val", "test")}

    def dataset(self, split: str, train: bool | None = None) -> ClipDataset:
        """The ``torch`` dataset of one split (``train`` defaults to augmenting the train split only)."""
        if split not in self.splits:
            raise DataError(f"Dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}.")
        return ClipDataset(self, split, split == "train" if train is None else train)

    def loader(
        self, split: str, batch_size: int, *, shuffle: bool | None = None, num_workers: int = 0, seed: int = 0,
        pin_memory: bool = False,
    ) -> torch.utils.data.DataLoader:  # fmt: skip
        """A ``DataLoader`` of dict batches over one split (shuffled for train unless told otherwise)."""
        shuffle = split == "train" if shuffle is None else shuffle
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return torch.utils.data.DataLoader(
            self.dataset(split), batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
            pin_memory=pin_memory, generator=generator, persistent_workers=num_workers > 0,
        )  # fmt: skip


def build_file_data(
    name: str,
    classes: Sequence[str],
    split_clips: dict[str, list[Clip]],
    listed_in: dict[str, Path],
    *,
    recipe: AudioRecipe,
    frames_per_clip: int,
    image_size: int,
    val_fraction: float,
    split_seed: int,
    probe_size: int,
    attribution: str,
    info: dict,
    num_workers: int = 0,
) -> FileData:
    """Check every clip and assemble a :class:`FileData`; a layout without a val list gets a stratified one.

    ``split_clips`` holds ``train`` and ``test`` (and ``val`` when the layout lists one). Without ``val``, a
    ``val_fraction`` share of each class of the train list becomes val (fixed by ``split_seed``), so model
    selection never looks at the test list.
    """
    all_clips = [c for split in split_clips.values() for c in split]
    check_clips(all_clips, listed_in)
    clips: list[Clip] = []
    splits: dict[str, np.ndarray] = {}
    for split, members in split_clips.items():
        splits[split] = np.arange(len(clips), len(clips) + len(members), dtype=np.int64)
        clips.extend(members)
    y = np.array([c.label for c in clips], dtype=np.int64)
    if "val" not in splits:
        train = splits["train"]
        parts = stratified_split(y[train], {"train": 1 - val_fraction, "val": val_fraction}, split_seed)
        splits = {"train": train[parts["train"]], "val": train[parts["val"]], "test": splits["test"]}
    for split in ("train", "val", "test"):
        if len(splits[split]) == 0:
            raise DataError(
                f"Dataset {name!r} has an empty {split!r} split; list more clips in its split files"
                + (" or raise 'val_fraction'." if split == "val" else ".")
            )
    specs = (
        ModalitySpec("audio", "sequence", recipe.shape, "log-magnitude STFT (frequency x time)"),
        ModalitySpec("visual", "video", (3, frames_per_clip, image_size, image_size), "RGB frames (C x T x H x W)"),
    )
    return FileData(
        name=name,
        modalities=specs,
        classes=tuple(classes),
        clips=clips,
        splits={k: np.sort(v) for k, v in splits.items()},
        probe_index=stratified_subset(splits["val"], y, probe_size, split_seed),
        recipe=recipe,
        frames_per_clip=frames_per_clip,
        image_size=image_size,
        attribution=attribution,
        info=info,
        num_workers=num_workers,
    )
