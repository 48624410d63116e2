"""Crafted rows in a workspace's database (run ids like '../../x', artifact paths leaving the run folder)."""

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from mmviz.launcher import prepare_run
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training

ROOT = Path(__file__).resolve().parents[2]
CRAFTED = "../../x"


@pytest.fixture(scope="module")
def crafted_base(tmp_path_factory):
    ws = tmp_path_factory.mktemp("crafted") / "ws"
    with RunStore(ws) as store:
        cfg = build_run_config("synthetic", "baseline", ["data.n_train=240", "train.batch_size=60"], epochs=1)
        good = prepare_run(store, cfg)
        assert run_training(store, good) == "finished"
    with sqlite3.connect(ws / "mmviz.db") as conn:  # the crafted run is the newest, so pages select it by default
        cols = [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
        row = dict(zip(cols, conn.execute("SELECT * FROM runs").fetchone(), strict=True))
        row.update(run_id=CRAFTED, name="crafted", created=row["created"] + 1000)
        conn.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        conn.execute(
            "INSERT INTO metrics (run_id, step, epoch, wall_time, key, value) VALUES (?, 0, 0, 0, 'train/loss', 1)",
            (CRAFTED,),
        )
        conn.execute(
            "INSERT INTO artifacts (run_id, epoch, kind, path, meta) VALUES (?, 1, 'snapshot', '../../../etc/x', '{}')",
            (good,),
        )
    return ws, good


@pytest.fixture
def crafted(crafted_base, tmp_path):
    ws, good = crafted_base
    shutil.copytree(ws, tmp_path / "ws")
    return tmp_path / "ws", good


def test_listings_skip_crafted_rows_with_a_warning(crafted, caplog):
    ws, good = crafted
    with caplog.at_level(logging.WARNING, logger="mmviz.store"), RunStore(ws) as store:
        assert store.list_runs().run_id.tolist() == [good]
        assert "../../etc/x" not in store.load_artifacts(good).path.tolist()
        with pytest.raises(ValueError, match="is invalid"):
            store.delete_run(CRAFTED)  # refused before any row is deleted
        store.delete_run(good)
        assert store.list_runs().empty
    with sqlite3.connect(ws / "mmviz.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (CRAFTED,)).fetchone()[0] == 1
    warned = [r.getMessage() for r in caplog.records]
    assert any("ignoring run id '../../x'" in w for w in warned) and any("artifact path" in w for w in warned)


@pytest.mark.parametrize("page", ["runs", "live", "embeddings", "compare"])
def test_pages_keep_working(crafted, monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    ws, good = crafted
    monkeypatch.setenv("MMVIZ_WORKSPACE", str(ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    if page != "runs":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
