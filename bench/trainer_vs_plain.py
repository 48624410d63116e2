"""Throughput of our fit() (no diagnostics) vs a plain hand-written PyTorch loop, same model and data.

Both load the data, build and train the default demo model (mfeat pix+fou, concat fusion, Adam, batch 64) for the same number of
epochs with a per-epoch validation pass; ours also writes metrics to a real SQLite store and a checkpoint
per epoch. Runs are interleaved in one process and the median of the repetitions is compared.
Budget (DESIGN.md §5): throughput ratio ours / plain >= 0.95.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmviz.data.base import TensorSplit  # noqa: E402
from mmviz.launcher import prepare_run  # noqa: E402
from mmviz.probes import PROBES  # noqa: E402
from mmviz.store import RunStore  # noqa: E402
from mmviz.training.build import build_model, check_run_config  # noqa: E402
from mmviz.training.config import build_run_config  # noqa: E402
from mmviz.training.loop import fit  # noqa: E402

EPOCHS, REPS, BUDGET = 10, 5, 0.95


def no_probe_config():
    off = {p.name: {"enabled": False} for p in PROBES}
    return build_run_config("mfeat", "baseline", epochs=EPOCHS, overrides={"probes": off, "train": {"device": "cpu"}})


def plain_loop(cfg) -> float:
    """A plain PyTorch loop: load data, build the model, shuffled mini-batches, CE, Adam, a val pass per epoch."""
    t0 = time.perf_counter()
    data = check_run_config(cfg)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    train = TensorSplit(data, data.splits["train"], torch.device("cpu"))
    val = TensorSplit(data, data.splits["val"], torch.device("cpu"))
    gen = torch.Generator().manual_seed(cfg.train.seed)
    for _ in range(cfg.train.epochs):
        model.train()
        for batch in train.batches(cfg.train.batch_size, gen):
            loss = F.cross_entropy(model(batch).logits, batch["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(b).logits.argmax(1) == b["label"]).sum()) for b in val.batches(512))
        assert correct >= 0
    return time.perf_counter() - t0


def ours(cfg, workspace: Path) -> float:
    store = RunStore(workspace)
    run_id = prepare_run(store, cfg)
    t0 = time.perf_counter()  # like the plain loop: data loading, model building and training
    fit(cfg, store, run_id, store.run_dir(run_id))
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def main() -> int:
    torch.set_num_threads(2)
    cfg = no_probe_config()
    plain_loop(cfg)  # warm-up (imports, allocator)
    plain, mine = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPS):
            plain.append(plain_loop(cfg))
            mine.append(ours(cfg, Path(tmp) / f"ws{i}"))
    ratio = statistics.median(plain) / statistics.median(mine)
    print(
        f"plain loop: median {statistics.median(plain):.3f} s for {EPOCHS} epochs; ours: {statistics.median(mine):.3f} s"
    )
    print(f"throughput ratio ours/plain = {ratio:.3f} (budget >= {BUDGET})")
    return 0 if ratio >= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
