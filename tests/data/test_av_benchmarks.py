"""CREMA-D, AVE and Kinetics-Sounds loaders on small fixtures written in exactly the official folder layouts."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmviz.data import av_fixtures as fx
from mmviz.data.av_benchmarks import CREMAD_CLASSES, KS_RECIPE, SPEECH_RECIPE, AVFolderConfig, CremadConfig
from mmviz.data.avfiles import IMAGENET_MEAN, IMAGENET_STD, compute_log_spectrogram, read_wav
from mmviz.data.registry import DATASETS, create_dataset
from mmviz.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("av")
    return {
        "cremad": fx.write_cremad(base / "cremad"),
        "ave": fx.write_ave(base / "ave"),
        "ks": fx.write_ks(base / "ks"),
    }


def _config(name: str, root: Path, **kw):
    cls = CremadConfig if name == "cremad" else AVFolderConfig
    return cls(root=str(root), image_size=kw.pop("image_size", 32), val_fraction=kw.pop("val_fraction", 0.25), **kw)


def _load(name: str, root: Path, **kw):
    return create_dataset(name, _config(name, root, **kw))


def test_cremad_layout_reads_the_csvs_labels_and_holds_out_val_from_train(roots):
    data = _load("cremad", roots["cremad"])
    assert data.classes == CREMAD_CLASSES and data.modality_names == ("audio", "visual")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 18, "val": 6, "test": 12}
    test_ids = {line.split(",")[0] for line in (roots["cremad"] / "test.csv").read_text().split()}
    assert {data.clips[i].clip_id for i in data.splits["test"]} == test_ids  # test is the test list, untouched
    assert not set(data.splits["val"]) & set(data.splits["train"])
    for i in data.splits["val"]:  # labels come from the csv's emotion column
        assert CREMAD_CLASSES[data.clips[i].label] in data.clips[i].clip_id
    assert set(data.probe_index) <= set(data.splits["val"])


@pytest.mark.parametrize("name", ["cremad", "ave", "ks"])
def test_each_layout_yields_dict_batches_of_the_papers_shapes(roots, name):
    data = _load(name, roots[name])
    recipe = KS_RECIPE if name == "ks" else SPEECH_RECIPE
    frames = 1 if name == "cremad" else 3
    batch = next(iter(data.loader("train", 4)))
    assert set(batch) == {"audio", "visual", "label", "index"}
    assert batch["audio"].shape == (4, *recipe.shape) and batch["visual"].shape == (4, 3, frames, 32, 32)
    assert batch["label"].dtype == torch.long and torch.isfinite(batch["audio"]).all()
    assert [s.shape for s in data.modalities] == [recipe.shape, (3, frames, 32, 32)]


def test_the_paper_shapes_at_full_size():
    assert SPEECH_RECIPE.shape == (257, 188)  # OGM-GE's CREMA-D spectrogram: 3 s at 22,050 Hz, n_fft 512, hop 353
    assert KS_RECIPE.shape == (129, 626)


def test_ave_reads_all_three_lists_and_numbers_classes_by_name(roots):
    data = _load("ave", roots["ave"])
    assert data.classes == ("Bark", "Church bell", "Flute")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 9, "val": 9, "test": 9}


def _reference_log_stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa.stft's defaults written out with numpy: centred frames, zero padding, periodic Hann window."""
    padded = np.pad(x, n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [padded[s : s + n_fft] * window for s in range(0, len(padded) - n_fft + 1, hop)]
    return np.log(np.abs(np.fft.rfft(np.array(frames), axis=1)).T + 1e-7)


def test_log_spectrogram_matches_the_librosa_recipe_written_with_numpy():
    rate = SPEECH_RECIPE.sample_rate
    t = np.arange(int(1.3 * rate)) / rate
    x = (0.8 * np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    got = compute_log_spectrogram(torch.from_numpy(x), rate, SPEECH_RECIPE).numpy()
    looped = np.clip(np.tile(x, 3)[: 3 * rate], -1, 1)  # OGM-GE: tile, keep 3 s, clip to [-1, 1]
    want = _reference_log_stft(looped, 512, 353)
    assert got.shape == want.shape == (257, 188)
    loud = want > -3  # compare where there is energy (log of tiny magnitudes is dominated by float rounding)
    np.testing.assert_allclose(got[loud], want[loud], atol=2e-3)


def test_wav_reader_round_trips_16_bit_pcm(tmp_path):
    x = np.sin(np.linspace(0, 20, 800)) * 0.7
    fx.write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and np.abs(y - x).max() < 1e-4


def test_eval_frames_are_resized_and_normalised_with_imagenet_statistics(tmp_path):
    root = fx.write_cremad(tmp_path / "c", per_class=4, test_per_class=1)
    clip = (root / "test.csv").read_text().split()[0].split(",")[0]
    for f in (root / "Image-01-FPS" / clip).glob("*.jpg"):
        Image.new("RGB", (40, 30), (255, 0, 128)).save(f)
    data = _load("cremad", root)
    i = next(i for i in data.splits["test"] if data.clips[i].clip_id == clip)
    pos = int(np.flatnonzero(data.splits["test"] == i)[0])
    visual = data.dataset("test")[pos]["visual"]
    want = (torch.tensor([255, 0, 128]) / 255.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(visual[:, 0].mean(dim=(1, 2)), want, atol=0.02)
    assert torch.equal(data.dataset("test")[pos]["visual"], visual)  # evaluation inputs are fixed


def test_workers_give_the_same_eval_batches_as_the_main_process(roots):
    data = _load("ks", roots["ks"])
    one = next(iter(data.loader("test", 6)))
    two = next(iter(data.loader("test", 6, num_workers=2)))
    assert all(torch.equal(one[k], two[k]) for k in one)


# ---- every problem is one sentence naming the file, raised before any batch is read -------------------------


def _copy(roots, name, tmp_path) -> Path:
    return Path(shutil.copytree(roots[name], tmp_path / name))


def test_missing_root_folder(tmp_path):
    with pytest.raises(DataError, match=r"CREMA-D folder '.*nowhere' does not exist"):
        _load("cremad", tmp_path / "nowhere")


def test_empty_root_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="'root' parameter of CremadConfig"):
        CremadConfig()


def test_missing_split_list(roots, tmp_path):
    root = _copy(roots, "ave", tmp_path)
    (root / "valSet.txt").unlink()
    with pytest.raises(DataError, match=r"split list '.*valSet.txt' does not exist"):
        _load("ave", root)


def test_csv_naming_an_absent_clip(roots, tmp_path):
    root = _copy(roots, "cremad", tmp_path)
    with open(root / "train.csv", "a") as fh:
        fh.write("9999_XXX_ANG_XX,ANG\n")
    with pytest.raises(DataError) as err:
        _load("cremad", root)
    msg = str(err.value)
    assert "train.csv" in msg and "'9999_XXX_ANG_XX'" in msg and "9999_XXX_ANG_XX.wav" in msg and msg.count(". ") == 0


def test_clip_with_no_frames(roots, tmp_path):
    root = _copy(roots, "ks", tmp_path)
    clip = (root / "my_train.txt").read_text().split()[0].split(",")[0]
    for f in (root / "train" / clip).glob("*.jpg"):
        f.unlink()
    with pytest.raises(DataError, match=rf"frame folder '.*{clip}' of clip '{clip}' holds no frames"):
        _load("ks", root)


def test_corrupt_wav(roots, tmp_path):
    root = _copy(roots, "cremad", tmp_path)
    wav = sorted((root / "AudioWAV").glob("*.wav"))[3]
    wav.write_bytes(b"this is not a wav file at all")
    with pytest.raises(DataError, match=rf"audio file '.*{wav.name}' is not a readable PCM wav file"):
        _load("cremad", root)


def test_truncated_wav(roots, tmp_path):
    root = _copy(roots, "ave", tmp_path)
    wav = sorted((root / "Audios").glob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"audio file '.*{wav.name}' is (truncated|not a readable)"):
        _load("ave", root)


def test_unknown_emotion_names_the_line(roots, tmp_path):
    root = _copy(roots, "cremad", tmp_path)
    with open(root / "test.csv", "a") as fh:
        fh.write("1001_DFA_XYZ_XX,XYZ\n")
    with pytest.raises(DataError, match=r"Line 13 of the split list '.*test.csv' must be 'clip,EMOTION'.*got 'XYZ'"):
        _load("cremad", root)


def test_unreadable_frame_found_before_training(roots, tmp_path):
    root = _copy(roots, "ave", tmp_path)
    frame = sorted((root / "Image-01-FPS-SE").glob("*/*.jpg"))[0]
    frame.write_bytes(b"garbage")
    with pytest.raises(DataError, match=rf"frame '.*{frame.name}' of clip .* is not a readable image"):
        _load("ave", root)


def test_a_local_copy_trains_with_the_built_in_trainer_from_the_cli(tmp_path, capsys):
    """A user with CREMA-D on disk runs `mmviz train --dataset cremad --set data.root=...`: the trainer reads the clips
    lazily through a DataLoader, the method and the probes run, a snapshot is written (it refused file datasets)."""
    from mmviz.cli import main as cli_main
    from mmviz.store import open_store

    assert {DATASETS.get(n).flags["kind"] for n in ("cremad", "ave", "ks")} == {"files"}
    root = fx.write_cremad(tmp_path / "cremad", per_class=2, test_per_class=1, n_frames=1)
    sets = [f"data.root={root}", "data.val_fraction=0.5", "data.image_size=8", "train.batch_size=6"]
    argv = ["train", "--dataset", "cremad", "--method", "ogm_ge", "--epochs", "1", "--workspace", str(tmp_path / "ws")]
    assert cli_main([*argv, *(x for s in sets for x in ("--set", s))]) == 0
    store = open_store(tmp_path / "ws")
    (run_id,) = store.list_runs()["run_id"]
    run = store.get_run(run_id)
    assert (run["status"], run["dataset"], run["epochs_done"]) == ("finished", "cremad", 1)
    assert run["config"]["data"]["root"] == str(root) and run["modalities"] == ["audio", "visual"]
    keys = set(store.metric_keys(run_id))
    assert {"coef/ogm_ge/audio", "grad_norm/visual", "val/acc/audio", "test/acc/fused"} <= keys
    assert list(store.load_artifacts(run_id, "snapshot")["epoch"]) == [1]


def test_audio_and_visual_resnet18_encoders():
    from models.av_resnet import AudioResNet18, VisualResNet18

    torch.manual_seed(0)
    audio, visual = AudioResNet18().eval(), VisualResNet18().eval()
    assert sum(p.numel() for p in visual.parameters()) == pytest.approx(11.17e6, rel=0.01)  # ResNet-18 trunk
    assert audio(torch.randn(2, 65, 40)).shape == (2, 512)
    clip = torch.randn(2, 3, 3, 32, 32)
    z = visual(clip)
    assert z.shape == (2, 512)
    # frames are pooled over time: their order does not matter, and one frame repeated equals that frame alone
    assert torch.allclose(visual(clip[:, :, [2, 0, 1]]), z, atol=1e-5)
    assert torch.allclose(visual(clip[:, :, :1].repeat(1, 1, 3, 1, 1)), visual(clip[:, :, :1]), atol=1e-5)
    bn = [m.weight for m in visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert math.isclose(float(torch.cat(bn).detach().mean()), 1.0, abs_tol=0.01)  # BN weights ~ N(1, 0.02)
