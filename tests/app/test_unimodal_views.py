"""A unimodal run shows "—" (not applicable) for what it cannot have, in the Runs and Compare tables and on Live
(issue 11, defect 10: imbalance index 1.00 in the Runs table, "pix head split 10%" for a fou-only run)."""

from __future__ import annotations

import json
import time

import pandas as pd

from mmviz.analysis.summary import compute_compare_table
from mmviz.store import open_store
from mmviz.ui.labels import NOT_APPLICABLE, applies, format_compare_table

CONFIG = {"method_params": {"modality": "fou"}, "train": {"epochs": 2}}


def unimodal_run(run_id="u", name="fou-alone") -> dict:
    return {"run_id": run_id, "name": name, "method": "unimodal", "modalities": ["pix", "fou"], "config": CONFIG}


def rows(run_id: str, values: dict[str, float]) -> pd.DataFrame:
    from mmviz.store.keys import parse_key

    out = []
    for i, (key, value) in enumerate(values.items()):
        split, quantity, modality = parse_key(key, ["pix", "fou"])
        out.append((run_id, i, 10, 1.0, 0.0, key, split, quantity, modality, value))
    cols = ["run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"]
    return pd.DataFrame(out, columns=cols)


def test_what_a_unimodal_run_cannot_have():
    run = unimodal_run()
    assert not applies(run, "imbalance/index") and not applies(run, "imbalance/share", "fou")
    assert not applies(run, "shapley", "fou") and not applies(run, "acc", "pix")
    assert applies(run, "acc", "fou") and applies(run, "acc", "fused") and applies(run, "loss")
    joint = {**run, "method": "baseline"}
    assert applies(joint, "imbalance/index") and applies(joint, "acc", "pix")


def test_compare_table_shows_a_dash_for_a_unimodal_runs_imbalance_and_untrained_modality():
    joint = {**unimodal_run("j", "joint"), "method": "baseline", "config": {}}
    runs = [joint, unimodal_run()]
    frame = pd.concat(
        [
            rows("j", {"val/acc/fused": 0.9, "val/acc/pix": 0.85, "val/acc/fou": 0.6, "imbalance/index": 0.4}),
            rows("u", {"val/acc/fused": 0.7, "val/acc/pix": 0.1, "val/acc/fou": 0.7, "imbalance/index": 1.0}),
        ]
    )
    shown = format_compare_table(compute_compare_table(runs, frame), runs).set_index("run")
    assert shown.loc["fou-alone", "imbalance index"] == NOT_APPLICABLE
    assert shown.loc["fou-alone", "pix head split"] == NOT_APPLICABLE  # not "10%"
    assert shown.loc["fou-alone", "fou head split"] == "70.0%"
    assert shown.loc["joint", "imbalance index"] == "0.40" and shown.loc["joint", "pix head split"] == "85.0%"


def test_runs_table_shows_a_dash_for_a_unimodal_runs_imbalance_index():
    from mmviz.ui.runs import build_runs_table

    runs = pd.DataFrame(
        [
            {**unimodal_run(), "status": "finished", "imbalance/index": 1.0},
            {**unimodal_run("j", "joint"), "method": "baseline", "imbalance/index": 0.42},
        ]
    )  # as load_run_summaries lists them: the latest imbalance/index of each run in a column
    table = build_runs_table(runs).set_index("name")
    assert table.loc["fou-alone", "imbalance index"] == NOT_APPLICABLE  # not 1.00
    assert table.loc["joint", "imbalance index"] == "0.42"


def test_live_page_of_a_unimodal_run_does_not_chart_what_it_cannot_have(tmp_path, open_page):
    store = open_store(tmp_path)
    rid = store.create_run(
        config=CONFIG, name="fou-alone", dataset="mfeat", method="unimodal", fusion="concat", modalities=["pix", "fou"]
    )
    store.set_status(rid, "running", pid=99999999)
    now = time.time()
    values = {"val/acc/fused": 0.7, "val/acc/fou": 0.7, "val/acc/pix": 0.1, "imbalance/index": 1.0, "train/loss": 1.2}
    store.log_batch(rid, [(10, 1.0, now, key, value) for key, value in values.items()])
    store.set_status(rid, "finished")
    at = open_page(tmp_path, "live", run=rid)
    notes = [c.value for c in at.caption if c.value.startswith(NOT_APPLICABLE)]
    assert len(notes) == 1 and "only fou" in notes[0] and "imbalance/index, val/acc/pix" in notes[0]
    names = {t.get("name") for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]}
    assert "fou" in names and "fused" in names  # the accuracy chart: a facet per measure, a line per modality
    assert not [n for n in names if n and ("pix" in n or "index" in n)], names
    assert not [m for m in at.markdown if "Shapley shares and imbalance index" in m.value]
