"""The runs page's forms and selectors (issues 11 and 12): user text shown literally, shell-quoted commands, forks
that train and are named after their method and epoch, only compatible fusions, restarts that keep their origin,
filters that hide teaching runs, notes."""

from __future__ import annotations

import re
import shlex
import time

import pandas as pd
import pytest

from mmviz.store import open_store
from mmviz.ui.labels import chart_names, md, plain

EVIL = "![p](http://127.0.0.1:9/n.png) [y](javascript:alert(1)) **b** :red[c] :smile: $x^2$ <b>h</b> &amp; `c`"


def _button(at, label: str):
    found = [b for b in [*at.button, *at.get("form_submit_button")] if b.label == label]
    assert found, f"no button {label!r}; have {[b.label for b in at.button]}"
    return found[0]


def _new_runs(workspace, before: set[str]) -> list[dict]:
    with open_store(workspace) as store:
        return [r for r in store.list_runs().to_dict("records") if r["run_id"] not in before]


# ------------------------------------------------------------------------------------------------ escaping
def test_md_leaves_no_markdown_construct_and_reads_back_literally():
    escaped = md(EVIL + "\nsecond line")
    for construct in ("![", "](", "**", ":red[", ":smile:", "<b>", "&amp;", "`c`"):
        assert construct not in escaped, construct
    unescaped = re.sub(r"\\.", "", escaped)  # drop every backslash escape: no punctuation may be left bare
    assert not re.search(r"[!-/:-@\[-`{-~]", unescaped), unescaped
    assert plain(escaped) == EVIL + " second line"  # line breaks become spaces, nothing else changes
    assert md("plain words 123") == "plain words 123"


def test_a_crafted_name_is_shown_literally_in_the_delete_label_and_errors(scratch_workspace, open_page):
    ws, child = scratch_workspace["workspace"], scratch_workspace["child"]
    with open_store(ws) as store:
        store.update_run(child, name=EVIL, error=f"Data file {EVIL!r} is damaged.")
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(child).run()
    label = at.checkbox(key=f"manage.{child}.sure").label
    assert label == f"Yes, delete {md(EVIL)} and its files" and plain(label) == f"Yes, delete {EVIL} and its files"
    assert [plain(e.value) for e in at.error] == [f"Run finished: Data file {EVIL!r} is damaged."]
    assert all("](" not in e.value for e in at.error)


def test_equivalent_command_is_shell_quoted(scratch_workspace, open_page):
    from mmviz.ui.forms import cli_command

    path = "/data/my file.npz; touch /tmp/x"
    command = cli_command("arrays", "baseline", {"data": {"path": path}}, name="my run", tags=("a b",))
    argv = shlex.split(command)
    assert argv[argv.index("--set") + 1] == f"data.path={path}"  # one argument, the ';' inside it
    assert argv[argv.index("--name") + 1] == "my run" and argv[argv.index("--tag") + 1] == "a b"

    at = open_page(scratch_workspace["workspace"], "runs")
    at.selectbox(key="launch.dataset").select("arrays").run()
    at.text_input(key="launch.data.arrays.path").set_value(path)
    _button(at, "Launch run").click().run()
    shown = at.get("code")[0].proto.code_text
    assert f"'data.path={path}'" in shown and shlex.split(shown)[:4] == ["python", "-m", "mmviz", "train"]
    assert at.error  # the file does not exist: refused in one sentence after the command is shown


