"""Per-modality accuracy inside the jointly trained model: nearest class mean and a linear probe."""

from __future__ import annotations

from typing import Any

from mmviz.contracts import StepInfo
from mmviz.measures import compute_linear_probe_accuracy, compute_ncm_accuracy, concat_features
from mmviz.probes.base import Probe
from mmviz.probes.common import train_features
from mmviz.probes.configs import UnimodalAccConfig


class UnimodalAccProbe(Probe):
    """Each modality's val accuracy measured on its frozen features, two ways (METHODS.md §1.4, items 5 and 6).

    ``val/acc_ncm/<m>``: nearest-class-mean classifier, as PMR's prototype accuracy (Fan et al., CVPR 2023), on
    the val features alone and leave-one-out — each val sample goes to the closest class mean, its own class's
    mean computed without it — so no extra pass over the train split is needed. ``val/acc_probe/<m>`` and
    ``val/acc_probe/fused``: a logistic-regression linear probe (scikit-learn, lbfgs, standardised features, fixed
    seed) fitted on frozen features of a fixed stratified train subset (one no-grad eval-mode pass) and scored on
    val — how much class information the encoder holds, whether or not the fusion head uses it (the OGM-GE
    linear-probe figure; the fused probe uses the concatenated features). The probe is the costly part (~20 ms a
    fit): ``probe_every`` = N (default 5; 0 = never) fits it at epochs divisible by N and at the last epoch. The
    head-split accuracy ``val/acc/<m>`` is logged by the training loop itself where the fusion allows it. These
    measures disagree substantially; the key says which. Default: every epoch (the fitted probe: see ``probe_every``).
    """

    config_cls = UnimodalAccConfig

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: Any) -> None:
        ctx, cfg = self.ctx, self.config
        labels = evaluation.labels
        for m in ctx.modalities:
            self.log(f"val/acc_ncm/{m}", compute_ncm_accuracy(evaluation.features[m], labels, ctx.num_classes))
        if cfg.probe_every == 0 or (epoch % cfg.probe_every != 0 and epoch != info.total_epochs):
            return
        train_x, train_y = train_features(ctx, cfg.probe_train_samples)
        pairs = {m: (train_x[m], evaluation.features[m]) for m in ctx.modalities}
        pairs["fused"] = (
            concat_features(train_x, ctx.modalities),
            concat_features(evaluation.features, ctx.modalities),
        )
        for key, (xtr, xval) in pairs.items():
            acc = compute_linear_probe_accuracy(xtr, train_y, xval, labels, c=cfg.probe_c, max_iter=cfg.probe_max_iter)
            self.log(f"val/acc_probe/{key}", acc)
