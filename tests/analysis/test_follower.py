"""The analysis process (issue 15): the same diagnostic values as inline, nothing lost when it is killed, and no
orphan left when its trainer is killed (it analyses what is stored, then ends)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mmviz.training.loop as loop
from mmviz import launcher
from mmviz.analysis.follower import ORPHAN_AFTER_S, analysis_pending, follow
from mmviz.analysis.worker import ProjectionWorker
from mmviz.launcher import prepare_run
from mmviz.measures.record import ANALYSED_KIND, RECORD_DIR, RECORD_KIND, record_path
from mmviz.probes.record import AnalysisSupervisor, ForkedProcess
from mmviz.store import RunStore, open_store
from mmviz.store.keys import pid_alive
from mmviz.testing import wait_for
from mmviz.training.config import build_run_config
from mmviz.training.loop import fit

EPOCHS = 4
SETS = ["data.n_train=300", "train.threads=1", "probes.unimodal_acc.probe_every=2"]
ANALYSED = r"^(sep/|proto/|val/acc_ncm/|val/acc_probe/|val/shapley/|imbalance/)"


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run(store: RunStore, process: bool, progress=None) -> tuple[str, pd.DataFrame]:
    cfg = build_run_config("synthetic", "baseline", SETS, epochs=EPOCHS, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=process, progress=progress)
    frame = store.load_metrics(run_id)
    return run_id, frame[frame["key"].str.match(ANALYSED)]


def values(frame: pd.DataFrame) -> dict:
    return {
        (k, s, e): v for k, s, e, v in zip(frame["key"], frame["step"], frame["epoch"], frame["value"], strict=True)
    }


def supervised(monkeypatch, **options) -> list[AnalysisSupervisor]:
    """Have ``fit`` use an :class:`AnalysisSupervisor` made with ``options``; the list collects the ones made."""
    made: list[AnalysisSupervisor] = []

    class Watched(AnalysisSupervisor):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, **options})
            made.append(self)

    monkeypatch.setattr(loop, "AnalysisSupervisor", Watched)
    return made


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "started"])
def test_the_analysis_process_writes_exactly_the_inline_values(any_workspace, monkeypatch, fork):
    made = supervised(monkeypatch, fork=fork)
    with open_store(any_workspace) as store:  # on PostgreSQL the process is handed the URL, not a folder
        inline_id, inline = run(store, process=False)
        run_id, process = run(store, process=True)
        # forked from the trainer (torch and the probes already imported), or started as a new program
        assert isinstance(made[0].proc, ForkedProcess if fork else subprocess.Popen), made[0].proc
        assert len(inline) > 20 * EPOCHS and values(process) == values(inline)  # bit for bit, same steps, epochs
        assert analysis_pending(store, run_id) == []
        left = sorted(p.name for p in (store.run_dir(run_id) / RECORD_DIR).iterdir())
        # the snapshots, written by the analysis process from the records: the inline files, array for array
        snaps = [store.load_artifacts(r, kind="snapshot") for r in (inline_id, run_id)]
        assert list(snaps[0].epoch) == list(snaps[1].epoch) == list(range(1, EPOCHS + 1))
        assert list(snaps[0]["meta"]) == list(snaps[1]["meta"])  # n, modalities, prediction sources, step
        for a, b in zip(snaps[0].path, snaps[1].path, strict=True):
            with np.load(store.run_dir(inline_id) / a) as one, np.load(store.run_dir(run_id) / b) as two:
                assert one.files == two.files and len(one.files) >= 8
                assert all(np.array_equal(one[k], two[k]) and one[k].dtype == two[k].dtype for k in one.files)
    assert left == [".done", ".lock", f"epoch_{EPOCHS:04d}.rec"]  # analysed records are deleted but the last


ANALYSE_IN_NEW_PROCESS = """
import json, sys
from mmviz.analysis.follower import follow
from mmviz.measures.record import load_record
from mmviz.probes import create_probes
from mmviz.probes.base import AnalysisProbe
from mmviz.probes.record import analyse_record
from mmviz.store import RunStore
from mmviz.training.config import RunConfig

