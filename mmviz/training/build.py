"""Builders turning a RunConfig into a dataset, model, method, probes, optimiser and scheduler."""

from __future__ import annotations

import torch

from mmviz.balancing import METHODS, create_method
from mmviz.balancing.base import check_requirements
from mmviz.contracts import CAPABILITIES, ModelSpec, MultimodalModel
from mmviz.data import create_dataset
from mmviz.data.base import MultimodalData
from mmviz.errors import ConfigError
from mmviz.probes import PROBES
from mmviz.training.config import ModelConfig, OptimConfig, RunConfig
from models import ENCODERS, FUSIONS, MultimodalNet
from models.catalog import fusion_capabilities, fusions_with  # noqa: F401  (re-exported)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "The 'device' parameter of TrainConfig is 'cuda', but no CUDA GPU is available. Use 'auto' or 'cpu'."
        )
    return torch.device(name)


def build_model(cfg: ModelConfig, data: MultimodalData) -> MultimodalNet:
    """The multimodal network for ``data`` (call :func:`check_run_config` first for clear errors)."""
    return MultimodalNet(
        [(s.name, s.kind, s.shape) for s in data.modalities],
        data.num_classes,
        encoders={s.name: cfg.encoder for s in data.modalities},
        feature_dim=cfg.feature_dim,
        hidden_dim=cfg.hidden_dim,
        fusion=cfg.fusion,
    )


def feature_dims(cfg: ModelConfig, data: MultimodalData) -> dict[str, int]:
    """Each encoder's output size without building the model."""
    return {s.name: 512 if cfg.encoder == "resnet18" else cfg.feature_dim for s in data.modalities}


def model_spec(cfg: ModelConfig, data: MultimodalData) -> ModelSpec:
    """What the compatibility checks know of the network ``cfg`` builds for ``data``, without building it."""
    hints = {}
    for cap in CAPABILITIES:
        ok = fusions_with({cap})
        if ok:
            hints[cap] = f"Use {' or '.join(map(repr, ok))} (model.fusion)."
    return ModelSpec(
        modalities=tuple(data.modality_names),
        capabilities=fusion_capabilities(cfg.fusion),
        feature_dims=feature_dims(cfg, data),
        label=f"fusion {cfg.fusion!r}",
        hints=hints,
    )


def check_run_config(cfg: RunConfig, data: MultimodalData | None = None, model: MultimodalModel | None = None):
    """Every check that needs the dataset: fusion fits, method requirements hold. Returns the dataset.

    With a user's ``model`` (through the contract; a :class:`mmviz.adapter.ModelAdapter` that has seen a batch),
    the method and probes are checked against its declared capabilities instead of ``cfg.model``.
    """
    data = data if data is not None else create_dataset(cfg.dataset, cfg.data)
    if model is not None:
        if not isinstance(model, MultimodalModel):
            raise ConfigError(
                f"fit(model=...) takes a model implementing mmviz.contracts.MultimodalModel, got "
                f"{type(model).__name__}; wrap it with mmviz.adapter.ModelAdapter(model, encoders=...)."
            )
        if tuple(model.modalities) != tuple(data.modality_names):
            raise ConfigError(
                f"The model's modalities ({', '.join(model.modalities)}) are not the data's "
                f"({', '.join(data.modality_names)}); name the encoders in the data's modality order."
            )
        spec = ModelSpec.of(model)
        METHODS.get(cfg.method).factory.check_compatible(cfg.method_params, spec)
        check_probes(cfg.probes, spec)
        return data
    fusion_cls = FUSIONS[cfg.model.fusion][0]
    if cfg.model.fusion == "shared_head" and len(set(feature_dims(cfg.model, data).values())) != 1:
        raise ConfigError("Fusion 'shared_head' needs equal feature sizes per modality; use one encoder type for all.")
    n = len(data.modalities)
    if not fusion_cls.min_modalities <= n <= fusion_cls.max_modalities:
        ok = [k for k, (c, _) in FUSIONS.items() if c.min_modalities <= n <= c.max_modalities]
        raise ConfigError(
            f"Fusion {cfg.model.fusion!r} works with {fusion_cls.max_modalities} modalities, but the "
            f"dataset gives {n} ({', '.join(data.modality_names)}). Use {' or '.join(map(repr, ok))}."
        )
    if cfg.model.encoder != "auto":
        for spec in data.modalities:
            if spec.kind not in ENCODERS[cfg.model.encoder][1]:
                raise ConfigError(
                    f"The 'encoder' parameter of ModelConfig is {cfg.model.encoder!r}, which does not take {spec.kind!r} "
                    f"inputs (modality {spec.name!r}). Use 'auto' or one of "
                    f"{', '.join(repr(k) for k, v in ENCODERS.items() if spec.kind in v[1])}."
                )
    spec = model_spec(cfg.model, data)
    METHODS.get(cfg.method).factory.check_compatible(cfg.method_params, spec)
    check_probes(cfg.probes, spec)
    return data


def check_probes(configs: dict, model: ModelSpec) -> None:
    """Refuse (one sentence) an enabled probe that needs a capability ``model`` lacks."""
    for name, pcfg in configs.items():
        if getattr(pcfg, "enabled", True):
            check_requirements("Probe", name, PROBES.get(name).factory.requires, model)


def build_optimizer(cfg: OptimConfig, groups: list[list[torch.nn.Parameter]]) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over parameter groups (group 0 = the model, then the method's extra modules)."""
    param_groups = [{"params": g} for g in groups if g]
    if cfg.name == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: OptimConfig, optimizer: torch.optim.Optimizer, epochs: int):
    """The per-epoch learning-rate schedule, or None."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None


def build_method(cfg: RunConfig):
    """The balancing method instance for ``cfg``."""
    return create_method(cfg.method, cfg.method_params)
