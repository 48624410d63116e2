"""Every example in examples/ runs end to end on tiny data and leaves a finished run in the workspace."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mmviz.store import open_store
from mmviz.testing import missing_probe_families

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finished(workspace: Path, run_id: str, origin: str = "api") -> dict:
    store = open_store(workspace)
    row = store.get_run(run_id)
    assert (row["status"], row["origin"]) == ("finished", origin)
    assert len(store.load_artifacts(run_id, "snapshot")) >= 1 and "val/acc/fused" in store.metric_keys(run_id)
    return row


def test_cremad_recipe_on_the_demo_stand_in(tmp_path):
    args = [
        "--demo",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--small",
        "--workspace",
        str(tmp_path),
    ]
    row = _finished(tmp_path, _example("cremad_recipe").main(args))
    assert row["dataset"] == "cremad" and row["method"] == "ogm_ge" and row["modalities"] == ["audio", "visual"]
    assert row["config"]["method_params"]["alpha"] == 0.8  # the paper's recipe, from mmviz's record of it


def test_cremad_recipe_needs_a_root_or_demo(capsys):
    with pytest.raises(SystemExit):
        _example("cremad_recipe").main([])
    assert "give --root with your CREMA-D folder, or --demo" in capsys.readouterr().err


def test_lightning_module_example(tmp_path):
    pytest.importorskip("lightning.pytorch", reason="make test installs the optional Lightning extra")
    args = ["--epochs", "2", "--samples", "128", "--workspace", str(tmp_path), "--method", "pmr"]
    row = _finished(tmp_path, _example("lightning_module").main(args), origin="lightning")
    assert row["method"] == "pmr" and row["epochs_done"] == 2


def test_plain_loop_on_an_official_style_model(tmp_path):
    run_id = _example("plain_loop").main(["--epochs", "2", "--samples", "64", "--workspace", str(tmp_path)])
    row = _finished(tmp_path, run_id)
    assert row["method"] == "baseline" and row["modalities"] == ["audio", "visual"] and row["epochs_done"] == 2
    assert row["config"]["model"]["class"] == "ModelAdapter" and row["fusion"] == "fusion_module"
    keys = set(open_store(tmp_path).metric_keys(run_id))
    assert not missing_probe_families(keys), missing_probe_families(keys)
    assert {"val/acc/audio", "val/acc/visual"} <= keys  # per-modality logits from the adapter's split of fc_out


def test_plain_loop_with_ogm_ge_added(tmp_path):
    run_id = _example("plain_loop_balanced").main(["--epochs", "1", "--samples", "64", "--workspace", str(tmp_path)])
    row = _finished(tmp_path, run_id)
    assert row["method"] == "ogm_ge" and row["name"] == "plain-loop-ogm_ge"
    coef = open_store(tmp_path).load_metrics(run_id, ["coef/ogm_ge/audio", "coef/ogm_ge/visual"])
    assert len(coef) > 0 and coef["value"].between(0, 1).all()  # the gradient modulation ran every step
