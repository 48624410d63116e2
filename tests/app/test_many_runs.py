"""A workspace with more runs than one page of the runs table: paging shows every run once, the table's summary
columns are the store's, and every run selector offers every run (timings: bench/runs_page.py)."""

from __future__ import annotations

import os

import pytest

from mmviz.store import open_store
from mmviz.sweep import SWEEP_TAG, sweep_tag
from mmviz.ui.runs import PAGE_KEY, PAGE_SIZE

N_RUNS = 2 * PAGE_SIZE + 7  # three pages, the last one short


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory) -> dict:
    """``N_RUNS`` finished runs (in two sweeps) with an imbalance index each, written straight to the store."""
    ws = tmp_path_factory.mktemp("many-runs")
    ids, index = [], {}
    with open_store(ws) as store:
        for i in range(N_RUNS):
            rid = store.create_run(
                config={"dataset": "synthetic", "method": "baseline", "train": {"epochs": 4}},
                name=f"run-{i:03d}",
                dataset="synthetic",
                method="baseline",
                fusion="concat",
                modalities=["a", "b"],
                tags=[SWEEP_TAG, sweep_tag(f"20260101-000000-000{i % 2}")],
            )
            store.set_status(rid, "running", pid=os.getpid())
            index[rid] = round(i / 1000, 3)
            store.log_batch(rid, [(s, s, 0.0, "imbalance/index", 0.9) for s in range(3)]
                            + [(3, 3, 0.0, "imbalance/index", index[rid])],  # the latest: what the table shows
                            heartbeat={"epochs_done": 4})  # fmt: skip
            store.set_status(rid, "finished")
            ids.append(rid)
    return {"workspace": ws, "ids": ids[::-1], "index": index}  # newest first


def test_the_runs_table_pages_through_every_run_once(many_runs, open_page):
    at = open_page(many_runs["workspace"], "runs")
    assert at.number_input(key=PAGE_KEY).max == 3
    seen = []
    for page in (1, 2, 3):
        at.number_input(key=PAGE_KEY).set_value(page).run()
        assert not at.exception, at.exception
        table = at.dataframe[0].value
        assert len(table) == (PAGE_SIZE if page < 3 else N_RUNS - 2 * PAGE_SIZE)
        for rid, shown, epochs in zip(table["run id"], table["imbalance index"], table["epochs"], strict=True):
            assert shown == f"{many_runs['index'][rid]:.2f}" and epochs == "4/4"
        seen += list(table["run id"])
    assert seen == many_runs["ids"]  # every run once, newest first
    at.text_input(key="runs.filter").set_value("run-10").run()  # run-100 ... run-106: one page, no page box
    assert sorted(at.dataframe[0].value["name"]) == [f"run-{i}" for i in range(100, N_RUNS)]
    assert PAGE_KEY not in [n.key for n in at.number_input]


def test_every_run_selector_offers_every_run(many_runs, open_page):
    ids = many_runs["ids"]

    def offered(labels) -> list[str]:  # every selector's label ends with the run id
        return [label.rsplit(" · ", 1)[-1] for label in labels]

    at = open_page(many_runs["workspace"], "runs")
    assert offered(at.selectbox(key="runs.selected").options) == ids
    at = open_page(many_runs["workspace"], "live")
    assert offered(at.selectbox(key="live.run").options) == ids
    at = open_page(many_runs["workspace"], "compare")
    assert sorted(offered(at.multiselect(key="compare.runs").options)) == sorted(ids)
    at = open_page(many_runs["workspace"], "embeddings")
    assert offered(at.selectbox(key="emb.run").options) == ids
    at = open_page(many_runs["workspace"], "sweeps")
    assert len(at.selectbox(key="sweeps.selected").options) == 2
    assert at.dataframe[0].value["run id"].nunique() == N_RUNS // 2  # the newest sweep's trials (odd runs)