workspace, run_id, record = sys.argv[1:]
follow(workspace, run_id)  # nothing left to analyse: its set-up only
with RunStore(workspace) as store:
    cfg = RunConfig.from_dict(store.get_run(run_id)["config"])
probes = [p for p in create_probes(cfg.probes) if isinstance(p, AnalysisProbe)]
rows = dict(analyse_record(probes, *load_record(record)))
print(json.dumps({"keys": sorted(rows), "sklearn": sorted(m for m in sys.modules if m.split(".")[0] == "sklearn")}))
"""


def test_the_trainer_records_the_snapshot_arrays_and_the_analysis_writes_the_files(tmp_path, monkeypatch):
    """Writing each epoch's snapshot took ~3 ms of the trainer's epoch end (issue 15): the trainer only adds the probe
    set's positions, logits and predictions to the record; the analysis writes the file and its artifact."""
    monkeypatch.setattr(AnalysisSupervisor, "ensure_running", lambda self: None)  # no analysis process at all
    with RunStore(tmp_path) as store:
        run_id, _ = run(store, process=True)
        folder = store.run_dir(run_id)
        assert store.load_artifacts(run_id, kind="snapshot").empty and not (folder / "snapshots").exists()
        assert analysis_pending(store, run_id) == list(range(1, EPOCHS + 1))
        writes = []
        monkeypatch.setattr(
            RunStore, "log_batch", lambda self, *a, _w=RunStore.log_batch, **k: writes.append(1) or _w(self, *a, **k)
        )
        monkeypatch.setattr("mmviz.analysis.follower.BATCH_S", 60.0)  # however slow this machine is now
        assert follow(str(tmp_path), run_id) == EPOCHS  # what the analysis process runs
        assert len(writes) == 1  # the epochs pending at once go in one transaction
        snaps = store.load_artifacts(run_id, kind="snapshot")
        assert list(snaps.epoch) == list(range(1, EPOCHS + 1)) and analysis_pending(store, run_id) == []
        assert all((folder / p).is_file() for p in snaps.path)
        assert snaps["meta"].iloc[0]["step"] > 0 and snaps["meta"].iloc[0]["pred_source"] == {"a": "head", "b": "head"}


def test_records_are_analysed_before_the_trainer_lists_them_and_written_once_listed(tmp_path, monkeypatch):
    """The trainer lists an epoch's record with its next store flush (every 0.5 s): the analysis process analyses a
    complete record file at once and writes the rows when it is listed, so at the end only writes are left."""
    import shutil

    monkeypatch.setattr(AnalysisSupervisor, "ensure_running", lambda self: None)
    with RunStore(tmp_path) as store:
        source, _ = run(store, process=True)  # records of epochs 1-4, listed, not analysed
        cfg = build_run_config("synthetic", "baseline", SETS, epochs=EPOCHS, seed=0)
        run_id = prepare_run(store, cfg)
        folder = store.run_dir(run_id)
        (folder / RECORD_DIR).mkdir(parents=True)
        for epoch in range(1, EPOCHS + 1):  # the trainer wrote the files; its flush has not listed them yet
            shutil.copy(record_path(store.run_dir(source), epoch), record_path(folder, epoch))
        assert follow(str(tmp_path), source) == EPOCHS
        want = values(store.load_metrics(source).pipe(lambda f: f[f["key"].str.match(ANALYSED)]))
        follower = subprocess.Popen([sys.executable, "-m", "mmviz.analysis.follower", run_id, "--workspace",
                                     str(tmp_path), "--parent-pid", str(os.getpid())], cwd=REPO)  # fmt: skip
        try:
            snaps = [folder / "snapshots" / f"epoch_{e:04d}.npz" for e in range(1, EPOCHS + 1)]
            wait_for(lambda: all(p.is_file() for p in snaps), 60, "the snapshots of the unlisted records")
            made = [p.stat().st_ino for p in snaps]
            assert analysis_pending(store, run_id) == list(range(1, EPOCHS + 1))  # nothing written while unlisted
            for epoch in range(1, EPOCHS + 1):
                path = record_path(folder, epoch).relative_to(folder).as_posix()
                store.add_artifact(run_id, epoch, RECORD_KIND, path, {"step": 0, "probes": []})
            wait_for(lambda: analysis_pending(store, run_id) == [], 60, "the rows of the listed records")
            (folder / RECORD_DIR / ".done").touch()
            assert follower.wait(timeout=60) == 0
        finally:
            follower.kill()
        assert [p.stat().st_ino for p in snaps] == made  # written once, before the records were listed
        got = store.load_metrics(run_id)
        assert values(got[got["key"].str.match(ANALYSED)]) == want


