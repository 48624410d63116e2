"""AppTest of the Sweeps page and the "sweep from this run" form."""

from __future__ import annotations

from mmviz.store import open_store


def test_sweeps_page_shows_settings_results_and_seed_groups(sweep_workspace, open_page):
    at = open_page(sweep_workspace["workspace"], "sweeps")
    assert not at.error, [e.value for e in at.error]
    assert "lr-sweep · 8 trials" in at.selectbox(key="sweeps.selected").format_func(sweep_workspace["sweep"])
    table = at.dataframe[0].value
    assert len(table) == 8 and set(table["status"]) == {"finished"}
    assert {"method", "optim.lr", "train.seed"} <= set(table.columns)
    assert table["fused acc @best"].between(0, 1).all() and table["imbalance @last"].notna().all()
    grouped = at.dataframe[1].value
    assert len(grouped) == 4 and set(grouped["n"]) == {2}
    assert grouped["fused acc @best"].str.contains("±").all()
    assert len(at.get("plotly_chart")) == 1


def test_sweep_form_refuses_bad_values_and_queues_valid_trials(scratch_workspace, open_page):
    ws = scratch_workspace["workspace"]
    at = open_page(ws, "runs")
    parent = scratch_workspace["parent"]
    at.selectbox(key="runs.selected").set_value(parent).run()
    at.text_area(key=f"sweep.{parent}.sets").set_value("optim.lr=0.01,-1")
    button = [b for b in at.get("form_submit_button") if b.label == "Start sweep"][0]
    button.click().run()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("'lr'" in e and "nothing was started" in e for e in errors), errors
    with open_store(ws) as store:
        assert len(store.list_runs()) == 2
    at.text_area(key=f"sweep.{parent}.sets").set_value("optim.lr=0.01,0.02\ntrain.epochs=1")
    at.text_input(key=f"sweep.{parent}.seeds").set_value("0")
    at.number_input(key=f"sweep.{parent}.limit").set_value(1)
    [b for b in at.get("form_submit_button") if b.label == "Start sweep"][0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("Queued sweep" in s.value and "2 trials" in s.value for s in at.success)
    with open_store(ws) as store:
        runs = store.list_runs()
        trials = runs[runs["tags"].map(lambda t: any(x.startswith("sweep:") for x in t))]
        assert len(trials) == 2 and {r["train"]["epochs"] for r in trials["config"]} == {1}
        assert sorted(c["optim"]["lr"] for c in trials["config"]) == [0.01, 0.02]
        assert store.get_setting("max_parallel") == 1
