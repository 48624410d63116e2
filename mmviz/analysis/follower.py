"""The analysis process of one run: follows the store and computes the diagnostics from the epoch records.

``python -m mmviz.analysis.follower WORKSPACE RUN_ID`` (started by the trainer, see
:class:`mmviz.probes.record.AnalysisSupervisor`). It polls the run's ``record`` artifacts, and for each epoch that
has no ``analysis`` artifact yet, in epoch order, loads the record, has the run's analysis probes compute their
rows (:func:`mmviz.probes.record.analyse_record`, the same code the trainer runs inline) and writes them with the
record's step and epoch, together with the epoch's ``analysis`` artifact, in one transaction. So an epoch is
analysed exactly once, and a process that is killed loses nothing: the next one starts from the first epoch
without an ``analysis`` artifact. Probes that carry state from epoch to epoch (prototype drift) first re-read the
last analysed record. Records older than the last analysed one are deleted. The process exits when the trainer
has written the ``.done`` file and every record is analysed. It runs at nice 19 while the trainer trains, with the
trainer's thread count (the same reduction order, so the same values as inline).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mmviz.measures.record import ANALYSED_KIND, DONE_FILE, RECORD_DIR, RECORD_KIND, load_record

POLL_S = 0.1


def lower_priority() -> None:
    """Training first: nice 19, so the analysis takes little CPU from the trainer while it trains (not
    ``SCHED_IDLE``: on a busy machine that starves it entirely), and catches up at the end of the run."""
    try:
        os.nice(19)
    except OSError:
        pass


def pending_epochs(store, run_id: str) -> tuple[dict[int, str], set[int]]:
    """``({epoch: record path relative to the run folder}, {analysed epochs})``."""
    records = store.load_artifacts(run_id, kind=RECORD_KIND)
    analysed = store.load_artifacts(run_id, kind=ANALYSED_KIND)
    paths = {int(e): p for e, p in zip(records["epoch"], records["path"], strict=True)}
    return paths, {int(e) for e in analysed["epoch"]}


def analysis_pending(store, run_id: str) -> list[int]:
    """Epochs whose record is stored but not analysed yet (what the live page shows as pending), in order."""
    paths, analysed = pending_epochs(store, run_id)
    return sorted(e for e in paths if e not in analysed)


def follow(workspace: str | Path, run_id: str, poll: float = POLL_S) -> int:
    """Analyse the run's records as they come; return the number of epochs analysed."""
    from mmviz.probes import create_probes
    from mmviz.probes.base import AnalysisProbe
    from mmviz.probes.record import analyse_record
    from mmviz.store import open_store
    from mmviz.training.config import RunConfig

    store = open_store(workspace)  # a folder or a postgresql:// URL, as the trainer's store
    run = store.get_run(run_id)
    cfg = RunConfig.from_dict(run["config"])
    probes = [p for p in create_probes(cfg.probes) if isinstance(p, AnalysisProbe)]
    import torch

    # the trainer's thread count: torch's reductions then add in the same order, so the values are the trainer's
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    folder = store.run_dir(run_id)
    done_flag = folder / RECORD_DIR / DONE_FILE
    if not done_flag.exists():  # while the trainer trains
        lower_priority()
    primed = False
    count = 0
    while True:
        finished = done_flag.exists()  # read before the store: a record listed after it is complete
        paths, analysed = pending_epochs(store, run_id)
        todo = sorted(e for e in paths if e not in analysed)
        if not primed and todo:  # restore state (prototype drift) from the last analysed record, if kept
            before = [e for e in analysed if e < todo[0] and e in paths and (folder / paths[e]).is_file()]
            if before:
                meta, arrays = load_record(folder / paths[max(before)])
                analyse_record(probes, meta, arrays)
            primed = True
        for epoch in todo:
            meta, arrays = load_record(folder / paths[epoch])
            now = time.time()
            rows = [(meta["step"], float(epoch), now, k, v) for k, v in analyse_record(probes, meta, arrays)]
            store.log_batch(run_id, rows, artifacts=[(epoch, ANALYSED_KIND, paths[epoch], {"rows": len(rows)})])
            for older in (e for e in paths if e < epoch):
                (folder / paths[older]).unlink(missing_ok=True)
            count += 1
        if finished and not todo:
            return count
        if not todo:
            time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m mmviz.analysis.follower WORKSPACE RUN_ID", file=sys.stderr)
        return 2
    follow(args[0], args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
