"""Evaluation passes: fused and per-modality accuracy and loss, plus the features probes reuse."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmviz.balancing.base import BalancingMethod
from mmviz.contracts import DataSplit, EvalResult, Predict

__all__ = ["EvalResult", "evaluate"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, predict: Predict, split: DataSplit, batch_size: int, autocast=None) -> EvalResult:
    """Run ``predict(model, batch)`` over ``split`` in eval mode and restore the previous train/eval mode.

    Args:
        model: the multimodal network.
        predict: ``(model, batch) -> ModelOutput`` (the balancing method's evaluation forward).
        split: the split to evaluate.
        batch_size: evaluation batch size.
        autocast: optional context-manager factory for mixed precision.
    """
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {}
    uni: dict[str, list[torch.Tensor]] = {}
    logits, labels, index = [], [], []
    try:
        for batch in split.batches(batch_size):
            if autocast is not None:
                with autocast():
                    out = predict(model, batch)
            else:
                out = predict(model, batch)
            logits.append(out.logits)
            labels.append(batch["label"])
            index.append(batch["index"])
            for m, z in out.features.items():
                feats.setdefault(m, []).append(z)
            for m, o in out.unimodal_logits.items():
                if o is not None:
                    uni.setdefault(m, []).append(o)
    finally:
        model.train(was_training)
    lg = _join(logits, float_=True)
    y = _join(labels)
    uni_t = {m: _join(v, float_=True) for m, v in uni.items()}
    return EvalResult(
        loss=float(F.cross_entropy(lg, y)),
        acc=float((lg.argmax(1) == y).float().mean()),
        acc_uni={m: float((o.argmax(1) == y).float().mean()) for m, o in uni_t.items()},
        features={m: _join(v, float_=True) for m, v in feats.items()},
        logits=lg,
        unimodal_logits=uni_t,
        labels=y,
        index=_join(index),
        model_forward=getattr(predict, "__func__", None) is BalancingMethod.predict,
    )


def _join(parts: list[torch.Tensor], float_: bool = False) -> torch.Tensor:
    """Concatenate per-batch results into one CPU tensor (float32 when ``float_``), skipping no-op copies.

    A small split is a single evaluation batch, and each avoided no-op dispatch counts on a 30 ms epoch.
    """
    t = parts[0] if len(parts) == 1 else torch.cat(parts)
    if not t.is_cpu:
        t = t.cpu()
    if float_ and t.dtype != torch.float32:
        t = t.float()
    return t