# ------------------------------------------------------------------------------------------------ forks
def test_fork_name_follows_method_and_epoch_until_the_user_types_one(scratch_workspace, open_page):
    ws, parent = scratch_workspace["workspace"], scratch_workspace["parent"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(parent).run()
    name = f"fork.{parent}.name"
    assert at.text_input(key=name).value == "parent-run-baseline-e3"
    at.selectbox(key=f"fork.{parent}.method").select("ogm_ge").run()
    assert at.text_input(key=name).value == "parent-run-ogm_ge-e3"
    at.selectbox(key=f"fork.{parent}.epoch").select(1).run()
    assert at.text_input(key=name).value == "parent-run-ogm_ge-e1"
    at.text_input(key=name).set_value("mine").run()
    at.selectbox(key=f"fork.{parent}.method").select("amd").run()
    assert at.text_input(key=name).value == "mine"


def test_a_fork_with_the_defaults_trains(scratch_workspace, open_page):
    """The default checkpoint is the parent's last epoch (3 of 3): the fork must still train (3 + 10 epochs)."""
    ws, parent = scratch_workspace["workspace"], scratch_workspace["parent"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(parent).run()
    assert at.selectbox(key=f"fork.{parent}.epoch").value == 3
    assert at.number_input(key=f"fork.{parent}.further.3").value == 10
    assert not any(n.key == f"fork.{parent}.train.epochs" for n in at.number_input)  # no ambiguous 'epochs'
    assert any("trains epochs 4–13 (10 more; 13 in total)" in c.value for c in at.caption)
    _button(at, "Fork").click().run()
    assert not at.error, [e.value for e in at.error]
    (child,) = _new_runs(ws, {parent, scratch_workspace["child"]})
    assert int(child["fork_epoch"]) == 3 and child["config"]["train"]["epochs"] == 13


def test_a_fork_with_nothing_to_train_is_refused_in_one_sentence():
    from mmviz.errors import ConfigError
    from mmviz.ui.launch import check_fork_trains, default_further_epochs

    with pytest.raises(ConfigError, match=r"^A fork from epoch 30 with 'epochs' 30 in total has nothing to train; "):
        check_fork_trains(30, 30)
    check_fork_trains(30, 31)
    assert default_further_epochs(30, 30) == 10 and default_further_epochs(30, 12) == 18


def test_unmeasured_accuracies_show_as_missing_never_minus_100_percent():
    from mmviz.ui.compare import summary_table
    from mmviz.ui.runs import build_runs_table

    run = {"run_id": "r-1", "name": "n", "status": "finished", "best_val_acc": -1.0, "config": {}, "tags": []}
    assert build_runs_table(pd.DataFrame([run]))["best val acc"].iloc[0] is None
    frame = pd.DataFrame(
        {"run_id": ["r-1"], "key": ["val/acc/fused"], "value": [-1.0], "epoch": [0.0], "step": [0], "id": [1]}
    )
    table = summary_table([{**run, "modalities": []}], frame)
    assert pd.isna(table["val acc fused"].iloc[0])


def test_chart_names_are_unique_and_name_the_method():
    runs = [
        {"run_id": "20261201-000000-aaaa", "name": "p-e30", "method": "ogm_ge"},
        {"run_id": "20261201-000001-bbbb", "name": "p-e30", "method": "ogm_ge"},
        {"run_id": "20261201-000002-cccc", "name": "p-e30", "method": "amd"},
    ]
    names = chart_names(runs)
    assert len(set(names.values())) == 3
    assert names["20261201-000002-cccc"] == "p-e30 (amd) · cccc"
    assert names["20261201-000000-aaaa"] == "p-e30 (ogm_ge) · aaaa"
    assert chart_names([runs[0], {**runs[2], "name": "other"}])["20261201-000002-cccc"] == "other (amd)"


def test_compare_legend_tells_apart_runs_that_share_a_name(scratch_workspace, open_page):
    import json

    ws, parent, child = scratch_workspace["workspace"], scratch_workspace["parent"], scratch_workspace["child"]
    with open_store(ws) as store:
        store.update_run(child, name="parent-run")
    at = open_page(ws, "compare")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    legend = {t["name"] for t in fig["data"] if t.get("showlegend", True) and t.get("name")}
    assert legend == {f"parent-run (baseline) · {parent[-4:]}", f"parent-run (ogm_ge) · {child[-4:]}"}


# ------------------------------------------------------------------------------------------------ fusions
def test_fusion_choices_follow_the_method(scratch_workspace, open_page):
    from mmviz.ui.launch import fusions_for

    assert fusions_for("mla") == ["shared_head"] and "film" not in fusions_for("ogm_ge")
    assert "film" in fusions_for("baseline")
    ws = scratch_workspace["workspace"]
    at = open_page(ws, "runs")
    at.selectbox(key="launch.dataset").select("synthetic").run()
    at.selectbox(key="launch.method").select("mla").run()
    (fusion,) = [s for s in at.selectbox if s.key and s.key.startswith("launch.model.fusion")]
    assert fusion.options == ["shared_head"] and fusion.value == "shared_head"
    assert any("switched to 'shared_head'" in plain(i.value) for i in at.info)
    at.number_input(key="launch.data.synthetic.n_train").set_value(300)
    at.number_input(key="launch.train.epochs").set_value(1)
    _button(at, "Launch run").click().run()
    assert not at.error, [e.value for e in at.error]
    (run,) = _new_runs(ws, {scratch_workspace["parent"], scratch_workspace["child"]})
    assert run["method"] == "mla" and run["fusion"] == "shared_head"


def test_a_fork_offers_only_methods_that_fit_the_parents_fusion():
    from mmviz.ui.launch import methods_for

    assert "mla" not in methods_for("concat") and "mla" in methods_for("shared_head")
    assert "ogm_ge" not in methods_for("film")


# ------------------------------------------------------------------------------------------------ restart
def test_restart_records_its_origin_and_joins_the_family(scratch_workspace, open_page):
    from mmviz.analysis.summary import run_family
    from mmviz.ui.compare import lineage
    from mmviz.ui.runs import build_runs_table

    ws, parent = scratch_workspace["workspace"], scratch_workspace["parent"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(parent).run()
    _button(at, "Restart with these settings").click().run()
    assert not at.error, [e.value for e in at.error]
    (new,) = _new_runs(ws, {parent, scratch_workspace["child"]})
    assert new["restart_of"] == parent
    links = [p.label for p in at.get("page_link")]
    assert "Compare it with the original" in links
    with open_store(ws) as store:
        runs = store.list_runs()
    assert new["run_id"] in run_family(lineage(runs), parent)
    assert "restart of parent-run" in set(build_runs_table(runs)["parent"])


# ------------------------------------------------------------------------------------------------ selectors
def test_teaching_runs_are_hidden_from_every_selector_until_asked(scratch_workspace, open_page):
    from mmviz.ui.run_select import filter_runs

    ws, parent, child = scratch_workspace["workspace"], scratch_workspace["parent"], scratch_workspace["child"]
    with open_store(ws) as store:
        store.update_run(child, tags=["teach", "teach:abc"])
        runs = store.list_runs()
    assert list(filter_runs(runs)["run_id"]) == [parent]
    assert set(filter_runs(runs, teaching=True)["run_id"]) == {parent, child}
    assert list(filter_runs(runs, "OGM", teaching=True)["run_id"]) == [child]  # by method, any case
    assert list(filter_runs(runs, "parent baseline")["run_id"]) == [parent]  # every word must match

    at = open_page(ws, "runs")
    assert at.selectbox(key="runs.selected").options == [parent_label(runs, parent)]
    at.toggle(key="runs.teaching").set_value(True).run()
    assert len(at.selectbox(key="runs.selected").options) == 2
    live = open_page(ws, "live")
    assert live.selectbox(key="live.run").value == parent and len(live.selectbox(key="live.run").options) == 1
    emb = open_page(ws, "embeddings")
    assert len(emb.selectbox(key="emb.run").options) == 1
    compare = open_page(ws, "compare")
    assert [o for o in compare.multiselect(key="compare.runs").options] == [parent_label(runs, parent)]


def parent_label(runs, run_id: str) -> str:
    from mmviz.ui.labels import run_method_label

    return run_method_label(runs.set_index("run_id").loc[run_id].to_dict() | {"run_id": run_id})


def test_the_filter_narrows_the_selector_by_name(scratch_workspace, open_page):
    ws, child = scratch_workspace["workspace"], scratch_workspace["child"]
    at = open_page(ws, "runs")
    at.text_input(key="runs.filter").set_value("child").run()
    assert at.selectbox(key="runs.selected").value == child and len(at.selectbox(key="runs.selected").options) == 1


# ------------------------------------------------------------------------------------------------ notes
def test_notes_are_saved_shown_and_compared(scratch_workspace, open_page):
    ws, child = scratch_workspace["workspace"], scratch_workspace["child"]
    at = open_page(ws, "runs")
    at.selectbox(key="runs.selected").select(child).run()
    at.text_area(key=f"manage.{child}.notes").set_value("OGM-GE from epoch 2: does audio catch up?")
    _button(at, "Save notes").click().run()
    assert open_store(ws).get_run(child)["notes"] == "OGM-GE from epoch 2: does audio catch up?"
    assert "OGM-GE from epoch 2: does audio catch up?" in set(at.dataframe[0].value["notes"])
    compare = open_page(ws, "compare")
    assert any("does audio catch up?" in plain(c.value) for c in compare.caption)
    summary = [d.value for d in compare.dataframe if "notes" in d.value]
    assert summary and "OGM-GE from epoch 2: does audio catch up?" in set(summary[0]["notes"])


def test_a_database_without_the_new_columns_still_opens(tmp_path):
    import sqlite3

    from mmviz.store.schema import DDL

    old_ddl = DDL[1].replace(", notes TEXT, restart_of TEXT", "")
    assert "notes" not in old_ddl
    conn = sqlite3.connect(tmp_path / "mmviz.db")
    conn.execute(DDL[0])
    conn.execute(old_ddl)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("app", "mmviz"), ("schema_version", "1")])
    conn.execute("INSERT INTO runs (run_id, name, created, status, tags) VALUES ('20250101-000000-abcd', 'old', 1, "
                 "'finished', '[]')")  # fmt: skip
    conn.commit()
    conn.close()
    store = open_store(tmp_path)
    (old,) = store.list_runs().to_dict("records")
    assert old["name"] == "old" and old["notes"] is None and old["restart_of"] is None
    store.set_notes(old["run_id"], "  kept  ")
    assert store.get_run(old["run_id"])["notes"] == "kept"


# ------------------------------------------------------------------------------------------------ frame
def test_the_workspace_error_names_the_sidebar_field(tmp_path, open_page):
    (tmp_path / "a-file").write_text("not a folder")
    at = open_page(tmp_path / "a-file" / "ws", "runs")  # cannot be created, even by root
    (error,) = at.error
    assert "sidebar's 'Workspace' field" in plain(error.value) and "--workspace" not in plain(error.value)


def test_dashboard_runs_are_reaped_when_they_end(tmp_path):
    from mmviz import launcher

    with open_store(tmp_path) as store:
        run_id = launcher.launch(store, "synthetic", "baseline", ["data.n_train=100", "train.epochs=1"])
        pid = store.get_run(run_id)["pid"]
        deadline = time.monotonic() + 120
        while store.get_run(run_id)["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.get_run(run_id)["status"] == "finished"
        zombie = True
        while time.monotonic() < deadline:  # nothing calls launcher.reap() here: the waiter must collect it
            try:
                zombie = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                zombie = False
            if not zombie:
                break
            time.sleep(0.1)
        assert not zombie, f"trainer {pid} stayed <defunct>"


# ------------------------------------------------------------------------------------------------ references
def test_reference_runs_show_progress_and_cannot_start_twice(scratch_workspace, open_page):
    from mmviz.ui.references import launch_missing_references

    ws, parent = scratch_workspace["workspace"], scratch_workspace["parent"]
    at = open_page(ws, "live", run=parent)
    (button,) = [b for b in at.button if b.label.startswith("Launch unimodal reference runs")]
    button.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    refs = _new_runs(ws, {parent, scratch_workspace["child"]})
    assert sorted(r["config"]["method_params"]["modality"] for r in refs) == ["a", "b"]
    assert all(r["method"] == "unimodal" and "reference" in r["tags"] for r in refs)
    # the button gives way to one progress bar per reference run, so it cannot be clicked again
    assert not [b for b in at.button if b.label.startswith("Launch unimodal reference runs")]
    texts = [plain(p.proto.text) for p in at.get("progress")]
    assert sorted(t.split(" (")[1].split(")")[0] for t in texts if t.startswith("Reference run")) == [
        "a alone",
        "b alone",
    ]
    with open_store(ws) as store:  # a second click elsewhere (another tab) starts nothing either
        assert launch_missing_references(store, store.get_run(parent)) == []
    assert len(_new_runs(ws, {parent, scratch_workspace["child"]})) == 2


def test_fields_that_do_not_apply_are_hidden(scratch_workspace, open_page):
    from mmviz.training.config import OptimConfig

    specs = {s.name: s for s in OptimConfig.field_specs()}
    assert not specs["momentum"].applies({"name": "adam"}) and specs["momentum"].applies({"name": "sgd"})
    at = open_page(scratch_workspace["workspace"], "runs")
    keys = lambda: {n.key for n in at.number_input}  # noqa: E731
    assert "launch.optim.lr" in keys() and "launch.optim.momentum" not in keys()  # Adam by default
    assert not {"launch.optim.step_size", "launch.optim.gamma"} & keys()  # schedule 'none'
    at.selectbox(key="launch.optim.name").select("sgd").run()
    at.selectbox(key="launch.optim.schedule").select("step").run()
    assert {"launch.optim.momentum", "launch.optim.step_size", "launch.optim.gamma"} <= keys()
    at.number_input(key="launch.optim.momentum").set_value(0.5).run()
    at.selectbox(key="launch.optim.name").select("adam").run()
    assert "launch.optim.momentum" not in keys()


def test_the_form_estimates_how_long_a_run_takes():
    from mmviz.ui.launch import estimate_epoch_seconds, estimate_text

    runs = pd.DataFrame(
        [
            {"run_id": "1", "dataset": "mfeat", "status": "finished", "epochs_done": 10, "duration": 20.0,
             "encoder": "auto", "parent_run_id": None},
            {"run_id": "2", "dataset": "mfeat", "status": "finished", "epochs_done": 10, "duration": 40.0,
             "encoder": None, "parent_run_id": None},  # a config without model.encoder: the default, auto
            {"run_id": "3", "dataset": "mfeat", "status": "failed", "epochs_done": 1, "duration": 900.0,
             "encoder": None, "parent_run_id": None},
            {"run_id": "4", "dataset": "mfeat", "status": "finished", "epochs_done": 10, "duration": 900.0,
             "encoder": "cnn", "parent_run_id": None},
        ]
    )  # fmt: skip
    assert estimate_epoch_seconds(runs, "mfeat", "auto")[0] == 4.0  # the median of the finished runs
    assert "about 2m 00s for 30 epochs" in estimate_text(runs, "mfeat", {})
    # a new workspace: measured priors, not the 45 s (mfeat's 30 epochs; ~3.5 s, bench/demo_run.py) and 30 min
    # (avdigits; ~2 min) once shown
    assert "about 4s for 30 epochs (~0.12 s per epoch, measured on 2 CPU cores" in estimate_text(runs[:0], "mfeat", {})
    assert "about 2m 12s for 30 epochs" in estimate_text(runs[:0], "avdigits", {})
    slow = runs.assign(duration=[1234.0, 1234.0, 900.0, 900.0])  # ResNet-sized epochs: 123.4 s each
    assert "about 1h 01m for 30 epochs (~2m 03s per epoch, median of 2 finished" in estimate_text(slow, "mfeat", {})
    assert "no finished synthetic run" in estimate_text(runs, "synthetic", {})


def test_one_way_to_select_a_run(filled_workspace, open_page):
    at = open_page(filled_workspace["workspace"], "runs")
    assert not at.dataframe[0].proto.selection_mode  # the table shows; the "Selected run" box selects
    at.selectbox(key="runs.selected").select(filled_workspace["parent"]).run()
    assert at.text_input(key=f"fork.{filled_workspace['parent']}.name").value.startswith("parent-run")


def test_amd_target_and_drop_are_modality_pickers(scratch_workspace, open_page):
    ws = scratch_workspace["workspace"]
    at = open_page(ws, "runs")
    at.selectbox(key="launch.dataset").select("synthetic").run()
    at.selectbox(key="launch.method").select("amd").run()
    target = next(s for s in at.selectbox if s.key and s.key.startswith("launch.method.amd.target"))
    drop = next(m for m in at.multiselect if m.key and m.key.startswith("launch.method.amd.drop"))
    assert target.options == ["'' (see help)", "a", "b"] and drop.options == ["a", "b"]
    target.select("a").run()
    drop = next(m for m in at.multiselect if m.key and m.key.startswith("launch.method.amd.drop"))
    drop.select("b").run()
    at.number_input(key="launch.data.synthetic.n_train").set_value(300)
    at.number_input(key="launch.train.epochs").set_value(1)
    _button(at, "Launch run").click().run()
    assert not at.error, [e.value for e in at.error]
    (run,) = _new_runs(ws, {scratch_workspace["parent"], scratch_workspace["child"]})
    assert run["config"]["method_params"]["target"] == "a" and run["config"]["method_params"]["drop"] == ["b"]
