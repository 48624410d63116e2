"""Wall time of the default demo run (mfeat, baseline, CPU) from the command line to a finished run.

Runs ``python -m mmviz train --dataset mfeat --method baseline --device cpu`` as a user would (a fresh
process, default probes and settings) into a temporary workspace. Budget (DESIGN.md §5): <= 60 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 60.0

sys.path.insert(0, str(ROOT))
from mmviz.store import open_store  # noqa: E402
from mmviz.ui.launch import PRIOR_EPOCH_S  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cmd = [
            sys.executable,
            "-m",
            "mmviz",
            "train",
            "--dataset",
            "mfeat",
            "--method",
            "baseline",
            "--device",
            "cpu",
            "--workspace",
            tmp,
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr)
            return 1
        run_id = proc.stdout.split()[0]
        out = subprocess.run(
            [sys.executable, "-m", "mmviz", "runs", "--json", "--workspace", tmp],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        print(f"run {run_id}: {out.count('finished')} finished run(s)")
        with open_store(tmp) as store:
            run = store.get_run(run_id)
        per_epoch = run["duration"] / run["epochs_done"]
        print(
            f"training took {run['duration']:.1f} s, {per_epoch:.3f} s per epoch; the launch form's estimate for a "
            f"workspace without runs assumes {PRIOR_EPOCH_S['mfeat']} s per epoch (PRIOR_EPOCH_S in mmviz/ui/launch.py)"
        )
    print(
        f"default demo run (mfeat, baseline, 30 epochs, default probes): {elapsed:.1f} s (budget <= {BUDGET_S:.0f} s)"
    )
    return 0 if elapsed <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