def test_the_analysis_process_never_imports_scikit_learn(tmp_path):
    """Importing scikit-learn cost the analysis process ~1.2 s of CPU per run, more than its analysis of a whole
    demo run (issue 15); k-means purity and the linear probe are computed with numpy."""
    with RunStore(tmp_path) as store:
        run_id, frame = run(store, process=True)
        record = record_path(store.run_dir(run_id), EPOCHS)  # the last record is kept; the linear probe is due
    out = subprocess.run([sys.executable, "-c", ANALYSE_IN_NEW_PROCESS, str(tmp_path), run_id, str(record)],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    assert {"sep/purity/fused", "val/acc_probe/fused", "val/shapley/a"} <= set(result["keys"]), result["keys"]
    assert result["sklearn"] == []
    stored = frame[frame["epoch"] == EPOCHS].set_index("key")["value"]
    assert stored["sep/purity/fused"] > 0 and stored["val/acc_probe/fused"] > 0


def test_the_analysis_process_polls_the_store_without_building_frames(tmp_path, monkeypatch):
    """It polls the record and analysis artifacts at each wake-up; building pandas frames of strings for that made each
    forked process import pyarrow's string machinery (0.2-0.6 s of CPU a run, issue 15): it reads plain values."""

    def no_frames(self, *args, **kwargs):
        raise AssertionError("the analysis process built an artifacts frame")

    with RunStore(tmp_path) as store:
        _, inline = run(store, process=False)
        monkeypatch.setattr(RunStore, "load_artifacts", no_frames)  # forked: the child has the patched class too
        run_id, process = run(store, process=True)
        assert values(process) == values(inline) and analysis_pending(store, run_id) == []
        folder = store.run_dir(run_id)
        assert store.artifact_paths(run_id, RECORD_KIND) == {
            e: record_path(folder, e).relative_to(folder).as_posix() for e in range(1, EPOCHS + 1)
        }
        assert sorted(store.artifact_paths(run_id, ANALYSED_KIND)) == list(range(1, EPOCHS + 1))


def test_killing_the_analysis_process_loses_no_epoch(tmp_path, monkeypatch):
    supervisors = supervised(monkeypatch)
    killed = []

    def kill_after_epoch_2(info, values_) -> None:
        if values_.get("epoch_done") in (2, 3) and supervisors and supervisors[0].proc is not None:
            os.kill(supervisors[0].proc.pid, signal.SIGKILL)  # mid-run, whatever it is doing
            supervisors[0].proc.wait()
            killed.append(values_["epoch_done"])

    store = RunStore(tmp_path)
    _, inline = run(store, process=False)
    run_id, process = run(store, process=True, progress=kill_after_epoch_2)
    assert killed == [2, 3] and supervisors[0].restarts >= 1
    assert isinstance(supervisors[0].proc, subprocess.Popen)  # the first was forked; a restart is a new program
    assert values(process) == values(inline)  # every epoch's rows, each exactly once
    assert process.groupby("key").size().max() == EPOCHS


REPO = Path(__file__).resolve().parents[2]
HOLD = 3  # the trainer stops moving after this epoch's record is written, before its artifact is flushed

TRAINER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from mmviz.launcher import prepare_run
    from mmviz.store import RunStore
    from mmviz.training.config import build_run_config
    from mmviz.training.loop import fit

    ws, epochs, hold, sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    store = RunStore(ws)
    cfg = build_run_config("synthetic", "baseline", sets, epochs=epochs, seed=0)
    run_id = prepare_run(store, cfg)

    def progress(info, values):
        if values.get("epoch_done") == hold:  # after the record was written, before the epoch's flush
            Path(ws, "held.tmp").write_text(run_id)
            os.replace(Path(ws, "held.tmp"), Path(ws, "held"))  # whole when seen (write_text creates it empty first)
            while True:
                time.sleep(1)

    fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=True, progress=progress)
    """
)


def followers(workspace: Path, trainer: int | None = None) -> list[int]:
    """Live analysis processes following a run of ``workspace``: started as ``python -m mmviz.analysis.follower``,
    or forked by the ``trainer`` process (its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        started = b"mmviz.analysis.follower" in argv and str(workspace).encode() in argv
        if (started or (trainer is not None and parent == trainer)) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def held_trainer(tmp_path: Path) -> tuple[dict, Path, subprocess.Popen, int]:
    """A trainer process (:data:`TRAINER`, ``EPOCHS`` epochs, held after epoch ``HOLD``) in ``tmp_path/ws`` whose
    forked analysis process is stopped (SIGSTOP) as soon as it is seen, and the values an inline run of the same seed
    has for epochs 1..HOLD: ``(inline values, workspace, trainer, analysis process id)``."""
    _, inline = run(RunStore(tmp_path / "inline"), process=False)
    inline_values = {k: v for k, v in values(inline).items() if k[2] <= HOLD}
    ws = tmp_path / "ws"
    ws.mkdir()
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    trainer = subprocess.Popen([sys.executable, str(script), str(ws), str(EPOCHS), str(HOLD), *SETS], env=env,
                               cwd=REPO, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        (follower,) = wait_for(lambda: followers(ws, trainer.pid), 120, "the analysis process to start")
    except BaseException:
        trainer.kill()
        trainer.wait()
        raise
    os.kill(follower, signal.SIGSTOP)  # it analyses nothing more
    return inline_values, ws, trainer, follower


def end(trainer: subprocess.Popen, follower: int | None) -> None:
    """Kill a test's trainer and its (maybe stopped) analysis process if they are still there."""
    if trainer.poll() is None:
        trainer.kill()
        trainer.wait()
    if follower is not None and pid_alive(follower):
        os.kill(follower, signal.SIGCONT)
        os.kill(follower, signal.SIGKILL)


def test_a_follower_outlives_a_killed_trainer_only_to_analyse_what_is_stored(tmp_path):
    inline_values, ws, trainer, follower = held_trainer(tmp_path)  # it analyses nothing until the trainer is dead
    try:
        wait_for(lambda: (ws / "held").is_file(), 120, f"the trainer to reach epoch {HOLD}")
        run_id = (ws / "held").read_text()
        trainer.kill()  # kill -9, mid-run: no .done file, no final status
        trainer.wait(timeout=30)
        with RunStore(ws) as store:  # closed again: the analysis process is now the only one with the store open
            listed = set(store.load_artifacts(run_id, kind=RECORD_KIND)["epoch"])
            # the last epoch's record file is on disk but not in the store (earlier ones are listed once the logger
            # has flushed, which a quick machine may not have done yet either)
            assert HOLD not in listed and listed <= set(range(1, HOLD)), listed
            assert record_path(store.run_dir(run_id), HOLD).is_file()
            assert len(set(store.load_artifacts(run_id, kind=ANALYSED_KIND)["epoch"])) < HOLD  # epochs were pending
        # A forked child that inherited SQLite's in-process lock records from the trainer held no lock of its own on
        # the database: the store closed just above took the database for unused, checkpointed it and deleted its
        # WAL file, and every row the child wrote after that went to the deleted file (lost).
        os.kill(follower, signal.SIGCONT)
        started = time.monotonic()
        wait_for(lambda: not pid_alive(follower), 60 + ORPHAN_AFTER_S, "the orphaned analysis process to end")
        took = time.monotonic() - started
        follower = None
        assert followers(ws) == []
        store = RunStore(ws)
        assert set(store.load_artifacts(run_id, kind=ANALYSED_KIND)["epoch"]) == set(range(1, HOLD + 1))
        assert set(store.load_artifacts(run_id, kind=RECORD_KIND)["epoch"]) == set(range(1, HOLD + 1))
        frame = store.load_metrics(run_id)
        assert values(frame[frame["key"].str.match(ANALYSED)]) == inline_values  # every stored epoch, once, exact
        print(f"the orphaned follower ended {took:.1f} s after it was let go")
    finally:
        end(trainer, follower)


@pytest.mark.parametrize("status", ["finished", "lost"])
def test_a_follower_ends_when_its_run_has_ended(tmp_path, status):
    """Started by hand for a run that is over (no ``.done`` file, no trainer), it ends at once."""
    store = RunStore(tmp_path)
    _, _ = run(store, process=False)
    run_id = store.list_runs()["run_id"].iloc[0]
    if status == "finished":
        store.set_status(run_id, "finished")
    else:  # running, recorded with a process id that has exited
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        store.set_status(run_id, "running", pid=dead.pid)
    assert store.get_run(run_id)["effective_status"] == status
    started = time.monotonic()
    assert follow(tmp_path, run_id, parent_pid=os.getpid()) == 0  # inline run: nothing to analyse
    assert time.monotonic() - started < 10


def test_a_follower_whose_trainer_is_gone_ends_quietly_without_its_end_signal(tmp_path):
    """The end-of-work byte goes to a pipe nobody reads once the trainer was killed: no error, a normal end."""
    store = RunStore(tmp_path)
    run_id, _ = run(store, process=False)
    store.set_status(run_id, "finished")
    read, write = os.pipe()
    os.close(read)  # the trainer's end, gone with it
    try:
        assert follow(tmp_path, run_id, parent_pid=os.getpid(), done=write) == 0
    finally:
        os.close(write)


def test_records_written_from_the_background_thread_give_the_inline_values(tmp_path, monkeypatch):
    """The GPU path (host copies, record written by a thread, artifact recorded after the join) run on the CPU."""
    from mmviz.probes.record import EpochRecorder

    class Background(EpochRecorder):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.background = True

    store = RunStore(tmp_path)
    _, inline = run(store, process=False)
    monkeypatch.setattr(loop, "EpochRecorder", Background)
    run_id, process = run(store, process=True)
    assert values(process) == values(inline)
    assert set(store.load_artifacts(run_id, kind=RECORD_KIND)["epoch"]) == set(range(1, EPOCHS + 1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_run_is_analysed_and_checkpointed_off_the_training_thread(tmp_path):
    from mmviz.training.checkpoint import checkpoint_path, load_checkpoint

    store = RunStore(tmp_path)
    cfg = build_run_config("synthetic", "baseline", [*SETS, "train.device=cuda"], epochs=EPOCHS, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=True)
    assert analysis_pending(store, run_id) == []
    assert set(store.load_artifacts(run_id, kind=ANALYSED_KIND)["epoch"]) == set(range(1, EPOCHS + 1))
    state = load_checkpoint(checkpoint_path(store.run_dir(run_id), EPOCHS))
    assert state["epoch"] == EPOCHS and all(not t.is_cuda for t in state["model"].values())


def test_cpu_training_leaves_one_core_to_the_analysis_process(tmp_path):
    """With ``train.threads`` unset, a CPU run whose analysis runs in a process trains on one thread less than the
    caller's (two OpenMP threads beside the analysis process on two cores made every step 2-3x slower) and gives the
    caller's count back at the end; inline analysis keeps the caller's count."""
    torch.set_num_threads(2)
    seen: dict[bool, set[int]] = {True: set(), False: set()}
    store = RunStore(tmp_path)
    for process in (True, False):
        cfg = build_run_config("synthetic", "baseline", [s for s in SETS if not s.startswith("train.threads")],
                               epochs=2, seed=0)  # fmt: skip
        run_id = prepare_run(store, cfg)
        fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=process,
            progress=lambda info, v, p=process: seen[p].add(torch.get_num_threads()))  # fmt: skip
        assert torch.get_num_threads() == 2
    assert seen == {True: {1}, False: {2}}


def test_the_trainer_forks_only_beside_threads_that_are_fork_safe(tmp_path):
    """A fork copies only the forking thread: a lock another thread held (a store write half done) would stay held
    in the child for ever. So the trainer forks only when every other thread is declared ``fork_safe`` (the run's
    heartbeat, whose writes exclude a fork), and starts a new program otherwise."""
    import threading

    from mmviz.training.runner import _Heartbeat

    supervisor = AnalysisSupervisor(tmp_path, "r", tmp_path / "r")
    assert supervisor.can_fork()
    store = RunStore(tmp_path)
    beat = _Heartbeat(store, "r", interval=0.01)
    beat.start()
    try:
        assert supervisor.can_fork()
        release = threading.Event()
        other = threading.Thread(target=release.wait, daemon=True)
        other.start()
        assert not supervisor.can_fork()
        release.set()
        other.join()
        assert supervisor.can_fork()
        assert not AnalysisSupervisor(tmp_path, "r", tmp_path / "r", fork=False).can_fork()
        projections = ProjectionWorker(tmp_path / "proj", warm=False)  # its monitor thread is declared fork-safe
        try:
            assert supervisor.can_fork()
        finally:
            projections.stop()
    finally:
        beat.done.set()
        beat.join()


def test_a_run_trained_by_the_runner_forks_its_analysis_and_gets_every_row(tmp_path, monkeypatch):
    """The way ``python -m mmviz train`` and the dashboard train (a heartbeat thread beside fit): forked, complete."""
    from mmviz.training.runner import run_training

    made = supervised(monkeypatch)
    store = RunStore(tmp_path)
    _, inline = run(store, process=False)
    cfg = build_run_config("synthetic", "baseline", SETS, epochs=EPOCHS, seed=0)
    run_id = prepare_run(store, cfg)
    assert run_training(store, run_id) == "finished"
    assert isinstance(made[0].proc, ForkedProcess) and made[0].restarts == 0
    frame = store.load_metrics(run_id)
    assert values(frame[frame["key"].str.match(ANALYSED)]) == values(inline)


def test_a_run_ends_once_its_last_rows_are_written_not_when_the_forked_process_has_exited(tmp_path, monkeypatch):
    """The forked process signals the end of its work on a pipe; the trainer does not wait for its exit (the
    teardown of a process as large as the trainer took 10-20 ms of each run), and the exit is collected on a thread,
    so no zombie is left."""
    import mmviz.analysis.follower as follower

    real = follower.follow

    def follow_then_linger(*args, **kwargs):
        count = real(*args, **kwargs)
        time.sleep(20)  # an exit that takes long
        return count

    monkeypatch.setattr(follower, "follow", follow_then_linger)  # the forked child calls it from the module
    made = supervised(monkeypatch)
    store = RunStore(tmp_path)
    _, inline = run(store, process=False)
    run_id, process = run(store, process=True)
    proc = made[0].proc
    assert isinstance(proc, ForkedProcess) and proc.returncode is None  # the run ended before the process did
    assert values(process) == values(inline) and analysis_pending(store, run_id) == []  # with every row written
    os.kill(proc.pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{proc.pid}").exists(), 10, "the exited analysis process to be reaped")


def test_a_fork_waits_for_the_heartbeat_write_in_progress():
    """What makes the heartbeat ``fork_safe``: a fork made while it writes waits until the write is done, so the
    child never starts with a store write (and the locks it holds) cut in half."""
    import threading

    from mmviz.training.runner import _Heartbeat

    writing, took = threading.Event(), []

    class SlowStore:
        def heartbeat(self, run_id: str) -> None:
            writing.set()
            time.sleep(0.5)
            took.append(run_id)

    beat = _Heartbeat(SlowStore(), "r", interval=0.01)
    beat.start()
    try:
        assert writing.wait(10)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        waited = time.monotonic() - start
        os.waitpid(pid, 0)
    finally:
        beat.done.set()
        beat.join()
    assert took and waited >= 0.3, waited  # the write (0.5 s) finished before the fork went ahead


def test_the_analysis_process_starts_before_the_data_and_the_model(tmp_path, monkeypatch):
    """First thing in ``fit``: its start-up overlaps the trainer's set-up (1.3-1.7 s in a new process), and a GPU run
    can still fork it (CUDA is initialised once the model moves to the device)."""
    order: list[str] = []
    made = supervised(monkeypatch)
    real_check, real_build = loop.check_run_config, loop.build_model
    monkeypatch.setattr(loop, "check_run_config", lambda *a, **k: order.append("data") or real_check(*a, **k))
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: order.append("model") or real_build(*a, **k))
    real_start = AnalysisSupervisor.ensure_running
    monkeypatch.setattr(AnalysisSupervisor, "ensure_running", lambda self: order.append("analysis") or real_start(self))
    store = RunStore(tmp_path)
    cfg = build_run_config("synthetic", "baseline", SETS, epochs=1, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=True)
    assert order[:3] == ["analysis", "data", "model"], order
    assert isinstance(made[0].proc, ForkedProcess) and made[0].restarts == 0


def test_a_forked_analysis_process_is_named_as_one(tmp_path, monkeypatch):
    """A fork keeps the trainer's name and command line: top, ``ps -o comm`` and ``ps aux`` / ``pgrep -f`` would
    show a second trainer (the old code changed only the name). Both say what it is and which run it analyses."""
    made = supervised(monkeypatch)
    seen = []

    def progress(info, values_):
        if values_.get("epoch_done") == 1 and made and made[0].proc is not None:
            proc = Path(f"/proc/{made[0].proc.pid}")

            def named():
                shown = (proc / "comm").read_text().strip(), (proc / "cmdline").read_bytes()
                return shown if shown[0] == "mmviz-analysis" and shown[1].startswith(b"mmviz-analysis") else None

            seen.append(wait_for(named, 5, "name"))

    store = RunStore(tmp_path)
    cfg = build_run_config("synthetic", "baseline", SETS, epochs=2, seed=0)
    run_id = prepare_run(store, cfg)
    fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=True, progress=progress)
    assert isinstance(made[0].proc, ForkedProcess) and len(seen) == 1
    comm, cmdline = seen[0]
    assert comm == "mmviz-analysis"
    assert cmdline.rstrip(b"\0") == f"mmviz-analysis {run_id}".encode()  # the trainer's argv is as long (pytest's)
    assert Path("/proc/self/cmdline").read_bytes().split(b"\0")[:-1] == [a.encode() for a in sys.orig_argv]


FORKING_TRAINER = textwrap.dedent(
    """
    import sys, time
    from mmviz.launcher import prepare_run
    from mmviz.probes.record import AnalysisSupervisor
    from mmviz.store import open_store
    from mmviz.training.config import build_run_config

    store = open_store(sys.argv[1])
    run_id = prepare_run(store, build_run_config("synthetic", "baseline", ["data.n_train=120"], epochs=1))
    before = store._db._conn.info.backend_pid
    supervisor = AnalysisSupervisor(sys.argv[1], run_id, store.run_dir(run_id))
    supervisor.ensure_running()  # forked, as fit() does
    store.heartbeat(run_id)  # the trainer goes on using its store
    print(before, store._db._conn.info.backend_pid, supervisor.proc.pid, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_trainers_postgresql_session_ends_while_its_forked_analysis_process_lives(postgres_workspace):
    """The forked analysis process inherited the trainer's PostgreSQL socket: the server kept a killed trainer's
    session (and a write transaction it was in, with the store-wide write lock every writer waits for) until the
    analysis process ended. The trainer now forks with its connections closed and reconnects after."""
    import psycopg

    from mmviz.store.postgres import split_url

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    trainer = subprocess.Popen([sys.executable, "-c", FORKING_TRAINER, postgres_workspace], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    follower = None
    try:
        sessions = [int(w) for w in trainer.stdout.readline().split()]
        follower = sessions.pop()
        os.kill(follower, signal.SIGSTOP)  # alive, holding whatever it inherited
        trainer.kill()
        trainer.wait(timeout=30)
        with psycopg.connect(split_url(postgres_workspace)[0], autocommit=True) as conn:

            def left() -> set[int]:
                rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (sessions,)).fetchall()
                return {r[0] for r in rows}

            wait_for(lambda: not left(), 20, f"the killed trainer's sessions {sessions} to end (left: {left()})")
        assert pid_alive(follower)
    finally:
        end(trainer, follower)


def test_a_trainer_that_fails_before_training_leaves_no_analysis_process(tmp_path):
    """A fork whose parent checkpoint is damaged fails in ``fit``'s set-up, after the analysis process started: it is
    ended with the trainer's error, not left polling beside a caller that lives on."""
    from mmviz.errors import StoreError
    from mmviz.training.loop import Resume

    store = RunStore(tmp_path)
    cfg = build_run_config("synthetic", "baseline", SETS, epochs=2, seed=0)
    run_id = prepare_run(store, cfg)
    bad = tmp_path / "parent.pt"
    bad.write_bytes(b"MMVIZCKPT2\n" + b"\0" * 40)  # a torn checkpoint
    with pytest.raises(StoreError):
        fit(cfg, store, run_id, store.run_dir(run_id), analysis_process=True,
            resume=Resume(checkpoint=bad, init_state=None, same_method=True))  # fmt: skip
    assert followers(tmp_path, trainer=os.getpid()) == []


def test_a_run_killed_with_its_analysis_process_is_analysed_from_the_live_page(tmp_path, open_page):
    """Trainer and analysis process killed together (kill -9 of both, a machine that stopped): nothing restarts the
    analysis, so the measured epochs stayed 'pending' on the Live page for ever. The page now says so and offers a
    button that starts an analysis process; it computes exactly the values an inline run has, once."""
    inline_values, ws, trainer, follower = held_trainer(tmp_path)
    try:
        wait_for(lambda: (ws / "held").is_file(), 120, f"the trainer to reach epoch {HOLD}")
        run_id = (ws / "held").read_text()
        os.kill(follower, signal.SIGKILL)
        trainer.kill()
        trainer.wait(timeout=30)
        wait_for(lambda: not pid_alive(follower), 30, "the analysis process to die")
    finally:
        end(trainer, follower)
    store = RunStore(ws)
    store.set_status(run_id, "running", pid=trainer.pid)  # as run_training records it (the script calls fit alone)
    assert store.get_run(run_id)["effective_status"] == "lost"
    pending = analysis_pending(store, run_id)
    assert HOLD in pending and len(pending) >= 2, pending  # the last one only as a file: killed before listing it

    at = open_page(ws, "live", run=run_id)
    assert any("measured but not analysed" in c.value for c in at.caption), [c.value for c in at.caption]
    assert at.button(key="live.stop").disabled  # nothing to stop (its stored status still reads 'running')
    at.button(key=f"live.analyse.{run_id}").click().run()
    assert not at.exception, at.exception
    pid = at.session_state[f"live.analysis.{run_id}"]
    again = launcher.start_analysis(store, run_id)  # a second one (another tab) while the first is at work
    wait_for(lambda: not pid_alive(pid) and again.poll() is not None, 120, "the analysis processes to end")
    assert again.returncode == 0
    assert analysis_pending(store, run_id) == []
    frame = store.load_metrics(run_id)
    assert values(frame[frame["key"].str.match(ANALYSED)]) == inline_values  # every epoch, once, exact
    at.run()
    assert not any("analys" in c.value.lower() and "epoch" in c.value.lower() for c in at.caption)
