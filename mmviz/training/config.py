"""The run configuration: dataset, model, optimiser, training loop, balancing method and probes.

``--set section.key=value`` (CLI) and the dashboard's forms both end up in :func:`build_run_config`, which
validates every value before anything is started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from mmviz.config import Config, param
from mmviz.errors import ConfigError, did_you_mean
from mmviz.recipes import resolve_recipe
from models.catalog import ENCODER_NAMES, FUSION_NAMES

SECTIONS = ("data", "model", "optim", "train", "method", "probes")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Config):
    """Encoders and fusion of the multimodal network."""

    fusion: str = param("concat", "How per-modality features are combined into the fused logits.", choices=FUSION_NAMES)
    encoder: str = param(
        "auto",
        "Encoder for every modality ('auto' picks MLP / 2-D CNN / 1-D CNN by modality kind).",
        choices=("auto", *ENCODER_NAMES),
    )
    feature_dim: int = param(
        128, "Size of each modality's pooled feature (ResNet18 always gives 512).", low=2, high=4096
    )
    hidden_dim: int = param(256, "Hidden width of the encoders.", low=2, high=8192)


@dataclasses.dataclass(frozen=True)
class OptimConfig(Config):
    """Optimiser and learning-rate schedule."""

    name: str = param("adam", "Optimiser.", choices=("sgd", "adam", "adamw"))
    lr: float = param(1e-3, "Learning rate.", low=0.0, low_open=True, high=10.0, log=True)
    momentum: float = param(0.9, "SGD momentum.", low=0.0, high=1.0, when={"name": ("sgd",)})
    weight_decay: float = param(0.0, "Weight decay.", low=0.0, high=1.0)
    schedule: str = param("none", "Learning-rate schedule.", choices=("none", "step", "cosine"))
    step_size: int = param(
        10, "Epochs between decays of the step schedule.", low=1, high=10000, when={"schedule": ("step",)}
    )
    gamma: float = param(
        0.1, "Decay factor of the step schedule.", low=0.0, low_open=True, high=1.0, when={"schedule": ("step",)}
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """The training loop."""

    epochs: int = param(30, "Number of epochs.", low=1, high=100000)
    batch_size: int = param(64, "Mini-batch size.", low=1, high=65536, log=True)
    seed: int = param(
        0, "Seed of initialisation and shuffling (training is deterministic on CPU).", low=0, high=2**31 - 1
    )
    device: str = param("auto", "'auto' uses CUDA when present, else the CPU.", choices=("auto", "cpu", "cuda"))
    amp: bool = param(True, "Mixed precision (bfloat16) on CUDA; ignored on the CPU.")
    eval_batch_size: int = param(512, "Batch size for evaluation passes.", low=1, high=65536)
    threads: int = param(
        0,
        "CPU threads for torch (0 = torch's default, less one core for the analysis process beside CPU training).",
        low=0,
        high=256,
    )
    analysis: str = param(
        "process",
        "Where the epoch diagnostics that need only measured arrays (purity, silhouette, prototypes, probes, "
        "Shapley, imbalance) are computed: a separate analysis process that never holds up training, or inline "
        "in the trainer between epochs.",
        choices=("process", "inline"),
    )
    checkpoint_every: int = param(
        1,
        "Write a checkpoint every N epochs (and at the last): forks can start from those epochs only. Each "
        "costs ~1 ms per 2 MB of model and optimiser state; raise N when epochs are very short.",
        low=1,
        high=100000,
    )


def _section_config(section: str, cls: type[Config], values: Mapping[str, Any]) -> Config:
    return cls.from_dict(values, where=section)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``to_dict`` / ``from_dict`` are how it enters and leaves the store."""

    dataset: str
    method: str
    data: Config
    model: ModelConfig
    optim: OptimConfig
    train: TrainConfig
    method_params: Config
    probes: dict[str, Config]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "dataset": self.dataset,
            "method": self.method,
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "optim": self.optim.to_dict(),
            "train": self.train.to_dict(),
            "method_params": self.method_params.to_dict(),
            "probes": {k: v.to_dict() for k, v in self.probes.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Rebuild (and re-validate) a stored config."""
        from mmviz.balancing import METHODS
        from mmviz.data import DATASETS
        from mmviz.probes import PROBES

        known = {"dataset", "method", "data", "model", "optim", "train", "method_params", "probes"}
        for key in d:
            if key not in known:
                raise ConfigError(
                    f"Unknown run config section {key!r}.{did_you_mean(key, known)} Valid: {', '.join(sorted(known))}."
                )
        ds = DATASETS.get(d["dataset"])
        me = METHODS.get(d["method"])
        probes = {}
        for name, values in (d.get("probes") or {}).items():
            probes[name] = PROBES.get(name).config_cls.from_dict(values, where=f"probes.{name}")
        for entry in PROBES:
            probes.setdefault(entry.name, entry.config_cls())
        return cls(
            dataset=ds.name,
            method=me.name,
            data=_section_config("data", ds.config_cls, d.get("data") or {}),
            model=_section_config("model", ModelConfig, d.get("model") or {}),
            optim=_section_config("optim", OptimConfig, d.get("optim") or {}),
            train=_section_config("train", TrainConfig, d.get("train") or {}),
            method_params=_section_config("method", me.config_cls, d.get("method_params") or {}),
            probes=dict(sorted(probes.items())),
        )


def parse_sets(sets: Iterable[str]) -> dict[str, Any]:
    """Parse ``section.key=value`` strings into a nested dict (probes use ``probes.<name>.<key>``)."""
    out: dict[str, Any] = {}
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(
                f"A --set value must look like section.key=value (e.g. optim.lr=0.01). Got {item!r} instead."
            )
        section, dot, rest = key.partition(".")
        if section not in SECTIONS or not dot or not rest:
            raise ConfigError(
                f"Unknown --set key {key!r}.{did_you_mean(section, SECTIONS)} Keys start with one of "
                f"{', '.join(s + '.' for s in SECTIONS)} (run 'python -m mmviz methods' or 'datasets' for the fields)."
            )
        if section == "probes":
            probe, dot2, field = rest.partition(".")
            if not dot2 or not field:
                raise ConfigError(
                    f"A probes --set key must look like probes.<name>.<field>=value. Got {key!r} instead."
                )
            out.setdefault("probes", {}).setdefault(probe, {})[field] = value
        else:
            out.setdefault(section, {})[rest] = value
    return out


def build_run_config(
    dataset: str | None = None,
    method: str | None = None,
    sets: Iterable[str] = (),
    *,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    base: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build and validate a run config from names, ``--set`` strings and an optional base config dict.

    With ``base`` (a stored config, for restart and fork), its values are kept unless changed; a changed
    dataset or method starts from that dataset's / method's defaults. ``overrides`` is a nested dict with
    the same sections as ``--set`` (what the dashboard's forms produce). The method's ``recipe`` setting is
    resolved here (:func:`mmviz.recipes.resolve_recipe`): the returned config holds the values it implies,
    except for fields set explicitly in this call.
    """
    from mmviz.balancing import METHODS
    from mmviz.data import DATASETS

    base = dict(base or {})
    for kind, name in (("dataset", dataset), ("method", method)):
        if name is not None and not str(name).strip():  # '' must not silently mean "the default"
            registry = DATASETS if kind == "dataset" else METHODS
            raise ConfigError(
                f"The {kind} name is empty; leave --{kind} out for the default or pick one of: "
                f"{', '.join(sorted(e.name for e in registry))}."
            )
    ds_name = dataset or base.get("dataset") or "mfeat"
    me_name = method or base.get("method") or "baseline"
    DATASETS.get(ds_name)
    METHODS.get(me_name)
    d: dict[str, Any] = {
        "dataset": ds_name,
        "method": me_name,
        "data": dict(base.get("data") or {}) if base.get("dataset") == ds_name else {},
        "model": dict(base.get("model") or {}),
        "optim": dict(base.get("optim") or {}),
        "train": dict(base.get("train") or {}),
        "method_params": dict(base.get("method_params") or {}) if base.get("method") == me_name else {},
        "probes": {k: dict(v) for k, v in (base.get("probes") or {}).items()},
    }
    changes = parse_sets(sets)
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise ConfigError(
                f"Unknown config section {section!r}.{did_you_mean(section, SECTIONS)} Valid: {', '.join(SECTIONS)}."
            )
        if section == "probes":
            for probe, fields in values.items():
                changes.setdefault("probes", {}).setdefault(probe, {}).update(fields)
        else:
            changes.setdefault(section, {}).update(values)
    for section, values in changes.items():
        if section == "probes":
            for probe, fields in values.items():
                d["probes"].setdefault(probe, {}).update(fields)
        else:
            d["method_params" if section == "method" else section].update(values)
    explicit = {section: dict(values) for section, values in changes.items() if section != "probes"}
    if epochs is not None:
        explicit.setdefault("train", {})["epochs"] = epochs
    resolve_recipe(d, explicit, base)
    if epochs is not None:
        d["train"]["epochs"] = epochs
    if seed is not None:
        d["train"]["seed"] = seed
    if device is not None:
        d["train"]["device"] = device
    return RunConfig.from_dict(d)
