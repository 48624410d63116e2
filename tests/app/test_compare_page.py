"""AppTest of the compare page: a parent and its fork preselected, any metric overlaid, the summary table."""

from __future__ import annotations

from mmviz.ui.labels import plain


def test_family_is_preselected_and_summarised(filled_workspace, open_page):
    parent, child = filled_workspace["parent"], filled_workspace["child"]
    at = open_page(filled_workspace["workspace"], "compare")
    assert at.multiselect(key="compare.runs").value == [parent, child]
    assert any("forked from parent-run" in plain(c.value) and "epoch 2" in c.value for c in at.caption)
    assert at.selectbox(key="compare.metric").value == ("val", "acc")
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert list(table["run"]) == ["parent-run", "child-run"]
    assert list(table["method"]) == ["baseline", "ogm_ge"]
    assert table["best epoch"].astype(int).between(1, 3).all()
    shown = table["val acc fused"]  # accuracies are shown as text in %, e.g. "93.3%"
    assert shown.str.endswith("%").all() and shown.str.rstrip("%").astype(float).between(0, 100).all()
    assert "imbalance index" in table.columns


def test_any_metric_and_url_selection(filled_workspace, open_page):
    parent = filled_workspace["parent"]
    at = open_page(filled_workspace["workspace"], "compare", runs=parent)
    assert at.multiselect(key="compare.runs").value == [parent]
    metrics = at.selectbox(key="compare.metric").options
    assert "grad_norm" in metrics and "train/loss" in metrics
    at.selectbox(key="compare.metric").select((None, "grad_norm")).run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    at.toggle(key="compare.log_y").set_value(True).run()
    assert not at.exception
