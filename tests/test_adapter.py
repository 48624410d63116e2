"""The adapter: a model written as the papers' official repositories write theirs (not built by mmviz) trains through
fit() with every probe and a method that needs its head split; bad wrapping is refused in one sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmviz.adapter import ModelAdapter
from mmviz.contracts import ModelSpec
from mmviz.data import create_dataset
from mmviz.data.synthetic import SyntheticConfig
from mmviz.errors import ConfigError
from mmviz.training.config import build_run_config
from mmviz.training.loop import NullStore, fit


class ConcatFusion(nn.Module):
    """As OGM-GE's official ``ConcatFusion``: one linear ``fc_out`` over the concatenated features."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.fc_out = nn.Linear(input_dim, output_dim)

    def forward(self, x, y):
        output = self.fc_out(torch.cat((x, y), dim=1))
        return x, y, output


class Net(nn.Module):
    """A 1-d conv net whose feature map is pooled inside the classifier's forward, as ResNets in those repos."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, channels, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x.unsqueeze(1)))  # (B, C, L): not yet pooled


class AVClassifier(nn.Module):
    """OGM-GE's ``AVClassifier`` shape: ``forward(audio, visual) -> (a, v, out)``, features pooled inside forward."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.audio_net = Net(8)
        self.visual_net = Net(8)
        self.fusion_module = ConcatFusion(16, n_classes)

    def forward(self, audio, visual):
        a = F.adaptive_avg_pool1d(self.audio_net(audio), 1).flatten(1)
        v = F.adaptive_avg_pool1d(self.visual_net(visual), 1).flatten(1)
        a, v, out = self.fusion_module(a, v)
        return a, v, out


def data_and_batch():
    data = create_dataset("synthetic", SyntheticConfig(n_train=120))
    batch = {m: torch.as_tensor(data.x[m][:6]) for m in data.modality_names}
    return data, batch


def adapter(**kw) -> ModelAdapter:
    torch.manual_seed(0)
    names = {
        "encoders": {"a": "audio_net", "b": "visual_net"},
        "fusion": "fusion_module",
        "head": "fusion_module.fc_out",
    }
    return ModelAdapter(AVClassifier(10), **{**names, **kw})


def test_the_adapter_takes_features_where_the_model_forms_them_and_splits_the_head_exactly():
    data, batch = data_and_batch()
    net = adapter(example=batch)
    assert net.capabilities == frozenset({"fuse", "final_linear", "head_split", "unimodal_logits"})
    assert net.feature_dims == {"a": 8, "b": 8} and net.num_classes == 10
    out = net(batch)
    a, v, logits = net.model(batch["a"], batch["b"])
    assert torch.equal(out.features["a"], a) and torch.equal(out.features["b"], v) and torch.equal(out.logits, logits)
    assert torch.allclose(out.unimodal_logits["a"] + out.unimodal_logits["b"], logits, atol=1e-6)
    assert torch.allclose(net.fuse(out.features).logits, logits)
    assert list(net.encoder_parameters("a")) == list(net.model.audio_net.parameters())


def test_a_model_from_an_official_repo_trains_through_fit_with_every_probe_and_ogm_ge(tmp_path):
    data, batch = data_and_batch()
    cfg = build_run_config("synthetic", "ogm_ge", ["data.n_train=120", "train.batch_size=32"], epochs=2)
    store = _Recording()
    result = fit(cfg, store, "r", tmp_path, data=data, model=adapter())
    keys = store.keys
    for family in ("grad_norm/a", "score/a", "conflict/cos/a", "param_dist/a", "val/shapley/a", "sep/purity/a",
                   "proto/intra/a", "val/acc_ncm/a", "imbalance/index", "coef/ogm_ge/a", "val/acc/a"):  # fmt: skip
        assert family in keys, family
    assert any(kind == "snapshot" for _, kind, _, _ in store.artifacts)
    assert 0.0 <= result.best_val_acc <= 1.0 and isinstance(result.model, ModelAdapter)


class _Items(torch.utils.data.Dataset):
    """A user's Dataset of dict items over one split of in-memory arrays."""

    def __init__(self, data, split: str) -> None:
        self.x = {m: torch.as_tensor(data.x[m][data.splits[split]]) for m in data.modality_names}
        self.y = torch.as_tensor(data.y[data.splits[split]])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{m: x[i] for m, x in self.x.items()}, "label": self.y[i]}


