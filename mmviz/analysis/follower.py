"""The analysis process of one run: follows the store and computes the diagnostics from the epoch records.

Forked from the trainer, or started as ``python -m mmviz.analysis.follower RUN_ID --workspace W`` (see
:class:`mmviz.probes.record.AnalysisSupervisor`). It polls the run's ``record`` artifacts, and for each epoch that
has no ``analysis`` artifact yet, in epoch order, loads the record, has the run's analysis probes compute their
rows (:func:`mmviz.probes.record.analyse_record`, the same code the trainer runs inline) and its files (the epoch's
snapshot for the embeddings page: :func:`mmviz.probes.record.record_files`), and writes the rows with the record's
step and epoch, together with the files' artifacts and the epoch's ``analysis`` artifact, in one transaction (with
the epochs analysed within :data:`BATCH_S` of it: at the end of a run, one write for the epochs still pending). So an epoch is
analysed exactly once, and a process that is killed loses nothing: the next one starts from the first epoch
without an ``analysis`` artifact. Probes that carry state from epoch to epoch (prototype drift) first re-read the
last analysed record. Records older than the last analysed one are deleted. It runs at nice 19 while the trainer
trains. Started as a program it computes with the run's ``train.threads`` (else torch's default); forked, with one
thread (GNU OpenMP cannot start its pool again after a fork). Values are bit for bit the inline ones when the
trainer computes with as many threads (tested with one); with other counts torch's reductions may add in another
order and differ in the last bits.

The process ends, after analysing every record still stored (nothing is lost), when

- the trainer has written the ``.done`` file (the normal end: the trainer waits for it);
- the run has a final status (finished, failed, stopped, diverged);
- the trainer is gone: its parent process (``--parent-pid``, the trainer that started it) has exited and the run
  shows no sign of life: it is ``lost`` (its recorded process is dead, or its heartbeat is older than the store's
  limit) or its heartbeat is older than :data:`ORPHAN_AFTER_S`. A killed trainer may have written an epoch's
  record file but not yet its ``record`` artifact: such files are analysed too, and their artifact written.

A follower whose parent still lives never takes a stale heartbeat for the end: a long epoch end can keep a live
trainer silent for longer than the store's ``lost`` limit.

One analysis process works on a run at a time: each holds an ``flock`` on ``records/.lock``, and one that finds it
held ends at once (e.g. a second "Analyse them now" from the Live page for a run whose trainer and analysis process
were killed together; :func:`mmviz.launcher.start_analysis`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mmviz.measures.record import (
    ANALYSED_KIND,
    DONE_FILE,
    RECORD_DIR,
    RECORD_KIND,
    RECORD_SUFFIX,
    load_record,
    record_path,
)

POLL_S = 0.1
BATCH_S = 0.25  # epochs analysed within this long are written in one transaction (all of them, or none)
LOCK_FILE = ".lock"  # in the records folder: held by the analysis process at work on the run
STATUS_POLL_S = 1.0  # how often the run's status and the parent are looked at (a store read)
ORPHAN_AFTER_S = 5.0  # parent gone and no heartbeat for this long: the trainer is gone


def follower_command(workspace: str | Path, run_id: str, parent_pid: int | None = None) -> tuple[list, dict]:
    """The argv of an analysis process started as a program, and what its environment needs on top (a workspace
    URL goes there, not on the command line: :func:`mmviz.store.child_workspace`)."""
    from mmviz.store import child_workspace

    args, env = child_workspace(workspace)
    argv = [sys.executable, "-m", "mmviz.analysis.follower", run_id, *args]
    return argv + (["--parent-pid", str(parent_pid)] if parent_pid is not None else []), env


def hold_lock(records: Path):
    """The run's analysis lock (an open file holding an exclusive ``flock``), or ``None`` when another analysis
    process holds it: one process analyses a run at a time, so no epoch's rows are written twice. The lock goes with
    the process (closed file, exit or kill)."""
    import fcntl

    records.mkdir(parents=True, exist_ok=True)
    fh = open(records / LOCK_FILE, "a")  # noqa: SIM115 - kept open for the process's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def lower_priority() -> None:
    """Training first: nice 19, so the analysis takes little CPU from the trainer while it trains (not
    ``SCHED_IDLE``: on a busy machine that starves it entirely), and catches up at the end of the run."""
    try:
        os.nice(19)
    except OSError:
        pass


def pending_epochs(store, run_id: str) -> tuple[dict[int, str], set[int]]:
    """``({epoch: record path relative to the run folder}, {analysed epochs})``."""
    return store.artifact_paths(run_id, RECORD_KIND), set(store.artifact_paths(run_id, ANALYSED_KIND))


def analysis_pending(store, run_id: str) -> list[int]:
    """Epochs whose record is stored but not analysed yet (what the live page shows as pending), in order: listed
    in the store, or a record file on disk only (its trainer was killed before listing it)."""
    paths, analysed = pending_epochs(store, run_id)
    stray = unlisted_records(store.run_dir(run_id), paths)
    return sorted(e for e in (*paths, *stray) if e not in analysed)


def run_over(store, run_id: str, parent_pid: int | None) -> str | None:
    """Why the run will write no more records (a short reason), or ``None`` while its trainer may still write."""
    from mmviz.errors import RunNotFoundError
    from mmviz.store.contract import TERMINAL

    try:
        run = store.get_run(run_id)
    except RunNotFoundError:
        return "the run was deleted"
    status = run["effective_status"]
    if status in TERMINAL:
        return f"the run is {status}"
    if parent_pid is not None and os.getppid() == parent_pid:
        return None  # the trainer lives (a stale heartbeat is a long epoch end)
    if status == "lost":
        return "the run is lost"
    last = next((t for t in (run["heartbeat"], run["started"], run["created"]) if t is not None), None)
    if last is None or time.time() - last > ORPHAN_AFTER_S:
        return "the trainer is gone"
    return None


def unlisted_records(folder: Path, paths: dict[int, str]) -> dict[int, str]:
    """Record files on disk that have no ``record`` artifact (a trainer killed between the two): ``{epoch: path}``."""
    found = {}
    for path in (folder / RECORD_DIR).glob(f"epoch_*{RECORD_SUFFIX}"):
        try:
            epoch = int(path.stem.split("_", 1)[1])
        except ValueError:
            continue
        if epoch not in paths and path == record_path(folder, epoch):
            found[epoch] = path.relative_to(folder).as_posix()
    return found


def follow(
    workspace: str | Path,
    run_id: str,
    poll: float = POLL_S,
    parent_pid: int | None = None,
    *,
    wake: int | None = None,
    threads: int | None = None,
    done: int | None = None,
) -> int:
    """Analyse the run's records as they come; return the number of epochs analysed.

    Args:
        parent_pid: the trainer's process id; when it is gone and the run shows no sign of life, the follower
            analyses what is stored and ends (see the module docstring).
        wake: the read end of a pipe the trainer writes a byte to when there is news (the run is done): the
            follower waits on it instead of sleeping, so it sees the end at once rather than at the next poll.
        threads: torch's thread count here (default: the run's ``train.threads``, else torch's default).
        done: the write end of a pipe to write one byte to when every record is analysed and written (a forked
            process: the trainer then waits for that, not for the process's exit).
    """
    from mmviz.probes import create_probes
    from mmviz.probes.base import AnalysisProbe
    from mmviz.probes.record import analyse_record, record_files
    from mmviz.store import open_store
    from mmviz.training.config import RunConfig

    store = open_store(workspace)  # a folder or a postgresql:// URL, as the trainer's store
    folder = store.run_dir(run_id)
    lock = hold_lock(folder / RECORD_DIR)
    if lock is None:  # another analysis process is at work on this run (e.g. one the dashboard started)
        return 0
    run = store.get_run(run_id)
    cfg = RunConfig.from_dict(run["config"])
    probes = [p for p in create_probes(cfg.probes) if isinstance(p, AnalysisProbe)]
    import torch

    torch.set_num_threads(threads or cfg.train.threads or torch.get_num_threads())  # see the module docstring
    done_flag = folder / RECORD_DIR / DONE_FILE
    if not done_flag.exists():  # while the trainer trains
        lower_priority()
    # the analysis needs numpy and torch only: no scikit-learn, whose import cost ~1.2 s of CPU per process (pandas
    # and scipy.stats come with it), more than analysing a whole demo run (issue 15)

    primed = False
    count = 0
    over: str | None = None
    checked = 0.0
    # Analysed ahead: epochs whose record file is complete but not listed in the store yet (the trainer lists it with
    # its next flush, up to ``flush_interval`` later), computed in epoch order and written once listed, so that at
    # the end of a run only the writes are left (issue 15). {epoch: (step, rows, file artifacts, meta)}
    ready: dict[int, tuple] = {}
    last = 0  # the last epoch analysed (written or ready) by this process

    def analyse(path: str) -> tuple:
        meta, arrays = load_record(folder / path)
        rows = analyse_record(probes, meta, arrays)
        return meta["step"], rows, record_files(probes, meta, arrays, folder), meta

    while True:
        finished = done_flag.exists()  # read before the store: a record listed after it is complete
        if not finished and over is None and time.monotonic() - checked >= STATUS_POLL_S:
            checked = time.monotonic()
            over = run_over(store, run_id, parent_pid)
        paths, analysed = pending_epochs(store, run_id)
        on_disk = unlisted_records(folder, paths)
        stray = on_disk if over is not None else {}
        todo = sorted(e for e in (*paths, *stray) if e not in analysed)
        paths = {**paths, **stray}
        # while the trainer lives: record files not listed yet, after every epoch analysed so far
        ahead = [e for e in sorted(on_disk) if over is None and e > max([last, *todo])]
        first = min([*todo, *ahead], default=None)
        if not primed and first is not None:  # restore state (prototype drift) from the last analysed record, if kept
            before = [e for e in analysed if e < first and e in paths and (folder / paths[e]).is_file()]
            if before:
                meta, arrays = load_record(folder / paths[max(before)])
                analyse_record(probes, meta, arrays)
            primed = True
        batch: tuple[list, list, list] = ([], [], [])  # rows, artifacts, epochs: several epochs in one transaction
        started = time.monotonic()
        for i, epoch in enumerate(todo):
            step, rows, files, meta = ready.pop(epoch) if epoch in ready else analyse(paths[epoch])
            last = max(last, epoch)
            now = time.time()
            batch[0].extend((step, float(epoch), now, k, v) for k, v in rows)
            if epoch in stray:  # its trainer died before recording it
                batch[1].append((epoch, RECORD_KIND, paths[epoch], {"step": step, "probes": meta["probes"]}))
            batch[1].extend([*files, (epoch, ANALYSED_KIND, paths[epoch], {"rows": len(rows)})])
            batch[2].append(epoch)
            if i == len(todo) - 1 or time.monotonic() - started >= BATCH_S:
                store.log_batch(run_id, batch[0], artifacts=batch[1])
                for older in (e for e in paths if e < epoch):
                    (folder / paths[older]).unlink(missing_ok=True)
                count += len(batch[2])
                batch, started = ([], [], []), time.monotonic()
        for epoch in ahead:  # the trainer still lives: these are listed with its next flush
            ready[epoch] = analyse(on_disk[epoch])
            last = epoch
        if (finished or over is not None) and not todo:
            if done is not None:
                try:
                    os.write(done, b"!")
                except BrokenPipeError:  # the trainer is gone (killed): nobody waits for the signal
                    pass
            return count
        if not todo and not ahead:
            wake = wait_for_news(wake, poll)


def wait_for_news(wake: int | None, timeout: float) -> int | None:
    """Sleep up to ``timeout`` s, or until the trainer writes to the ``wake`` pipe; return the pipe, or ``None``
    once the trainer has closed it (then plain sleeps)."""
    if wake is None:
        time.sleep(timeout)
        return None
    import select

    readable, _, _ = select.select([wake], [], [], timeout)
    if readable and not os.read(wake, 4096):  # end of file: the trainer closed its end (it exited)
        os.close(wake)
        return None
    return wake


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mmviz.analysis.follower", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="The run whose records to analyse.")
    parser.add_argument(
        "--workspace", help="The run store's workspace folder (default: $MMVIZ_WORKSPACE, where a URL is given)."
    )
    parser.add_argument("--parent-pid", type=int, help="The trainer's process id: end when it is gone.")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from mmviz.store import default_workspace  # a URL comes in MMVIZ_WORKSPACE (follower_command)

    follow(args.workspace or default_workspace(), args.run_id, parent_pid=args.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
