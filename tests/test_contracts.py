"""The model contract and the dependency direction: contracts is a leaf; balancing/ and probes/ never import
training/; every method and probe uses a model only through the contract; refusals are one sentence."""

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch

from mmviz.balancing import METHODS
from mmviz.contracts import CAPABILITIES, Hooks, ModelSpec, MultimodalModel
from mmviz.errors import ConfigError
from mmviz.probes import PROBES
from mmviz.training.build import check_run_config, fusion_capabilities, fusions_with
from mmviz.training.config import build_run_config
from models import FUSIONS, MultimodalNet

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def class_assignments(cls: type) -> set[str]:
    """Names assigned in the body of ``cls`` in its source (what the class itself declares)."""
    node = ast.parse(inspect.getsource(cls)).body[0]
    return {t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


def files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_contracts_is_a_leaf():
    mods = imported_modules(ROOT / "mmviz" / "contracts.py")
    assert not {m for m in mods if m == "mmviz" or m.startswith("mmviz.")}


@pytest.mark.parametrize("path", files("mmviz/balancing", "mmviz/probes"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plugins_never_import_training_or_models(path):
    bad = {m for m in imported_modules(path) if m.startswith(("mmviz.training", "models"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", files("models"), ids=lambda p: p.name)
def test_models_import_only_the_contract_of_mmviz(path):
    mods = {m for m in imported_modules(path) if m.startswith("mmviz")}
    assert mods <= {"mmviz.contracts", "mmviz.contracts.ModelOutput", "mmviz.contracts.MultimodalModel"}


PRIVATE = re.compile(r"\bmodel(\.\w+)?\.(fusion|fusion_name|encoders|heads|dims|out_dim|head)\b")


@pytest.mark.parametrize("path", files("mmviz/balancing", "mmviz/probes"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plugins_use_no_model_internals(path):
    """No plug-in reads ``model.fusion`` / ``.encoders`` / ``.heads`` / ``.dims`` / ``.out_dim``: only the contract."""
    text = path.read_text()
    hits = [
        line.strip()
        for line in text.splitlines()
        if PRIVATE.search(line) and not line.strip().startswith(("#", '"', "``"))
    ]
    assert not hits, hits


def test_every_plugin_shares_the_hook_surface_and_declares_its_name_once():
    for registry in (METHODS, PROBES):
        for entry in registry:
            cls = entry.factory
            assert issubclass(cls, Hooks)
            assert cls.name == entry.name
            assert not class_assignments(cls) & {"name", "per_step", "per_epoch", "cadence"}, entry.name
            assert set(cls.requires) <= set(CAPABILITIES) | {"two_modalities", "equal_feature_dims"}
    for entry in PROBES:
        assert entry.factory.cadence == entry.flags["cadence"]


def test_multimodal_net_implements_the_contract_with_its_fusions_capabilities():
    for fusion in ("concat", "sum", "shared_head", "film", "gated"):
        net = MultimodalNet([("a", "vector", (5,)), ("b", "vector", (5,))], 3, feature_dim=4, fusion=fusion)
        assert isinstance(net, MultimodalModel)
        assert net.capabilities == fusion_capabilities(fusion)
        assert ("unimodal_logits" in net.capabilities) == FUSIONS[fusion][0].has_unimodal
        batch = {"a": torch.randn(2, 5), "b": torch.randn(2, 5)}
        out = net(batch)
        assert torch.allclose(net.fuse(net.encode(batch)).logits, out.logits)
        masked = net.masked_forward(batch, ["b"])
        assert torch.allclose(masked.logits, net({"a": batch["a"], "b": torch.zeros(2, 5)}).logits)
        if "head_split" in net.capabilities:
            feats = net.encode(batch)
            assert net.head_weight("a").shape == (3, 4)
            if fusion != "shared_head":  # the shared head has one bias; the split ones add theirs per modality
                parts = sum(feats[m] @ net.head_weight(m).t() for m in ("a", "b"))
                bias = out.logits - parts
                assert torch.allclose(bias, bias[:1].expand_as(bias), atol=1e-5)


def test_a_method_missing_a_capability_is_refused_with_one_sentence_naming_it():
    with pytest.raises(ConfigError) as exc:
        check_run_config(build_run_config("synthetic", "mla", ["model.fusion=concat"]))
    msg = str(exc.value)
    assert msg.startswith("Method 'mla' needs one linear head applied to every modality's features")
    assert "fusion 'concat' does not offer it" in msg and "'shared_head'" in msg
    with pytest.raises(ConfigError) as exc:
        check_run_config(build_run_config("synthetic", "ogm_ge", ["model.fusion=film"]))
    assert str(exc.value) == (
        "Method 'ogm_ge' needs per-modality logits, but fusion 'film' does not offer it. "
        "Use 'concat' or 'sum' or 'shared_head' (model.fusion)."
    )


def test_a_user_model_spec_names_the_model_in_the_refusal():
    spec = ModelSpec(("a", "b"), frozenset({"fuse"}), {"a": 4, "b": 4}, "model 'AVNet'")
    with pytest.raises(ConfigError, match=r"^Method 'mla' needs one linear head .* but model 'AVNet' does not offer"):
        METHODS.get("mla").factory.check_compatible(METHODS.get("mla").config_cls(), spec)


def test_fusions_with_lists_the_fusions_a_method_can_run_on():
    assert fusions_with({"shared_head"}) == ["shared_head"]
    assert fusions_with(frozenset()) == list(FUSIONS)
    assert fusions_with({"unimodal_logits", "two_modalities"}) == ["concat", "sum", "shared_head"]


def test_the_torch_free_kmeans_default_is_the_measures_one():
    from mmviz.measures import KMEANS_N_INIT
    from mmviz.probes.configs import KMEANS_N_INIT as DECLARED

    assert DECLARED == KMEANS_N_INIT


def test_the_torch_free_catalog_knows_the_contracts_model_capabilities():
    from models.catalog import _MODEL_CAPABILITIES

    assert _MODEL_CAPABILITIES == set(CAPABILITIES)  # fusions_with tells model capabilities from run needs by it
