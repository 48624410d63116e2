"""Per-epoch snapshots of a fixed probe set's features, for the embeddings page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmviz.contracts import StepInfo
from mmviz.measures import compute_ncm_loo_predictions, concat_features
from mmviz.measures.record import (
    RECORD_NAMES,
    SNAPSHOT_KIND,
    SNAPSHOT_NAMES,
    compact_float,
    save_npz,
    snapshot_path,
)
from mmviz.probes.base import AnalysisProbe
from mmviz.probes.common import record_features, val_arrays
from mmviz.probes.configs import SnapshotConfig
from mmviz.probes.record import Artifact


def _dropped(source: Any, index: np.ndarray) -> dict[str, np.ndarray]:
    """The context's optional ``dropped_mask`` (published by a method), looked up at absolute sample indices, by
    record name.

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
        return {RECORD_NAMES["snapshot_dropped_view"].format(m=m): pick(s) for m, s in source.items()}
    return {RECORD_NAMES["snapshot_dropped"]: pick(source)}


class SnapshotProbe(AnalysisProbe):
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
    The trainer only adds the probe set's positions, fused logits, head-split predictions and dropped masks to the
    epoch record (the val features are in it already); the file is written from the record, by the analysis
    process when there is one (issue 15: the file took ~3 ms of each epoch end in the trainer), else inline.
    Nothing is written for runs without a run folder. Default: every epoch.
    """

    config_cls = SnapshotConfig
    order = 30

    def measure(self, epoch: int, info: StepInfo, evaluation: Any, record: dict) -> dict[str, Any]:
        ctx = self.ctx
        if ctx.run_dir is None:
            return {}
        names = RECORD_NAMES
        index = evaluation.index.numpy()
        keep = np.flatnonzero(np.isin(index, ctx.probe_index))
        sel = torch.as_tensor(keep)
        arrays: dict[str, Any] = {
            **val_arrays(ctx, evaluation),
            names["snapshot_position"]: keep.astype(np.int64),
            names["snapshot_index"]: index[keep].astype(np.int64),
            names["snapshot_logits"]: evaluation.logits[sel],
        }
        for m in ctx.modalities:
            if m in evaluation.unimodal_logits:
                arrays[names["snapshot_pred"].format(m=m)] = evaluation.unimodal_logits[m][sel].argmax(1)
        arrays.update(_dropped(ctx.dropped_mask, index[keep]))
        return arrays

    def write_files(self, meta: dict[str, Any], arrays: dict[str, Any], run_dir: Path) -> list[Artifact]:
        names, out_names = RECORD_NAMES, SNAPSHOT_NAMES
        if names["snapshot_position"] not in arrays:  # measured without a run folder
            return []
        mods = meta["modalities"]
        keep = torch.as_tensor(np.asarray(arrays[names["snapshot_position"]]))
        all_feats, all_labels = record_features(meta, arrays)
        feats = {m: all_feats[m][keep] for m in mods}
        out: dict[str, np.ndarray] = {
            out_names["index"]: np.asarray(arrays[names["snapshot_index"]]).astype(np.int64),
            out_names["label"]: all_labels[keep].numpy().astype(np.int64),
        }
        for m in mods:
            out[out_names["features"].format(v=m)] = compact_float(feats[m].numpy())
        out[out_names["features"].format(v="fused")] = compact_float(concat_features(feats, mods).numpy())
        sources = {}
        for m in mods:
            head = names["snapshot_pred"].format(m=m)
            if head in arrays:
                pred, sources[m] = np.asarray(arrays[head]), "head"
            else:
                loo = compute_ncm_loo_predictions(all_feats[m], all_labels, meta["num_classes"])
                pred, sources[m] = loo[keep].numpy(), "ncm"
            out[out_names["pred"].format(v=m)] = pred.astype(np.int16)
        logits = torch.as_tensor(np.asarray(arrays[names["snapshot_logits"]]))
        out[out_names["pred"].format(v="fused")] = logits.argmax(1).numpy().astype(np.int16)
        out[out_names["confidence"]] = logits.softmax(1).max(1).values.numpy().astype(np.float16)
        if names["snapshot_dropped"] in arrays:
            out[out_names["dropped"]] = np.asarray(arrays[names["snapshot_dropped"]]).astype(bool)
        for m in mods:
            if names["snapshot_dropped_view"].format(m=m) in arrays:
                dropped = arrays[names["snapshot_dropped_view"].format(m=m)]
                out[out_names["dropped_view"].format(v=m)] = np.asarray(dropped).astype(bool)
        path = snapshot_path(run_dir, meta["epoch"])
        save_npz(path, out, compress=self.config.compress)
        info = {"n": int(len(keep)), "modalities": list(mods), "fused": "concat", "pred_source": sources}
        return [
            (int(meta["epoch"]), SNAPSHOT_KIND, path.relative_to(run_dir).as_posix(), {**info, "step": meta["step"]})
        ]
