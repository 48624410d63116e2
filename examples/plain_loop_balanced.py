"""The loop of ``examples/plain_loop.py`` with a balancing method added: OGM-GE in two changed lines.

``method="ogm_ge"`` in ``watch`` makes ``run.after_backward`` modulate the encoders' gradients (Peng et al.,
CVPR 2022) with the same code ``fit()`` runs, and ``run.loss`` gives the method's loss (plain cross-entropy for
OGM-GE; PMR adds its prototype term there). ``run.transform`` is the method's change of the input (modality
dropout for AMD; the batch as is for OGM-GE), so any method runs in this loop (``--method pmr``, ``--method amd``,
...; ``mmviz methods`` lists them). Compare the two runs on the Compare page.

    .venv/bin/python examples/plain_loop_balanced.py [--method ogm_ge]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from official_style_model import AVClassifier, ToyAudioVisual  # noqa: E402
from plain_loop import adapt, parse  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import mmviz.api  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    args = parse(argv, __doc__, method="ogm_ge")
    torch.manual_seed(0)
    model = AVClassifier(n_classes=6)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    train = DataLoader(ToyAudioVisual(args.samples, seed=0), batch_size=64, shuffle=True)
    val = DataLoader(ToyAudioVisual(max(1, args.samples // 4), seed=1), batch_size=256)

    net = adapt(model)
    run = mmviz.api.watch(net, train_loader=train, val_loader=val, epochs=args.epochs, optimizer=optimizer,
                          workspace=args.workspace, name=f"plain-loop-{args.method}",
                          method=args.method)  # changed line 1: the balancing method  # fmt: skip

    for epoch in range(args.epochs):
        model.train()
        for batch in train:
            batch = run.transform(batch)  # the method's input change (none for OGM-GE)
            out = net(batch)
            loss = run.loss(out, batch)  # changed line 2: the method's loss (cross-entropy for OGM-GE)
            optimizer.zero_grad()
            loss.backward()
            run.after_backward(out, batch, loss)  # OGM-GE modulates the encoders' gradients here
            optimizer.step()
        ev = run.end_epoch()
        print(f"epoch {epoch + 1}: val acc {ev.acc:.3f}", flush=True)
    run.close()
    print(run.run_id)
    return run.run_id


if __name__ == "__main__":
    main()
