"""The OGM-GE paper's CREMA-D recipe on your copy of CREMA-D, watched live in the mmviz dashboard.

Data: your CREMA-D preprocessed as in the official OGM-GE repository (``train.csv``, ``test.csv``, ``AudioWAV/``,
``Image-01-FPS/``; see ``mmviz.data.av_benchmarks``). Model: the papers' audio and visual ResNet-18 encoders with
a linear head over their concatenated features. Training: the recipe of the official code (SGD, lr 1e-3,
momentum 0.9, weight decay 1e-4, step decay x0.1 at epoch 70, 100 epochs, batch 64; OGM-GE with alpha 0.8 over
epochs 1-51), read from mmviz's record of it (``mmviz methods`` shows it). A GPU is used when there is one.

    .venv/bin/python examples/cremad_recipe.py --root /data/CREMA-D            # then: make run, Live page
    .venv/bin/python examples/cremad_recipe.py --demo --epochs 2 --image-size 32 --small  # no data: a stand-in

``--demo`` writes a few synthetic clips in the same layout to a temporary folder (what the tests use).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import mmviz.api  # noqa: E402
from mmviz.balancing import METHODS  # noqa: E402
from mmviz.data import create_dataset  # noqa: E402
from mmviz.data.av_benchmarks import CremadConfig  # noqa: E402
from models import MultimodalNet  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    recipe = METHODS.get("ogm_ge").factory.paper_recipe.settings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="Your preprocessed CREMA-D folder.")
    parser.add_argument("--demo", action="store_true", help="Use a tiny synthetic stand-in in the same layout.")
    parser.add_argument("--workspace", default=None, help="mmviz workspace (default: MMVIZ_WORKSPACE or ./mmviz-runs).")
    parser.add_argument("--method", default="ogm_ge", help="Balancing method (default ogm_ge; try baseline, pmr).")
    parser.add_argument("--epochs", type=int, default=recipe["train"]["epochs"])
    parser.add_argument("--batch-size", type=int, default=recipe["train"]["batch_size"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--small", action="store_true", help="A small 1-D CNN audio encoder (a quick look on a CPU).")
    args = parser.parse_args(argv)
    if not args.root and not args.demo:
        parser.error("give --root with your CREMA-D folder, or --demo for a tiny synthetic stand-in")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = None
    root = args.root
    if args.demo:
        from mmviz.data.av_fixtures import write_cremad

        tmp = tempfile.TemporaryDirectory(prefix="mmviz-cremad-demo-")
        root = str(write_cremad(Path(tmp.name), per_class=4, test_per_class=2))
    # every clip is checked here, before training: a missing or broken file is one sentence naming it
    data = create_dataset(
        "cremad", CremadConfig(root=root, image_size=args.image_size, val_fraction=0.25 if args.demo else 0.1)
    )
    model = MultimodalNet(
        [(s.name, s.kind, s.shape) for s in data.modalities], data.num_classes,
        encoders={"audio": "cnn1d" if args.small else "resnet18_audio", "visual": "resnet18_visual"}, fusion="concat",
    ).to(device)  # fmt: skip
    opt_cfg = recipe["optim"]
    opt = torch.optim.SGD(model.parameters(), lr=opt_cfg["lr"], momentum=opt_cfg["momentum"],
                          weight_decay=opt_cfg["weight_decay"])  # fmt: skip
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=opt_cfg["step_size"], gamma=opt_cfg["gamma"])
    loader = dict(
        batch_size=args.batch_size, num_workers=args.workers if not args.demo else 0, pin_memory=device.type == "cuda"
    )
    train, val = data.loader("train", **loader), data.loader("val", **loader)
    params = recipe["method"] if args.method == "ogm_ge" else {}

    with mmviz.api.watch(
        model, train_loader=train, val_loader=val, epochs=args.epochs, optimizer=opt, method=args.method,
        method_params=params, workspace=args.workspace, dataset="cremad", name=f"cremad-{args.method}",
        settings={**vars(args), "optim": opt_cfg},
    ) as run:  # fmt: skip
        for epoch in range(1, args.epochs + 1):
            model.train()
            for batch in train:
                batch = run.transform({k: v.to(device, non_blocking=True) for k, v in batch.items()})
                out = model(batch)
                loss = run.loss(out, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                run.after_backward(out, batch, loss)
                opt.step()
            schedule.step()
            ev = run.end_epoch()
            print(f"epoch {epoch}: val acc {ev.acc:.3f} (audio {ev.acc_uni.get('audio', float('nan')):.3f}, "
                  f"visual {ev.acc_uni.get('visual', float('nan')):.3f})", flush=True)  # fmt: skip
            if run.should_stop:  # the dashboard's Stop button
                break
    if tmp is not None:
        tmp.cleanup()
    print(run.run_id)
    return run.run_id


if __name__ == "__main__":
    main()
