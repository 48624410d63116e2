"""AppTest of the runs page against a store filled by real runs: table, launch form, stop / fork / tag / delete."""

from __future__ import annotations

import time

import pytest

from mmviz.errors import MmvizError
from mmviz.store import open_store
from mmviz.ui.labels import md


def _button(at, label: str):
    found = [b for b in [*at.button, *at.get("form_submit_button")] if b.label == label]
    assert found, f"no button {label!r}; have {[b.label for b in at.button]}"
    return found[0]


def _new_runs(workspace, before: set[str]) -> list[dict]:
    with open_store(workspace) as store:
        return [r for r in store.list_runs().to_dict("records") if r["run_id"] not in before]


def test_table_lists_runs_with_status_accuracy_and_parent(filled_workspace, open_page):
    at = open_page(filled_workspace["workspace"], "runs")
    table = at.dataframe[0].value
    assert set(table["name"]) == {"parent-run", "child-run"}
    assert set(table["status"]) == {"finished"}
    child = table[table["name"] == "child-run"].iloc[0]
    assert child["parent"] == "parent-run @ epoch 2" and child["method"] == "ogm_ge"
    assert child["epochs"] == "3/3" and 0.0 < child["best val acc"] <= 1.0
    assert table["imbalance index"].notna().all()  # last imbalance/index of each run
    assert at.selectbox(key="launch.dataset").value == "mfeat"
    assert {"Start demo run (mfeat)", "Refresh"} <= {b.label for b in at.button}


def test_launch_form_starts_a_run_with_the_chosen_settings(scratch_workspace, open_page):
    ws = scratch_workspace["workspace"]
    before = {scratch_workspace["parent"], scratch_workspace["child"]}
    at = open_page(ws, "runs")
    at.selectbox(key="launch.dataset").select("synthetic").run()
    at.number_input(key="launch.data.synthetic.n_train").set_value(300)
    at.number_input(key="launch.train.epochs").set_value(2)
    at.text_input(key="launch.name").set_value("from-the-form")
    _button(at, "Launch run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Started run" in s.value for s in at.success)
    (run,) = _new_runs(ws, before)
    assert run["name"] == "from-the-form" and run["dataset"] == "synthetic"
    assert run["config"]["data"]["n_train"] == 300 and run["config"]["train"]["epochs"] == 2
    assert run["pid"] is not None


def test_invalid_combination_is_refused_with_the_cli_sentence(scratch_workspace, open_page):
    from mmviz.training.build import check_run_config
    from mmviz.training.config import build_run_config

    ws = scratch_workspace["workspace"]
    at = open_page(ws, "runs")
    at.selectbox(key="launch.dataset").select("synthetic").run()
    at.selectbox(key="launch.method").select("unimodal").run()
    at.text_input(key="launch.method.unimodal.modality").set_value("zzz")
    _button(at, "Launch run").click().run()
    with pytest.raises(MmvizError) as cli:
        check_run_config(build_run_config("synthetic", "unimodal", ["method.modality=zzz"]))
    assert [e.value for e in at.error] == [md(str(cli.value))]  # the same sentence, shown literally
    assert not _new_runs(ws, {scratch_workspace["parent"], scratch_workspace["child"]})


def test_stop_action_stops_a_running_run(scratch_workspace, open_page):
    from mmviz import launcher

    ws = scratch_workspace["workspace"]
    with open_store(ws) as store:
        rid = launcher.launch(store, "synthetic", "baseline", ["data.n_train=300", "train.epochs=500"], name="long")
        deadline = time.monotonic() + 60
        while store.get_run(rid)["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        at = open_page(ws, "runs")
        at.selectbox(key="runs.selected").select(rid).run()
        _button(at, "Stop run").click().run()
        assert not at.error and store.stop_requested(rid)
        while store.get_run(rid)["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.get_run(rid)["status"] == "stopped"


def test_fork_action_creates_a_child_from_the_chosen_checkpoint(scratch_workspace, open_page):
    ws, parent = scratch_workspace["workspace"], scratch_workspace["parent"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(parent).run()
    at.selectbox(key=f"fork.{parent}.epoch").select(1).run()
    at.selectbox(key=f"fork.{parent}.method").select("ogm_ge").run()
    at.number_input(key=f"fork.{parent}.method.ogm_ge.alpha").set_value(0.3)
    _button(at, "Fork").click().run()
    assert not at.error, [e.value for e in at.error]
    (child,) = _new_runs(ws, {parent, scratch_workspace["child"]})
    assert child["parent_run_id"] == parent and int(child["fork_epoch"]) == 1
    assert child["method"] == "ogm_ge" and child["config"]["method_params"]["alpha"] == 0.3


def test_restart_action_starts_a_new_run_with_edits(scratch_workspace, open_page):
    ws, parent = scratch_workspace["workspace"], scratch_workspace["parent"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(parent).run()
    at.number_input(key=f"restart.{parent}.optim.lr").set_value(0.01)
    _button(at, "Restart with these settings").click().run()
    assert not at.error, [e.value for e in at.error]
    (new,) = _new_runs(ws, {parent, scratch_workspace["child"]})
    assert not isinstance(new["parent_run_id"], str) and new["config"]["optim"]["lr"] == 0.01
    assert new["config"]["data"] == open_store(ws).get_run(parent)["config"]["data"]


def test_tag_and_delete_with_confirmation(scratch_workspace, open_page):
    ws, child = scratch_workspace["workspace"], scratch_workspace["child"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(child).run()
    at.text_input(key=f"manage.{child}.tags").set_value("keep, ogm")
    _button(at, "Save tags").click().run()
    store = open_store(ws)
    assert store.get_run(child)["tags"] == ["keep", "ogm"]
    assert _button(at, "Delete run").disabled  # not before the confirmation box is ticked
    at.checkbox(key=f"manage.{child}.sure").check().run()
    _button(at, "Delete run").click().run()
    assert not at.error and child not in set(store.list_runs()["run_id"])
    assert not (ws / "runs" / child).exists()


def test_unusable_workspace_shows_one_sentence_not_a_traceback(tmp_path, open_page):
    bad = tmp_path / "not-a-store"
    bad.mkdir()
    (bad / "mmviz.db").write_text("hello")
    at = open_page(bad, "runs")
    assert len(at.error) == 1 and "not an SQLite database" in at.error[0].value
