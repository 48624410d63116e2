"""Sweep specs: value syntax, grid and random plans, and bad values refused before any trial is created."""

from __future__ import annotations

import pytest

from mmviz.cli import main
from mmviz.errors import ConfigError
from mmviz.store import RunStore
from mmviz.sweep import (
    Range,
    SweepSpec,
    build_trials,
    parse_sets,
    parse_values,
    plan_trials,
    start_sweep,
    sweep_ids_of,
)


def test_values_lists_ranges_and_list_fields():
    assert parse_values("optim.lr", "0.01, 0.1") == ("0.01", "0.1")
    assert parse_values("optim.lr", "1e-3..1e-1:log:3") == Range(1e-3, 1e-1, True, 3)
    assert Range(1e-3, 1e-1, True, 3).grid() == pytest.approx([1e-3, 1e-2, 1e-1])
    assert Range(0.0, 1.0, False, 5).grid() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert parse_values("data.views", "pix,fou;pix,kar", list_field=True) == ("pix,fou", "pix,kar")
    params, fixed = parse_sets(
        ["data.views=pix,fou;pix,kar", "optim.lr=0.05", "train.epochs=1,2"], "mfeat", ["baseline"]
    )
    assert params == (("data.views", ("pix,fou", "pix,kar")), ("train.epochs", ("1", "2")))
    assert fixed == ("optim.lr=0.05",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1..0.01", "must go from low to high"),
        ("0..1:log", "must be above 0"),
        ("1..x", "needs finite numbers"),
        ("0..1:cubic", "Unknown flag 'cubic'"),
        ("0.1,0.1", "lists a value twice"),
        (",", "has no values"),
    ],
)
def test_bad_values_name_the_setting(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_values("optim.lr", text)
    assert "'optim.lr'" in str(info.value)


def test_grid_crosses_methods_settings_and_seeds():
    spec = SweepSpec(methods=("baseline", "ogm_ge", "agm"), params=(("optim.lr", ("0.01", "0.05")),), seeds=(0, 1))
    trials = plan_trials(spec)
    assert len(trials) == 12
    assert len({(t.method, t.values, t.seed) for t in trials}) == 12
    assert {t.seed for t in trials} == {0, 1}


def test_grid_needs_points_for_a_range_and_random_samples_each_seed():
    with pytest.raises(ConfigError, match="needs a number of points for the range of 'optim.lr'"):
        plan_trials(SweepSpec(methods=("baseline",), params=(("optim.lr", Range(0.001, 0.1, True)),)))
    spec = SweepSpec(
        methods=("baseline", "ogm_ge"),
        params=(("optim.lr", Range(0.001, 0.1, True)), ("train.batch_size", Range(16, 64))),
        seeds=(0, 1, 2),
        mode="random",
        samples=4,
    )
    trials = plan_trials(spec)
    assert len(trials) == 12 and trials == plan_trials(spec)  # reproducible
    for t in trials:
        values = dict(t.values)
        assert 0.001 <= float(values["optim.lr"]) <= 0.1
        assert values["train.batch_size"].isdigit() and 16 <= int(values["train.batch_size"]) <= 64  # an int field
    with pytest.raises(ConfigError, match="--random N with N >= 1"):
        plan_trials(SweepSpec(methods=("baseline",), mode="random", samples=0))


def test_an_invalid_trial_is_refused_naming_setting_and_trial():
    spec = SweepSpec(
        methods=("baseline",),
        params=(("optim.lr", ("0.01", "-5")),),
        dataset="synthetic",
        fixed=("data.n_train=240",),
    )
    with pytest.raises(ConfigError, match=r"'lr'.*-5.*sweep trial method=baseline, optim.lr=-5, seed=0"):
        build_trials(spec)


def test_cli_refuses_a_bad_sweep_before_any_trial(tmp_path, capsys):
    ws = tmp_path / "ws"
    common = ["--dataset", "synthetic", "--set", "data.n_train=240", "--epochs", "1"]
    cases = [
        (["--method", "baseline,ogm_ge", "--set", "method.alpha=0.1,0.5"], "alpha"),  # baseline has no alpha
        (["--method", "baseline,ogm-ge"], "Did you mean 'ogm_ge'"),
        (["--method", "baseline", "--set", "optim.lr=0.01..0.1"], "needs a number of points"),
        (["--method", "baseline", "--max-parallel", "0"], "--max-parallel must be a whole number >= 1. Got 0"),
        (["--method", "baseline", "--backend", "local", "--seeds", "0,0"], "distinct seeds"),
    ]
    for args, message in cases:
        code = main(["sweep", "--workspace", str(ws), *common, *args])
        out = capsys.readouterr()
        assert code == 2, (args, out.err)
        assert message in out.err and out.err.count("\n") == 1, out.err
        assert out.out == ""
    with RunStore(ws) as store:
        assert store.list_runs().empty and store.list_queue() == []
        assert store._db.query("SELECT count(*) FROM meta WHERE key LIKE 'setting:%'") == [(0,)]


def test_sweep_ids_of_reads_the_tags():
    assert sweep_ids_of(["sweep", "sweep:20250101-120000-abcd", "demo"]) == ["20250101-120000-abcd"]
    assert sweep_ids_of(None) == []


def test_trials_of_two_unnamed_sweeps_have_different_names(tmp_path):
    """Every unnamed sweep named its trials sweep-001, sweep-002, ...: two of them could not be told apart."""
    spec = SweepSpec(methods=("baseline",), seeds=(0, 1), dataset="synthetic", fixed=("data.n_train=120",), epochs=1)
    with RunStore(tmp_path / "ws") as store:
        first = start_sweep(store, spec, backend=None)
        second = start_sweep(store, spec, backend=None)
        named = start_sweep(store, spec, name="lr", backend=None)
        names = {sweep_id: [store.get_run(r)["name"] for r in runs] for sweep_id, runs in (first, second, named)}
    assert names[named[0]] == ["lr-001", "lr-002"]
    for sweep_id in (first[0], second[0]):
        assert names[sweep_id] == [f"sweep-{sweep_id[-4:]}-001", f"sweep-{sweep_id[-4:]}-002"]
    assert not set(names[first[0]]) & set(names[second[0]])
