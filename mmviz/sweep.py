"""Sweeps: many runs over methods × settings × seeds, written as data (as Ray Tune and W&B sweeps do).

A sweep is a grid (every combination) or a random sample over

* methods (``--method a,b,c``),
* ``--set`` values: a list ``optim.lr=0.01,0.1`` (for a list-valued field such as ``data.views``, separate the
  alternatives with ``;``: ``data.views=pix,fou;pix,kar``) or a range ``lo..hi`` with optional ``:log`` (log
  scale) and ``:N`` (N evenly spaced points, needed in a grid: ``optim.lr=1e-3..1e-1:log:3``),
* and seeds (every configuration is run once per seed, so results can be grouped over seeds).

Each trial is an ordinary run tagged ``sweep:<sweep id>``. Every trial's config is built and validated before
the first one is created, so a bad value starts nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mmviz.errors import ConfigError
from mmviz.store.keys import new_run_id

TAG_PREFIX = "sweep:"
SWEEP_TAG = "sweep"
MAX_TRIALS = 1000
MODES = ("grid", "random")


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric range of a swept setting: ``lo..hi`` (``log``: log-uniform; ``points``: a grid of that many)."""

    low: float
    high: float
    log: bool = False
    points: int | None = None

    def grid(self) -> list[float]:
        """``points`` evenly spaced values from ``low`` to ``high`` (on a log scale with ``log``)."""
        n = self.points or 0
        if n == 1:
            return [self.low]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        return [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]

    def sample(self, rng: random.Random) -> float:
        """One value drawn uniformly (log-uniformly with ``log``)."""
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to sweep. ``params`` maps a ``--set`` key to its alternatives (strings) or a :class:`Range`."""

    methods: tuple[str, ...]
    params: tuple[tuple[str, tuple[str, ...] | Range], ...] = ()
    seeds: tuple[int, ...] = (0,)
    mode: str = "grid"
    samples: int = 0
    dataset: str | None = None
    fixed: tuple[str, ...] = ()
    epochs: int | None = None
    base: Mapping[str, Any] | None = None
    sample_seed: int = 0


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial: a method, one value per swept key, and a seed."""

    method: str
    values: tuple[tuple[str, str], ...]
    seed: int

    def describe(self) -> str:
        """``method=ogm_ge, optim.lr=0.01, seed=1``."""
        return ", ".join([f"method={self.method}", *(f"{k}={v}" for k, v in self.values), f"seed={self.seed}"])


def _number(text: str, key: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise ConfigError(f"The range of sweep setting {key!r} needs finite numbers. Got {text!r} instead.")
    return value


def parse_values(key: str, text: str, list_field: bool = False) -> tuple[str, ...] | Range:
    """Parse the swept values of ``key``: ``a,b,c`` (``a;b`` for a list-valued field) or ``lo..hi[:log][:N]``."""
    text = text.strip()
    if ".." in text and not list_field:
        lo_text, _, rest = text.partition("..")
        hi_text, *flags = rest.split(":")
        low, high = _number(lo_text, key), _number(hi_text, key)
        log, points = False, None
        for flag in flags:
            if flag == "log":
                log = True
            elif flag.isdigit() and int(flag) >= 1:
                points = int(flag)
            else:
                raise ConfigError(
                    f"Unknown flag {flag!r} in the range of sweep setting {key!r}. Use ':log' and/or ':N' "
                    "(N points, a whole number >= 1), e.g. optim.lr=1e-3..1e-1:log:3."
                )
        if not low < high:
            raise ConfigError(f"The range of sweep setting {key!r} must go from low to high. Got {text!r} instead.")
        if log and low <= 0:
            raise ConfigError(f"A ':log' range of sweep setting {key!r} must be above 0. Got {text!r} instead.")
        return Range(low, high, log, points)
    parts = tuple(p.strip() for p in text.split(";" if list_field else ",") if p.strip())
    if not parts:
        raise ConfigError(f"Sweep setting {key!r} has no values. Give a list like {key}=a,b or a range like lo..hi.")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"Sweep setting {key!r} lists a value twice: {text!r}.")
    return parts


def _field(key: str, dataset: str | None, method: str) -> Any:
    """The field spec behind a ``--set`` key for this dataset and method, or None when there is none."""
    from mmviz.balancing import METHODS
    from mmviz.data import DATASETS
    from mmviz.training.config import ModelConfig, OptimConfig, TrainConfig

    section, _, name = key.partition(".")
    classes = {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}
    try:
        if section == "data":
            cls = DATASETS.get(dataset or "mfeat").config_cls
        elif section == "method":
            cls = METHODS.get(method).config_cls
        else:
            cls = classes.get(section)
    except ConfigError:
        return None
    return next((s for s in cls.field_specs() if s.name == name), None) if cls is not None else None


def parse_sets(
    sets: Iterable[str], dataset: str | None, methods: Sequence[str]
) -> tuple[tuple[tuple[str, tuple[str, ...] | Range], ...], tuple[str, ...]]:
    """Split sweep ``--set`` strings into swept params (several values or a range) and fixed settings."""
    params, fixed = [], []
    for item in sets:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key or "." not in key:
            raise ConfigError(
                f"A sweep --set must look like section.key=values (e.g. optim.lr=0.01,0.1). Got {item!r} instead."
            )
        spec = next((f for f in (_field(key, dataset, m) for m in methods) if f is not None), None)
        list_field = spec is not None and spec.type is tuple
        values = parse_values(key, text, list_field)
        if isinstance(values, tuple) and len(values) == 1:
            fixed.append(f"{key}={values[0]}")
        else:
            params.append((key, values))
    keys = [k for k, _ in params]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"A sweep --set key is given twice: {sorted(k for k in keys if keys.count(k) > 1)[0]!r}.")
    return tuple(params), tuple(fixed)