def test_a_users_model_and_dataloaders_go_through_fit(tmp_path):
    from torch.utils.data import DataLoader

    from mmviz.data.loader import LoaderData

    data, _ = data_and_batch()
    items = {s: _Items(data, s) for s in ("train", "val", "test")}
    user = LoaderData(
        DataLoader(items["train"], batch_size=5, shuffle=True), DataLoader(items["val"], batch_size=99), items["test"],
        modalities=data.modalities, classes=data.classes,
    )  # fmt: skip
    cfg = build_run_config("synthetic", "ogm_ge", ["data.n_train=120", "train.batch_size=32"], epochs=2)
    store = _Recording()
    result = fit(cfg, store, "r", tmp_path, data=user, model=adapter())
    assert {"coef/ogm_ge/a", "grad_norm/b", "val/acc/a", "sep/purity/b", "test/acc/fused"} <= store.keys
    assert any(kind == "snapshot" for _, kind, _, _ in store.artifacts)
    assert isinstance(result.model, ModelAdapter) and 0.0 <= result.test["test_acc"] <= 1.0
    steps = -(-len(items["train"]) // 32)  # fit batches with train.batch_size, not the loader's 5
    assert result.steps == 2 * steps

    pairs = [(torch.zeros(4), 0)] * 3
    with pytest.raises(ConfigError, match=r"^The 'val' dataset given to LoaderData yields tuple batches; mmviz needs"):
        LoaderData(items["train"], DataLoader(pairs), items["test"], modalities=data.modalities, classes=data.classes)


def test_a_method_that_needs_a_missing_capability_is_refused_naming_it():
    data, batch = data_and_batch()
    cfg = build_run_config("synthetic", "mla", ["data.n_train=120"], epochs=1)
    with pytest.raises(ConfigError) as exc:
        fit(cfg, data=data, model=adapter())
    assert str(exc.value).startswith(
        "Method 'mla' needs one linear head applied to every modality's features, but model"
    )
    assert str(exc.value).count(". ") == 0  # one sentence


@pytest.mark.parametrize(
    ("model", "kw", "message"),
    [
        (AVClassifier, {"encoders": {"a": "audio", "b": "visual_net"}},
         "The encoder of modality 'a' is 'audio', which is not a submodule of AVClassifier; its submodules are "
         "'audio_net', 'visual_net', 'fusion_module'."),
        (lambda n: _Unused(), {},
         "The encoder 'visual_net' of modality 'b' is never called by _Unused.forward; name the module that encodes 'b'."),
        (AVClassifier, {"fusion": None, "head": None},
         "The features of modality 'a' taken at its encoder's output have shape (6, 8, 64), not (batch, dim)"),
        (AVClassifier, {"head": "audio_net"},
         "The head 'audio_net' of AVClassifier is a Net, not an nn.Linear; name the linear layer that produces the "
         "logits."),
    ],
)  # fmt: skip
def test_bad_wrapping_is_refused_in_one_sentence_before_training(model, kw, message):
    _, batch = data_and_batch()
    names = {
        "encoders": {"a": "audio_net", "b": "visual_net"},
        "fusion": "fusion_module",
        "head": "fusion_module.fc_out",
    }
    with pytest.raises(ConfigError) as exc:
        ModelAdapter(model(10), **{**names, **kw}, example=batch)
    text = str(exc.value)
    assert text.startswith(message), text
    assert text.endswith(".") and text.count(". ") == 0


def test_a_model_spec_of_an_adapter_names_the_users_class():
    _, batch = data_and_batch()
    assert ModelSpec.of(adapter(example=batch)).label == "model 'AVClassifier'"


class _Unused(AVClassifier):
    """Its visual encoder exists but forward never calls it (the audio net encodes both inputs)."""

    def __init__(self) -> None:
        super().__init__(10)

    def forward(self, audio, visual):
        a = F.adaptive_avg_pool1d(self.audio_net(audio), 1).flatten(1)
        v = F.adaptive_avg_pool1d(self.audio_net(visual), 1).flatten(1)
        return self.fusion_module(a, v)


class _Recording(NullStore):
    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.artifacts: list = []

    def log_batch(self, run_id, rows, *, events=(), artifacts=(), heartbeat=None) -> None:
        self.keys.update(r[3] for r in rows)
        self.artifacts.extend(artifacts)

    def add_artifact(self, run_id, epoch, kind, path, meta=None) -> None:
        self.artifacts.append((epoch, kind, path, meta))
