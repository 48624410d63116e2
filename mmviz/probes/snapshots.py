"""Per-epoch snapshots of a fixed probe set's features, for the embeddings page."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmviz.contracts import StepInfo
from mmviz.measures import compute_ncm_loo_predictions, concat_features
from mmviz.measures.record import SNAPSHOT_KIND, SNAPSHOT_NAMES, compact_float, save_npz, snapshot_path
from mmviz.probes.base import Probe
from mmviz.probes.configs import SnapshotConfig


def _dropped(source: Any, index: np.ndarray) -> dict[str, np.ndarray]:
    """The context's optional ``dropped_mask`` (published by a method), looked up at absolute sample indices.

    It may be a callable ``index -> array``, an array indexed by absolute sample index, or a dict of such arrays
    per modality.
    """
    if source is None:
        return {}

    def as_array(a: Any) -> np.ndarray:
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    def pick(s: Any) -> np.ndarray:
        return as_array(s(index) if callable(s) else as_array(s)[index]).astype(bool)

    if isinstance(source, dict):
        return {SNAPSHOT_NAMES["dropped_view"].format(v=m): pick(s) for m, s in source.items()}
    return {SNAPSHOT_NAMES["dropped"]: pick(source)}


class SnapshotProbe(Probe):
    """Features of a fixed, stratified probe set of val samples, per modality and fused (per epoch, to a file).

    The probe set is the dataset's ``probe_index`` (up to ``data.probe_size`` val samples, the same absolute
    indices every time), so the embeddings page can align projections across epochs. Each snapshot is
    ``snapshots/epoch_XXXX.npz`` in the run folder (float16 arrays, float32 features where a value is beyond
    float16's range; written atomically; the file format is
    defined once, in :mod:`mmviz.measures.record`), recorded in the store as a
    ``snapshot`` artifact. Arrays: ``index`` (absolute sample indices), ``label``, ``features_<m>`` and
    ``features_fused`` (the per-modality features concatenated in modality order), ``pred_<m>`` (head-split
    argmax where the fusion allows it, else the leave-one-out nearest val class mean; the artifact's meta says
    which), ``pred_fused`` and ``conf_fused`` (max softmax of the fused logits), plus ``dropped`` / ``dropped_<m>``
    when the balancing method publishes which samples had a modality dropped (``ctx.dropped_mask``).
    Nothing is written for runs without a run folder. Default: every epoch.
    """

    config_cls = SnapshotConfig
    order = 30

    def on_epoch_end(self, epoch: int, info: StepInfo, evaluation: Any) -> None:
        ctx = self.ctx
        if ctx.run_dir is None:
            return
        index = evaluation.index.numpy()
        keep = np.flatnonzero(np.isin(index, ctx.probe_index))
        sel = torch.as_tensor(keep)
        feats = {m: evaluation.features[m][sel] for m in ctx.modalities}
        logits = evaluation.logits[sel]
        names = SNAPSHOT_NAMES
        arrays: dict[str, np.ndarray] = {
            names["index"]: index[keep].astype(np.int64),
            names["label"]: evaluation.labels[sel].numpy().astype(np.int64),
        }
        for m in ctx.modalities:
            arrays[names["features"].format(v=m)] = compact_float(feats[m].numpy())
        arrays[names["features"].format(v="fused")] = compact_float(concat_features(feats, ctx.modalities).numpy())
        sources = {}
        for m in ctx.modalities:
            if m in evaluation.unimodal_logits:
                pred, sources[m] = evaluation.unimodal_logits[m][sel].argmax(1), "head"
            else:
                loo = compute_ncm_loo_predictions(evaluation.features[m], evaluation.labels, ctx.num_classes)
                pred, sources[m] = loo[sel], "ncm"
            arrays[names["pred"].format(v=m)] = pred.numpy().astype(np.int16)
        arrays[names["pred"].format(v="fused")] = logits.argmax(1).numpy().astype(np.int16)
        arrays[names["confidence"]] = logits.softmax(1).max(1).values.numpy().astype(np.float16)
        arrays.update(_dropped(ctx.dropped_mask, arrays[names["index"]]))
        path = snapshot_path(ctx.run_dir, epoch)
        save_npz(path, arrays, compress=self.config.compress)
        meta = {
            "n": int(len(keep)),
            "modalities": list(ctx.modalities),
            "fused": "concat",
            "pred_source": sources,
            "step": int(info.step),
        }
        ctx.artifact(epoch, SNAPSHOT_KIND, path.relative_to(ctx.run_dir).as_posix(), meta)
