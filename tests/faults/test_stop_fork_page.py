"""The Runs page offers a stopped run's stop point as a fork point (item 7, dashboard side)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from mmviz.launcher import FORK_POINT_EVENT, STOP_POINT, prepare_run, stop_checkpoint
from mmviz.store import RunStore
from mmviz.training.config import build_run_config
from mmviz.training.runner import run_training

ROOT = Path(__file__).resolve().parents[2]


def test_fork_from_the_stop_point_in_the_dashboard(tmp_path, monkeypatch, kill_runs):
    ws = tmp_path / "ws"
    with RunStore(ws) as store:
        cfg = build_run_config("synthetic", "baseline", ["data.n_train=240", "train.batch_size=60"], epochs=5)
        parent = prepare_run(store, cfg)
        store.request_stop(parent)
        assert run_training(store, parent) == "stopped"
        epoch, step = stop_checkpoint(store, parent)
    monkeypatch.setenv("MMVIZ_WORKSPACE", str(ws))
    try:
        _fork_in_the_page(ws, parent, epoch, step)
    finally:
        kill_runs(ws)  # the child's trainer process


def _fork_in_the_page(ws: Path, parent: str, epoch: int, step: int) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.selectbox(key="runs.selected").select(parent).run()
    picker = at.selectbox(key=f"fork.{parent}.epoch")
    assert STOP_POINT in picker.options or any("where it was stopped" in o for o in picker.options)
    picker.set_value(STOP_POINT).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert f"where it was stopped (after epoch {epoch}, step {step})" in captions
    # what the form's Fork button calls with the picked value
    from mmviz import launcher

    with RunStore(ws) as store:
        child_id = launcher.fork(store, parent, STOP_POINT, queue=True)
        child = store.get_run(child_id)
        assert child["parent_run_id"] == parent and int(child["fork_epoch"]) == epoch
        events = store.load_events(child_id)
        assert events[events.kind == FORK_POINT_EVENT].payload.tolist() == [{"step": step}]
