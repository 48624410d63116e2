"""Per-modality accuracy inside the jointly trained model: nearest class mean and a linear probe."""

from __future__ import annotations

from typing import Any

from mmviz.contracts import StepInfo
from mmviz.measures import compute_linear_probe_accuracy, compute_ncm_accuracy, concat_features
from mmviz.measures.record import RECORD_NAMES
from mmviz.probes.base import AnalysisProbe
from mmviz.probes.common import record_features, train_features, val_arrays
from mmviz.probes.configs import UnimodalAccConfig


class UnimodalAccProbe(AnalysisProbe):
    """Each modality's val accuracy measured on its frozen features, two ways (METHODS.md §1.4, items 5 and 6).

    ``val/acc_ncm/<m>``: nearest-class-mean classifier, as PMR's prototype accuracy (Fan et al., CVPR 2023), on
    the val features alone and leave-one-out — each val sample goes to the closest class mean, its own class's
    mean computed without it — so no extra pass over the train split is needed. ``val/acc_probe/<m>`` and
    ``val/acc_probe/fused``: a logistic-regression linear probe (scikit-learn's model fitted by L-BFGS in numpy,
    standardised features) fitted on frozen features of a fixed stratified train subset (one no-grad eval-mode pass) and scored on
    val — how much class information the encoder holds, whether or not the fusion head uses it (the OGM-GE
    linear-probe figure; the fused probe uses the concatenated features). The probe is the costly part (~20 ms a
    fit): ``probe_every`` = N (default 5; 0 = never) fits it at epochs divisible by N and at the last epoch. The
    head-split accuracy ``val/acc/<m>`` is logged by the training loop itself where the fusion allows it. These
    measures disagree substantially; the key says which. Default: every epoch (the fitted probe: see ``probe_every``).
    """

    config_cls = UnimodalAccConfig

    def measure(self, epoch: int, info: StepInfo, evaluation: Any, record: dict) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.config
        arrays = val_arrays(ctx, evaluation)
        if cfg.probe_every == 0 or (epoch % cfg.probe_every != 0 and epoch != info.total_epochs):
            return arrays
        train_x, train_y = train_features(ctx, cfg.probe_train_samples)  # needs the live model
        arrays[RECORD_NAMES["train_label"]] = train_y
        for m in ctx.modalities:
            arrays[RECORD_NAMES["train_features"].format(m=m)] = train_x[m]
        return arrays

    def analyse(self, meta: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[str, float]]:
        cfg = self.config
        mods = meta["modalities"]
        feats, labels = record_features(meta, arrays)
        rows = [(f"val/acc_ncm/{m}", compute_ncm_accuracy(feats[m], labels, meta["num_classes"])) for m in mods]
        if RECORD_NAMES["train_label"] not in arrays:
            return rows
        train_x, train_y = record_features(meta, arrays, train=True)
        pairs = {m: (train_x[m], feats[m]) for m in mods}
        pairs["fused"] = (concat_features(train_x, mods), concat_features(feats, mods))
        for key, (xtr, xval) in pairs.items():
            acc = compute_linear_probe_accuracy(xtr, train_y, xval, labels, c=cfg.probe_c, max_iter=cfg.probe_max_iter)
            rows.append((f"val/acc_probe/{key}", acc))
        return rows
