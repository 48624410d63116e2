"""Paper recipes: one setting resolves each method's official-code recipe; explicit settings win; stored resolved."""

import subprocess
import sys
from pathlib import Path

import pytest

from mmviz.balancing import METHODS
from mmviz.errors import ConfigError
from mmviz.recipes import describe_recipe, recipe_summary
from mmviz.training.config import build_run_config

ROOT = Path(__file__).resolve().parent.parent

# Hand-copied from the official repositories (see each method's docstring for file and line); 1-based windows.
SGD_STEP70 = {"name": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step", "step_size": 70, "gamma": 0.1}
EXPECTED = {
    "ogm_ge": (
        {**SGD_STEP70, "lr": 1e-3},
        {"epochs": 100, "batch_size": 64},
        {"alpha": 0.8, "modulation_starts": 1, "modulation_ends": 51},
    ),
    "pmr": (
        {**SGD_STEP70, "lr": 1e-3},
        {"epochs": 150, "batch_size": 64},
        {"alpha": 3.0, "momentum_coef": 0.0, "modulation_starts": 1, "modulation_ends": 101},
    ),
    "agm": (
        {**SGD_STEP70, "lr": 1e-4},
        {"epochs": 100, "batch_size": 64},
        {"alpha": 1.5, "grad_clip": "conditional"},
    ),
    "mla": ({**SGD_STEP70, "lr": 1e-3}, {"epochs": 100, "batch_size": 64}, {}),
    "relearn": (
        {"name": "sgd", "lr": 2e-3, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "none"},
        {"epochs": 90, "batch_size": 64},
        {"lam": 3.0, "reinit_every": 20, "reinit_num": 3, "reinit_timing": "official"},
    ),
    "cggm": (
        {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "none"},
        {"epochs": 30, "batch_size": 64},
        {
            "rho": 1.3,
            "lam": 0.2,
            "aux_lr": 5e-4,
            "clip_norm": 0.8,
            "smoothing": 0.0,
            "b_clip": "none",
            "direction": "code",
        },
    ),
    "amd": (
        {"name": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "none"},
        {"epochs": 40, "batch_size": 30},
        {},
    ),
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_paper_recipe_values(method):
    optim, train, params = EXPECTED[method]
    cfg = build_run_config("mfeat", method, ["method.recipe=paper"])
    assert {k: getattr(cfg.optim, k) for k in optim} == optim
    assert {k: getattr(cfg.train, k) for k in train} == train
    assert {k: getattr(cfg.method_params, k) for k in params} == params
    if method == "mla":
        assert cfg.model.fusion == "shared_head"
    quick = build_run_config("mfeat", method, [])
    assert quick.method_params.recipe == "quick" and quick.optim.name == "adam" and quick.train.epochs == 30
    doc = METHODS.get(method).factory.__doc__
    assert "recipe=quick" in doc and "recipe=paper" in doc  # the docstring says which is default and why


def test_every_method_with_a_published_recipe_has_the_setting():
    with_recipe = {e.name for e in METHODS if getattr(e.factory, "paper_recipe", None) is not None}
    assert with_recipe == set(EXPECTED)
    for name in with_recipe:
        assert "recipe" in {s.name for s in METHODS.get(name).config_cls.field_specs()}


def test_explicit_settings_win_and_the_stored_config_is_the_resolved_one():
    cfg = build_run_config("mfeat", "ogm_ge", ["method.recipe=paper", "optim.lr=0.05", "method.alpha=0.3"], epochs=3)
    assert (cfg.optim.name, cfg.optim.lr, cfg.train.epochs, cfg.method_params.alpha) == ("sgd", 0.05, 3, 0.3)
    stored = cfg.to_dict()
    assert stored["optim"]["weight_decay"] == 1e-4 and stored["method_params"]["modulation_ends"] == 51
    # a fork with the same recipe keeps the stored values, including the explicit ones
    fork = build_run_config(base=stored, sets=["method.ge=false"])
    assert (fork.optim.lr, fork.train.epochs, fork.method_params.alpha) == (0.05, 3, 0.3)
    # switching back to quick restores the defaults of the recipe's fields
    back = build_run_config(base=stored, sets=["method.recipe=quick"])
    assert (back.optim.name, back.optim.lr, back.train.epochs, back.method_params.modulation_ends) == (
        "adam",
        1e-3,
        30,
        100000,
    )


def test_a_fork_into_another_method_inherits_the_parents_optimiser():
    parent = build_run_config("mfeat", "baseline", ["optim.name=sgd", "optim.lr=0.01"]).to_dict()
    child = build_run_config(method="ogm_ge", base=parent)  # quick recipe: nothing is reset
    assert (child.optim.name, child.optim.lr) == ("sgd", 0.01)
    child = build_run_config(method="ogm_ge", base=parent, sets=["method.recipe=paper"])
    assert (child.optim.name, child.optim.lr, child.train.epochs) == ("sgd", 1e-3, 100)


def test_dashboard_overrides_pick_the_recipe_like_the_cli():
    cli = build_run_config("mfeat", "relearn", ["method.recipe=paper"])
    form = build_run_config("mfeat", "relearn", overrides={"method": {"recipe": "paper"}})
    assert cli.to_dict() == form.to_dict()
    assert "optim.lr=0.002" in recipe_summary(METHODS.get("relearn").factory)


def test_bad_recipe_name_is_one_clear_sentence():
    with pytest.raises(ConfigError, match=r"'recipe' parameter .* 'quick', 'paper'\. Got 'papr'"):
        build_run_config("mfeat", "agm", ["method.recipe=papr"])


def test_describe_names_the_recipe_values_and_source():
    cfg = build_run_config("mfeat", "cggm", ["method.recipe=paper"])
    text = describe_recipe(METHODS.get("cggm").factory, cfg.to_dict())
    assert text.startswith("Recipe 'paper' of cggm:") and "method.clip_norm=0.8" in text and "zrguo/CGGM" in text
    assert "ReduceLROnPlateau" in text  # what the recipe cannot reproduce is said
    assert describe_recipe(METHODS.get("baseline").factory, build_run_config("mfeat").to_dict()) == ""


def test_cli_train_prints_and_stores_the_recipe(tmp_path):
    ws = tmp_path / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "mmviz", "train", "--method", "agm", "--set", "method.recipe=paper", "--epochs", "1"]
        + ["--set", "data.views=pix,fou", "--set", "train.threads=1", "--workspace", str(ws)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Recipe 'paper' of agm: optim.name='sgd', optim.lr=0.0001" in proc.stderr
    run_id = proc.stdout.splitlines()[0].strip()
    from mmviz.store import RunStore

    stored = RunStore(ws).get_run(run_id)["config"]
    assert stored["optim"]["name"] == "sgd" and stored["optim"]["lr"] == 1e-4
    assert stored["method_params"]["recipe"] == "paper" and stored["train"]["epochs"] == 1
