"""The command line: ``python -m mmviz train | runs | export | stop | dashboard | methods | datasets |
build-avdigits``, plus ``sweep | queue | scheduler`` (see :mod:`mmviz.cli_scale`).

Bad input exits with status 2 and one sentence on stderr naming the field, the bad value and the valid
choices; nothing is started and nothing is written.

``train`` prints the run id as its first (and only) stdout line, so scripts can read it. On stderr it draws a
progress bar when stderr is a terminal, else one line per epoch (``--quiet`` turns both off), and ends every run
with a summary. Exit status of ``train`` (foreground, ``--detach``'s trainer and the dashboard's alike):
:data:`EXIT_FINISHED` 0, :data:`EXIT_FAILED` 1 (failed or diverged), 2 bad input, :data:`EXIT_STOPPED` 3
(stopped on request).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mmviz.cli_scale import SCALE_COMMANDS, add_scale_commands, add_start_options, run_scale_command, wait_for_run
from mmviz.errors import MmvizError

EXIT_FINISHED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3


def _add_workspace(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", help="Workspace folder (default: $MMVIZ_WORKSPACE or ./mmviz-runs).")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="python -m mmviz", description="Train multimodal classifiers and watch modality imbalance develop."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train", help="Train a run (prints its id first); exit 0 finished, 1 failed or diverged, 3 stopped."
    )
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
    t.add_argument(
        "--fork-epoch", metavar="K", help="The parent's checkpoint epoch, or 'stopped' for where it was stopped."
    )
    t.add_argument("--quiet", action="store_true", help="No progress bar or per-epoch lines (the summary stays).")
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

    g = sub.add_parser("dashboard", help="Serve the dashboard on http://127.0.0.1:PORT (this machine only).")
    g.add_argument("--port", type=int, default=8501)
    g.add_argument(
        "--listen-all",
        action="store_true",
        help="Listen on every network interface (anyone who reaches this machine can start and delete runs).",
    )
    _add_workspace(g)

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


def _reading_store(args):
    """The store for a command that only reads: a workspace this user cannot write is opened read-only."""
    from mmviz.store import open_store_for_reading

    return open_store_for_reading(args.workspace)


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
        flags = {k: _jsonable(v) for k, v in entry.flags.items() if not callable(v)}  # a function is not data
        out.append({"name": entry.name, "description": entry.description, "flags": flags, "fields": fields})
    return out


def _jsonable(value):
    """A registry flag as JSON data: sets sorted into lists, dataclasses (a paper recipe) as dicts."""
    import dataclasses

    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _print_entries(registry, prefix: str) -> None:
    for item in _entries_json(registry):
        print(f"{item['name']}: {item['description'].splitlines()[0] if item['description'] else ''}")
        for f in item["fields"]:
            rng = f" [{f['low']}, {f['high']}]" if f["low"] is not None or f["high"] is not None else ""
            ch = f" choices: {', '.join(map(str, f['choices']))}" if f["choices"] else ""
            print(f"    {prefix}.{f['name']} = {f['default']!r}{rng}{ch}  -- {f['help']}")


def _exit_status(status: str) -> int:
    return {"finished": EXIT_FINISHED, "stopped": EXIT_STOPPED}.get(status, EXIT_FAILED)


def _train_and_report(store, run_id: str, quiet: bool) -> int:
    from mmviz.training.runner import run_training

    status = run_training(store, run_id, progress=not quiet)
    print(run_summary(store, run_id), file=sys.stderr, flush=True)
    return _exit_status(status)


def _check_detached_backend(args) -> None:
    """``--detach --backend ray`` without a cluster address would start a local Ray inside this command, which
    ends with it: the run would stay queued for ever. Say so before anything starts."""
    if args.detach and not args.queue and args.backend == "ray":
        from mmviz.ray_backend import ADDRESS_ENV, ray_address

        if ray_address() is None:
            raise MmvizError(
                f"--detach with --backend ray needs a Ray cluster that outlives this command, and {ADDRESS_ENV} is "
                f"not set: set {ADDRESS_ENV} (e.g. 'auto' after 'ray start --head'), add --queue so the scheduler "
                "starts the run, or leave out --detach to wait for it here."
            )


def cmd_train(args) -> int:
    from mmviz.launcher import parse_fork_epoch, submit
    from mmviz.training.config import build_run_config

    if args.run_id:  # the trainer process of a prepared run
        return _train_and_report(_store(args), args.run_id, args.quiet)
    if args.fork_epoch is not None and not args.fork:
        raise MmvizError("--fork-epoch needs --fork RUN_ID (the run to fork).")
    _check_detached_backend(args)
    store = None
    base = None
    fork_epoch = None
    if args.fork:
        store = _store(args)
        parent = store.get_run(args.fork)
        from mmviz.launcher import check_rerunnable

        check_rerunnable(parent, "fork")
        base = parent["config"]
        if args.fork_epoch is None:
            raise MmvizError("A fork needs --fork-epoch K (the parent's checkpoint epoch to start from, or 'stopped').")
        fork_epoch = parse_fork_epoch(args.fork_epoch)
        if args.dataset and args.dataset != base["dataset"]:
            raise MmvizError(f"A fork keeps the parent's dataset {base['dataset']!r}; got --dataset {args.dataset!r}.")
    cfg = build_run_config(
        args.dataset, args.method, args.sets, epochs=args.epochs, seed=args.seed, device=args.device, base=base
    )
    from mmviz.training.build import check_run_config, resolve_device

    resolve_device(cfg.train.device)
    data = check_run_config(cfg)  # everything about the config is checked before the store is touched
    from mmviz.balancing import METHODS
    from mmviz.recipes import describe_recipe

    recipe = describe_recipe(METHODS.get(cfg.method), cfg.to_dict())
    if recipe:  # the settings the recipe implies, before launch (stderr: stdout's first line is the run id)
        print(recipe, file=sys.stderr, flush=True)
    store = store or _store(args)
    store.check_integrity()  # a damaged database is named before a run is added to it
    detach = args.detach or args.queue
    backend = args.backend if detach or args.backend != "local" else None  # None: this process trains it
    run_id = submit(
        store,
        cfg,
        name=args.name,
        parent_run_id=args.fork,
        fork_epoch=fork_epoch,
        tags=args.tags,
        data=data,
        backend=backend,
        queue=args.queue,
    )
    print(run_id, flush=True)
    if detach:
        return EXIT_FINISHED
    if backend is None:
        return _train_and_report(store, run_id, args.quiet)
    status = wait_for_run(store, run_id)
    print(run_summary(store, run_id), file=sys.stderr, flush=True)
    return _exit_status(status)


def dashboard_command(workspace) -> str:
    """The command that serves ``workspace``'s dashboard, as printed for the user: a URL's password as ``***``
    (the summary goes to terminals and log files), and then where to put it."""
    from mmviz.store import shown_workspace

    shown = shown_workspace(workspace)
    command = f"python -m mmviz dashboard --workspace {shown!r}"
    return command + (" (your password for ***; or set MMVIZ_WORKSPACE)" if shown != str(workspace) else "")


def run_summary(store, run_id: str) -> str:
    """The lines that end every ``train``: status, best epoch, test accuracies, imbalance, time, where to look."""
    import math

    run = store.get_run(run_id)
    lines = [f"Run {run_id} {run['effective_status']}" + (f": {run['error']}" if run.get("error") else ".")]
    if run.get("best_epoch"):
        lines.append(f"  best epoch {run['best_epoch']} (val acc {100 * run['best_val_acc']:.1f}%)")
    test = run.get("summary") or {}
    if "test_acc" in test:
        per = [f"{k.removeprefix('test_acc_')} {100 * v:.1f}%" for k, v in test.items() if k.startswith("test_acc_")]
        lines.append(f"  test acc fused {100 * test['test_acc']:.1f}%" + (f", {', '.join(per)}" if per else ""))
    index = store.load_metrics(run_id, ["imbalance/index"])
    if len(index):
        lines.append(f"  imbalance index {index['value'].iloc[-1]:.2f} at epoch {index['epoch'].iloc[-1]:g}")
    duration = run.get("duration")
    if duration is not None and not math.isnan(duration):
        lines.append(f"  wall time {duration:.1f} s, {run.get('epochs_done') or 0} epochs")
    lines.append(f"  see it: {dashboard_command(store.workspace)}, then http://127.0.0.1:8501/live?run={run_id}")
    return "\n".join(lines)


def cmd_runs(args) -> int:
    from mmviz.store import shown_workspace

    store = _reading_store(args)
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
        print(f"No runs in {shown_workspace(store.workspace)}.")
    else:
        print(df[[c for c in cols if c in df.columns]].to_string(index=False))
    return 0


def cmd_export(args) -> int:
    store = _reading_store(args)
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
    if args.wait:
        run = store.get_run(args.run_id)
        print(f"Run {args.run_id} is {run['effective_status']}.")
    else:
        print(f"Stop requested for {args.run_id}; it checkpoints and ends as 'stopped' after its current step.")
    return 0


def cmd_dashboard(args) -> int:
    """Run the Streamlit server on 127.0.0.1 (or every interface with ``--listen-all``, with a warning)."""
    import os

    from mmviz.launcher import ROOT as root
    from mmviz.launcher import child_env
    from mmviz.store import WORKSPACE_ENV, workspace_text

    if not 1 <= args.port <= 65535:
        raise MmvizError(f"The --port must be an integer in [1, 65535]. Got {args.port} instead.")
    # the server runs from the project root: a folder made absolute, a URL as given
    env = child_env({WORKSPACE_ENV: workspace_text(args.workspace)} if args.workspace else {})
    address = "127.0.0.1"
    if args.listen_all:
        address = "0.0.0.0"
        env["MMVIZ_LISTEN_ALL"] = "1"
        print(
            "mmviz: warning: the dashboard listens on every network interface; anyone who can reach this machine "
            "can start and delete runs.",
            file=sys.stderr,
        )
    else:
        env.pop("MMVIZ_LISTEN_ALL", None)
    argv = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.address", address]
    argv += ["--server.port", str(args.port), "--server.headless", "true"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(root)
    # this process becomes the server: a SIGTERM from a process manager (or Ctrl-C) reaches Streamlit itself, so
    # stopping `mmviz dashboard` never leaves a server running behind it (a child server outlived its parent)
    os.execve(sys.executable, argv, env)
    return 0  # not reached


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
        if args.command == "dashboard":
            return cmd_dashboard(args)
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
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    return 2
