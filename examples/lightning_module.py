"""A PyTorch Lightning module watched live in the mmviz dashboard: one callback, no change to the training code.

``MmvizCallback`` opens an mmviz run when training starts and feeds it at Lightning's hooks (see
``mmviz.lightning``): per-step probes and the balancing method after backward, the epoch probes and snapshots
after validation. The module below keeps its own plain ``training_step``; with a method that changes the loss
(``--method pmr``) it computes it with ``self.mmviz.loss(out, batch)``, the one line such methods need.

    pip install lightning                                       # the optional extra (make test installs it)
    .venv/bin/python examples/lightning_module.py --method ogm_ge   # then: make run, Live page
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mmviz.lightning import MmvizCallback  # noqa: E402
from models import MultimodalNet  # noqa: E402

LOSS_CHANGING = {"pmr", "aux_loss", "gblending", "ume", "cggm", "agm"}


class AudioVisualToy(Dataset):
    """Your data: dict samples, one tensor per modality plus ``label``; audio carries the class clearly, visual barely."""

    def __init__(self, n: int, seed: int, classes: int = 4) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, classes, (n,), generator=g)
        centres = torch.randn(classes, 32 + 48, generator=torch.Generator().manual_seed(99))
        self.audio = torch.randn(n, 32, generator=g) + 2.0 * centres[self.y, :32]
        self.visual = torch.randn(n, 48, generator=g) + 0.5 * centres[self.y, 32:]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[i], "visual": self.visual[i], "label": self.y[i]}


class AVModule(pl.LightningModule):
    """A LightningModule as you would write it; ``self.model`` is the multimodal network mmviz watches."""

    def __init__(self, method: str, lr: float = 1e-3) -> None:
        super().__init__()
        self.model = MultimodalNet([("audio", "vector", (32,)), ("visual", "vector", (48,))], 4, feature_dim=64)
        self.method, self.lr = method, lr

    def training_step(self, batch, batch_idx):
        out = self.model(batch)
        if self.method in LOSS_CHANGING:
            return self.mmviz.loss(out, batch)  # the method's loss (e.g. PMR's prototype term)
        return F.cross_entropy(out.logits, batch["label"])

    def validation_step(self, batch, batch_idx):
        acc = (self.model(batch).logits.argmax(1) == batch["label"]).float().mean()
        self.log("val_acc", acc, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="mmviz workspace (default: MMVIZ_WORKSPACE or ./mmviz-runs).")
    parser.add_argument("--method", default="ogm_ge", help="Balancing method (default ogm_ge).")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train = DataLoader(AudioVisualToy(args.samples, 0), batch_size=64, shuffle=True)
    val = DataLoader(AudioVisualToy(max(64, args.samples // 4), 1), batch_size=256)
    callback = MmvizCallback(workspace=args.workspace, method=args.method, name=f"lightning-{args.method}")
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=sys.stderr.isatty(), callbacks=[callback],
    )  # fmt: skip
    trainer.fit(AVModule(args.method), train, val)
    print(callback.run.run_id)
    return callback.run.run_id


if __name__ == "__main__":
    main()
