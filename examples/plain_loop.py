"""A plain PyTorch loop on a model written without mmviz in mind, watched live in the mmviz dashboard.

The model is written as OGM-GE's official repository writes its own (``examples/official_style_model.py``:
``forward(audio, visual) -> (a, v, out)``, features pooled inside ``forward``, a ``fusion_module`` with a linear
``fc_out``). ``ModelAdapter`` names its encoders, fusion module and head, with no change to its class. The loop is
the one you would write anyway; the lines marked ``# mmviz`` are all that is added. Start ``make run`` and open the
Live page while it trains; the Embeddings page shows each modality's features per epoch.

    .venv/bin/python examples/plain_loop.py                    # baseline: watch the frames dominate
    .venv/bin/python examples/plain_loop_balanced.py           # the same loop with OGM-GE added
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from official_style_model import AVClassifier, ToyAudioVisual  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import mmviz.api  # noqa: E402
from mmviz.adapter import ModelAdapter  # noqa: E402


def parse(argv: list[str] | None, doc: str, **extra: str) -> argparse.Namespace:
    """The examples' command line: workspace, epochs, number of training samples (and ``extra`` string options)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="mmviz workspace (default: MMVIZ_WORKSPACE or ./mmviz-runs).")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=1200, help="Training samples (val gets a quarter as many).")
    for name, default in extra.items():
        parser.add_argument(f"--{name}", default=default)
    return parser.parse_args(argv)


def adapt(model: AVClassifier) -> ModelAdapter:
    """Name the parts of the model for mmviz: its encoders, the module whose inputs are the features, the head."""
    return ModelAdapter(
        model,
        encoders={"audio": "audio_net", "visual": "visual_net"},  # in the order of forward(audio, visual)
        fusion="fusion_module",  # its inputs are the pooled per-modality features
        head="fusion_module.fc_out",  # the linear layer over their concatenation
    )


def main(argv: list[str] | None = None) -> str:
    args = parse(argv, __doc__)
    torch.manual_seed(0)
    model = AVClassifier(n_classes=6)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    train = DataLoader(ToyAudioVisual(args.samples, seed=0), batch_size=64, shuffle=True)
    val = DataLoader(ToyAudioVisual(max(1, args.samples // 4), seed=1), batch_size=256)

    net = adapt(model)  # mmviz
    run = mmviz.api.watch(net, train_loader=train, val_loader=val, epochs=args.epochs, optimizer=optimizer,  # mmviz
                          workspace=args.workspace, name="plain-loop")  # fmt: skip

    for epoch in range(args.epochs):
        model.train()
        for batch in train:
            out = net(batch)  # calls model(audio, visual); out.logits is its `out`, out.features its a and v
            loss = F.cross_entropy(out.logits, batch["label"])
            optimizer.zero_grad()
            loss.backward()
            run.after_backward(out, batch, loss)  # mmviz: per-step probes read the gradients
            optimizer.step()
        ev = run.end_epoch()  # mmviz: val accuracy, per-epoch probes, an embeddings snapshot
        print(f"epoch {epoch + 1}: val acc {ev.acc:.3f}", flush=True)
    run.close()  # mmviz
    print(run.run_id)
    return run.run_id


if __name__ == "__main__":
    main()
