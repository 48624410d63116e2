"""The command line: ``python -m mmviz train | runs | export | methods | datasets | stop | build-avdigits``, plus
``sweep | queue | scheduler`` (see :mod:`mmviz.cli_scale`).

Bad input exits with status 2 and one sentence on stderr naming the field, the bad value and the valid
choices; nothing is started and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mmviz.cli_scale import SCALE_COMMANDS, add_scale_commands, add_start_options, run_scale_command, wait_for_run
from mmviz.errors import MmvizError


def _add_workspace(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", help="Workspace folder (default: $MMVIZ_WORKSPACE or ./mmviz-runs).")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="python -m mmviz", description="Train multimodal classifiers and watch modality imbalance develop."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="Train a run (prints its id first); exit 0 when it finishes.")
    t.add_argument("--dataset", help="Dataset name (default mfeat; a fork keeps the parent's).")
    t.add_argument("--method", help="Balancing method (default baseline; a fork keeps the parent's unless given).")
    t.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Change a config field, e.g. optim.lr=0.01, data.views=pix,fou, method.alpha=0.8.",
    )
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.add_argument("--name", default="", help="A readable name for the run.")
    t.add_argument("--tag", dest="tags", action="append", default=[], help="Tag the run (repeatable).")
    t.add_argument("--fork", metavar="RUN_ID", help="Start from this run's checkpoint (needs --fork-epoch).")
    t.add_argument("--fork-epoch", type=int, metavar="K")
    t.add_argument("--detach", action="store_true", help="Start the run in the background and return at once.")
    add_start_options(t)
    t.add_argument("--run-id", help=argparse.SUPPRESS)  # internal: train an already prepared run
    _add_workspace(t)

    r = sub.add_parser("runs", help="List runs.")
    r.add_argument("--json", action="store_true")
    _add_workspace(r)

    e = sub.add_parser("export", help="Print a run's tidy metrics.")
    e.add_argument("run_id")
    e.add_argument("--format", choices=("csv", "json"), default="csv")
    _add_workspace(e)

    s = sub.add_parser("stop", help="Ask a running run to stop (it checkpoints and ends as 'stopped').")
    s.add_argument("run_id")
    s.add_argument("--wait", action="store_true", help="Wait until it has stopped.")
    _add_workspace(s)

    m = sub.add_parser("methods", help="List balancing methods and their settings.")
    m.add_argument("--json", action="store_true")
    d = sub.add_parser("datasets", help="List datasets and their settings.")
    d.add_argument("--json", action="store_true")
    b = sub.add_parser("build-avdigits", help="Rebuild the avdigits audio with espeak-ng (needs Debian's espeak-ng).")
    b.add_argument("--out", help="Output .npz (default: the bundled file).")
    b.add_argument("--clips", type=int, default=3000)
    add_scale_commands(sub, _add_workspace)
    return parser


def _store(args):
    from mmviz.store import open_store

    return open_store(args.workspace)


def _entries_json(registry) -> list[dict]:
    out = []
    for entry in registry:
        fields = [
            {
                "name": s.name,
                "type": s.type.__name__,
                "default": list(s.default) if isinstance(s.default, tuple) else s.default,
                "help": s.help,
                "low": s.low,
                "high": s.high,
                "choices": list(s.choices) if s.choices else None,
            }
            for s in entry.config_cls.field_specs()
        ]
        out.append({"name": entry.name, "description": entry.description, "flags": entry.flags, "fields": fields})
    return out


def _print_entries(registry, prefix: str) -> None:
    for item in _entries_json(registry):
        print(f"{item['name']}: {item['description'].splitlines()[0] if item['description'] else ''}")
        for f in item["fields"]:
            rng = f" [{f['low']}, {f['high']}]" if f["low"] is not None or f["high"] is not None else ""
            ch = f" choices: {', '.join(map(str, f['choices']))}" if f["choices"] else ""
            print(f"    {prefix}.{f['name']} = {f['default']!r}{rng}{ch}  -- {f['help']}")


def cmd_train(args) -> int:
    from mmviz.launcher import submit
    from mmviz.training.config import build_run_config
    from mmviz.training.runner import run_training

    if args.run_id:  # the trainer process of a prepared run
        store = _store(args)
        status = run_training(store, args.run_id, progress=True)
        return 0 if status in ("finished", "stopped") else 1
    if args.fork_epoch is not None and not args.fork:
        raise MmvizError("--fork-epoch needs --fork RUN_ID (the run to fork).")
    store = None
    base = None
    if args.fork:
        store = _store(args)
        base = store.get_run(args.fork)["config"]
        if args.fork_epoch is None:
            raise MmvizError("A fork needs --fork-epoch K (the parent's checkpoint epoch to start from).")
        if args.dataset and args.dataset != base["dataset"]:
            raise MmvizError(f"A fork keeps the parent's dataset {base['dataset']!r}; got --dataset {args.dataset!r}.")
    cfg = build_run_config(
        args.dataset, args.method, args.sets, epochs=args.epochs, seed=args.seed, device=args.device, base=base
    )
    from mmviz.training.build import check_run_config, resolve_device

    resolve_device(cfg.train.device)
    data = check_run_config(cfg)  # everything about the config is checked before the store is touched
    store = store or _store(args)
    detach = args.detach or args.queue
    backend = args.backend if detach or args.backend != "local" else None  # None: this process trains it
    run_id = submit(
        store,
        cfg,
        name=args.name,
        parent_run_id=args.fork,
        fork_epoch=args.fork_epoch,
        tags=args.tags,
        data=data,
        backend=backend,
        queue=args.queue,
    )
    print(run_id, flush=True)
    if detach:
        return 0
    status = run_training(store, run_id, progress=True) if backend is None else wait_for_run(store, run_id)
    run = store.get_run(run_id)
    if status != "finished":
        print(f"Run {run_id} ended {status}" + (f": {run['error']}" if run.get("error") else "."), file=sys.stderr)
    return 0 if status == "finished" else 1


def cmd_runs(args) -> int:
    store = _store(args)
    df = store.list_runs()
    cols = [
        "run_id",
        "name",
        "effective_status",
        "dataset",
        "method",
        "fusion",
        "epochs_done",
        "best_val_acc",
        "parent_run_id",
        "fork_epoch",
        "error",
    ]
    if args.json:
        print(df[[c for c in cols if c in df.columns]].to_json(orient="records"))
    elif df.empty:
        print(f"No runs in {store.workspace}.")
    else:
        print(df[[c for c in cols if c in df.columns]].to_string(index=False))
    return 0


def cmd_export(args) -> int:
    store = _store(args)
    run = store.get_run(args.run_id)
    df = store.load_metrics(args.run_id)
    df = df.drop(columns=[c for c in ("id",) if c in df.columns])
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        keep = [
            "run_id",
            "name",
            "status",
            "dataset",
            "method",
            "fusion",
            "config",
            "parent_run_id",
            "fork_epoch",
            "best_val_acc",
            "best_epoch",
            "summary",
            "error",
        ]
        info = {k: run.get(k) for k in keep}
        print(json.dumps({"run": info, "metrics": json.loads(df.to_json(orient="records"))}, default=str))
    return 0


def cmd_stop(args) -> int:
    from mmviz.launcher import stop

    store = _store(args)
    stop(store, args.run_id, wait=args.wait)
    print(f"Stop requested for {args.run_id}.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "runs":
            return cmd_runs(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "stop":
            return cmd_stop(args)
        if args.command in SCALE_COMMANDS:
            return run_scale_command(args, _store(args))
        if args.command in ("methods", "datasets"):
            if args.command == "methods":
                from mmviz.balancing import METHODS as registry
            else:
                from mmviz.data import DATASETS as registry
            if args.json:
                print(json.dumps(_entries_json(registry), indent=1))
            else:
                _print_entries(registry, "method" if args.command == "methods" else "data")
            return 0
        if args.command == "build-avdigits":
            from pathlib import Path

            from mmviz.data.avdigits_build import DEFAULT_OUT, build_avdigits

            out = build_avdigits(Path(args.out) if args.out else DEFAULT_OUT, n_clips=args.clips)
            print(out)
            return 0
    except MmvizError as exc:
        print(f"mmviz: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 2