def _render(value: float, spec: Any) -> str:
    if spec is not None and spec.type is int:
        return str(int(round(value)))
    return f"{value:.6g}"


def plan_trials(spec: SweepSpec) -> list[Trial]:
    """The trials of ``spec``: every combination (grid) or ``samples`` random draws, each once per seed."""
    if spec.mode not in MODES:
        raise ConfigError(f"Unknown sweep mode {spec.mode!r}. Valid: {', '.join(MODES)}.")
    if not spec.methods:
        raise ConfigError("A sweep needs at least one method.")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds):
        raise ConfigError(f"A sweep needs distinct seeds. Got {list(spec.seeds)!r} instead.")
    configs: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    if spec.mode == "grid":
        axes = []
        for key, values in spec.params:
            if isinstance(values, Range):
                if values.points is None:
                    raise ConfigError(
                        f"A grid needs a number of points for the range of {key!r}: add ':N', e.g. "
                        f"{key}={values.low:g}..{values.high:g}:3 (or use --random)."
                    )
                field = _field(key, spec.dataset, spec.methods[0])
                axes.append([(key, _render(v, field)) for v in values.grid()])
            else:
                axes.append([(key, v) for v in values])
        for method in spec.methods:
            configs.extend((method, tuple(combo)) for combo in itertools.product(*axes))
    else:
        if spec.samples < 1:
            raise ConfigError(f"A random sweep needs --random N with N >= 1. Got {spec.samples!r} instead.")
        rng = random.Random(spec.sample_seed)
        for _ in range(spec.samples):
            method = rng.choice(list(spec.methods))
            values = []
            for key, choice in spec.params:
                if isinstance(choice, Range):
                    values.append((key, _render(choice.sample(rng), _field(key, spec.dataset, method))))
                else:
                    values.append((key, rng.choice(list(choice))))
            configs.append((method, tuple(values)))
    trials = [Trial(m, v, s) for m, v in configs for s in spec.seeds]
    if len(trials) > MAX_TRIALS:
        raise ConfigError(f"The sweep has {len(trials)} trials; at most {MAX_TRIALS} are allowed. Sweep fewer values.")
    return trials


def build_trials(spec: SweepSpec) -> list[tuple[Trial, Any, Any]]:
    """``[(trial, RunConfig, dataset), ...]``: every trial built and validated; the first bad one raises
    ``ConfigError`` naming the setting and the trial, before anything is created."""
    from mmviz.training.build import check_run_config, resolve_device
    from mmviz.training.config import build_run_config

    out = []
    datasets: dict[str, Any] = {}
    for trial in plan_trials(spec):
        sets = [*spec.fixed, *(f"{k}={v}" for k, v in trial.values)]
        try:
            cfg = build_run_config(
                spec.dataset, trial.method, sets, epochs=spec.epochs, seed=trial.seed, base=spec.base
            )
            resolve_device(cfg.train.device)
            key = json.dumps([cfg.dataset, cfg.to_dict()["data"]], sort_keys=True, default=str)
            datasets[key] = check_run_config(cfg, datasets.get(key))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (sweep trial {trial.describe()}; nothing was started)") from exc
        out.append((trial, cfg, datasets[key]))
    return out


def sweep_tag(sweep_id: str) -> str:
    """The tag every trial of the sweep carries."""
    return TAG_PREFIX + sweep_id


def start_sweep(
    store: Any,
    spec: SweepSpec,
    *,
    name: str = "",
    backend: str | Callable[[Any, str], Any] | None = "local",
    tags: Iterable[str] = (),
    max_parallel: int | None = None,
) -> tuple[str, list[str]]:
    """Validate every trial, then queue them all; returns ``(sweep_id, run_ids)`` in trial order.

    ``backend``: a backend name (the trials are queued for it), or as for :func:`mmviz.launcher.submit` a
    callable that starts each trial or None to only create them. ``max_parallel`` (already checked) becomes the
    workspace's number of runs at once, once all trials are valid.
    """
    from mmviz.launcher import check_backend, schedule, submit
    from mmviz.store.queue import MAX_PARALLEL

    queue = isinstance(backend, str)
    if queue:
        check_backend(backend)
    built = build_trials(spec)
    if max_parallel is not None:
        store.set_setting(MAX_PARALLEL, max_parallel)
    sweep_id = new_run_id()
    label = name or f"sweep-{sweep_id.rsplit('-', 1)[-1]}"  # unnamed sweeps' trials are told apart in the Runs table
    run_tags = [SWEEP_TAG, sweep_tag(sweep_id), *tags]
    run_ids = []
    for i, (_, cfg, data) in enumerate(built, 1):
        run_ids.append(
            submit(
                store,
                cfg,
                name=f"{label}-{i:03d}",
                tags=run_tags,
                data=data,
                backend=backend,
                queue=queue,
                schedule_now=False,
            )
        )
    if queue:
        schedule(store)
    return sweep_id, run_ids


def sweep_ids_of(tags: Iterable[str] | None) -> list[str]:
    """The sweep ids in a run's tags."""
    return [t[len(TAG_PREFIX) :] for t in (tags or []) if isinstance(t, str) and t.startswith(TAG_PREFIX)]
