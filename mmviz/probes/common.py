"""What several probes share: encoder parameter groups, split feature passes and per-epoch caches.

Epoch probes run one after the other on the same weights (after the loop's val evaluation, before the
method's ``on_epoch_end``), so values that several of them need — train-split features, the Shapley values —
are computed once per epoch and kept in ``ctx.probe_cache``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mmviz.contracts import TrainContext
from mmviz.data.base import stratified_subset
from mmviz.measures import extract_features
from mmviz.measures.record import RECORD_NAMES


def encoder_groups(ctx: TrainContext) -> dict[str, list[nn.Parameter]]:
    """Each modality's encoder parameters, in modality order."""
    return {m: list(ctx.model.encoder_parameters(m)) for m in ctx.modalities}


def autocast_factory(ctx: TrainContext):
    """The run's autocast context factory (a no-op context on the CPU)."""
    return ctx.autocast


def epoch_cache(ctx: TrainContext) -> dict[Any, Any]:
    """A dict shared by all probes for the current epoch; emptied when the epoch (or step) changes."""
    info = ctx.step() if ctx.step is not None else None
    return ctx.probe_cache.current((info.epoch, info.step) if info is not None else None)


def eval_batch_size(ctx: TrainContext) -> int:
    """The run's evaluation batch size."""
    return ctx.eval_batch_size


def extract_split_features(
    ctx: TrainContext, split: str, positions: np.ndarray | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoder features ``{m: (N, D_m)}`` and labels ``(N,)`` of a split (or of some positions in it), on the CPU.

    Uses the model's own encoders on the unmodified inputs (no balancing-method transform) in eval mode, walks the
    samples in order (no random state) and restores every module's train/eval flag
    (:func:`mmviz.measures.extract_features`).
    """
    data = ctx.splits[split]
    positions = np.arange(len(data)) if positions is None else np.asarray(positions)
    bs = eval_batch_size(ctx)
    batches = (data.subset(positions[start : start + bs]) for start in range(0, len(positions), bs))
    return extract_features(ctx.model, batches, ctx.modalities, autocast=autocast_factory(ctx))


def train_features(ctx: TrainContext, size: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Features of a fixed stratified subset (at most ``size`` samples) of the train split, once per epoch."""
    cache = epoch_cache(ctx)
    key = ("train_features", size)
    if key not in cache:
        labels = ctx.splits["train"].labels.cpu().numpy()
        positions = stratified_subset(np.arange(len(labels)), labels, size, seed=0)
        cache[key] = extract_split_features(ctx, "train", positions)
    return cache[key]


def val_arrays(ctx: TrainContext, evaluation: Any) -> dict[str, Any]:
    """The record arrays of the loop's val evaluation: labels and each modality's features (CPU tensors)."""
    out: dict[str, Any] = {RECORD_NAMES["label"]: evaluation.labels}
    for m in ctx.modalities:
        out[RECORD_NAMES["features"].format(m=m)] = evaluation.features[m]
    return out


def record_features(meta: dict[str, Any], arrays: dict[str, Any], train: bool = False) -> tuple[dict, Any]:
    """``({m: (N, D_m) tensor}, labels (N,))`` of a record: val, or the train subset with ``train``."""
    f, y = ("train_features", "train_label") if train else ("features", "label")
    feats = {m: torch.as_tensor(arrays[RECORD_NAMES[f].format(m=m)]) for m in meta["modalities"]}
    return feats, torch.as_tensor(arrays[RECORD_NAMES[y]])
