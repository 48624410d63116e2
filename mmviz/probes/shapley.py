"""Each modality's exact Shapley contribution to val accuracy, by zero-masking modality subsets."""

from __future__ import annotations

from typing import Any

import torch

from mmviz.contracts import StepInfo, TrainContext
from mmviz.measures import (
    coalitions,
    compute_coalition_accuracies,
    compute_coalition_logits,
    compute_shapley,
    eval_mode,
)
from mmviz.measures.record import RECORD_NAMES, coalition_name
from mmviz.probes.base import AnalysisProbe
from mmviz.probes.common import autocast_factory, extract_split_features
from mmviz.probes.configs import ShapleyConfig

SPOT_CHECK = 8  # val samples re-encoded to check that the evaluation's features are the model's own


@torch.no_grad()
def model_features(ctx: TrainContext, evaluation: Any = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The model's own encoder features of the unmodified val inputs ``{m: (N, D_m)}`` and the labels ``(N,)``.

    Reuses the features of the loop's val evaluation when it was the model's own forward, or when re-encoding the
    first few val samples gives the same features (the balancing method's evaluation forward did not alter the
    inputs); otherwise runs the encoders.
    """
    if evaluation is not None and len(evaluation.labels) == len(ctx.splits["val"]):
        if evaluation.model_forward:
            return evaluation.features, evaluation.labels
        batch = ctx.splits["val"].subset(range(min(SPOT_CHECK, len(evaluation.labels))))
        with eval_mode(ctx.model), autocast_factory(ctx)():
            z = ctx.model.encode(batch)
        if all(
            torch.allclose(z[m].float().cpu(), evaluation.features[m][: len(z[m])], rtol=1e-4, atol=1e-6)
            for m in ctx.modalities
        ):
            return evaluation.features, evaluation.labels
    return extract_split_features(ctx, "val")


def compute_subset_accuracies(
    model: torch.nn.Module,
    features: dict[str, torch.Tensor],
    labels: torch.Tensor,
    input_shapes: dict[str, tuple[int, ...]],
    autocast=None,
) -> dict[frozenset[str], float]:
    """Accuracy of the fusion head for every subset S of kept modalities, the others' inputs zeroed
    (:func:`mmviz.measures.compute_coalition_logits`, then :func:`mmviz.measures.compute_coalition_accuracies`)."""
    logits = compute_coalition_logits(model, features, input_shapes, autocast=autocast)
    return compute_coalition_accuracies(logits, labels)


def coalition_arrays(ctx: TrainContext, evaluation: Any, record: dict) -> dict[str, Any]:
    """The record arrays Shapley values need: val labels and every coalition's masked fused logits (one pass of
    the fusion head per coalition; the coalition of all modalities is the evaluation's own logits when the
    evaluation was the model's forward; reused when another probe measured them this epoch)."""
    mods = ctx.modalities
    names = {s: coalition_name(s) for s in coalitions(mods)}
    if all(n in record for n in names.values()):
        return {}
    features, labels = model_features(ctx, evaluation)
    own = evaluation is not None and evaluation.model_forward and features is evaluation.features
    logits = compute_coalition_logits(
        ctx.model, features, ctx.input_shapes, autocast=autocast_factory(ctx), full=evaluation.logits if own else None
    )
    return {RECORD_NAMES["label"]: labels, **{names[s]: lg for s, lg in logits.items()}}


def record_shapley(meta: dict[str, Any], arrays: dict[str, Any]) -> dict[str, float]:
    """The Shapley values on val accuracy from a record's masked logits."""
    mods = meta["modalities"]
    labels = torch.as_tensor(arrays[RECORD_NAMES["label"]])
    logits = {s: torch.as_tensor(arrays[coalition_name(s)]) for s in coalitions(mods)}
    return compute_shapley(compute_coalition_accuracies(logits, labels), mods)


class ShapleyProbe(AnalysisProbe):
    """Exact Shapley value of each modality's contribution to val accuracy (per epoch).

    As BalanceBenchmark's imbalance measure (arXiv 2502.10816) and AGM's mono-modal contributions (Li et al., ICCV
    2023): ``Acc(S)`` is the val accuracy of the trained model's own forward (eval mode, whatever the balancing
    method) when the inputs of the modalities outside ``S`` are zeroed, ``Acc(empty)`` masks them all, and
    ``phi_m = sum_S |S|! (n - |S| - 1)! / n! [Acc(S + m) - Acc(S)]`` over the subsets ``S`` without ``m`` (2^M
    subsets, exact for 2 and 3 modalities). The values add up to ``Acc(all) - Acc(empty)``. Caveat: a zeroed
    input is not "no information" for every encoder (BatchNorm networks still produce a feature). The trainer
    stores each coalition's masked logits (about one evaluation pass; the loop's val features are reused when
    they are the model's own, and then its logits are those of all modalities, so ``Acc(all)`` is the logged val
    accuracy) and the accuracies and values are computed from them. Default: every epoch.
    """

    config_cls = ShapleyConfig
    order = 10

    def measure(self, epoch: int, info: StepInfo, evaluation: Any, record: dict) -> dict[str, Any]:
        return coalition_arrays(self.ctx, evaluation, record)

    def analyse(self, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[str, float]]:
        return [(f"val/shapley/{m}", value) for m, value in record_shapley(meta, arrays).items()]
