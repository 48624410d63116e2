"""Projections: Procrustes alignment, the PCA reference frame, AlignedUMAP relations, and the snapshot loader."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from mmviz.analysis.projection import (
    AlignedUMAPProjection,
    PCAProjection,
    ProcrustesAlignment,
    UMAPProjection,
    align_sequence,
    compute_knn_graph,
    compute_relations,
    project_epochs_pca,
)
from mmviz.analysis.snapshots import FUSED, compute_embedding_frame, compute_sample_table, load_snapshot
from mmviz.errors import ConfigError, StoreError


def rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.fixture
def cloud() -> np.ndarray:
    """An anisotropic 2-D point cloud with clusters (N=300)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(5, 2))
    return (centres[rng.integers(0, 5, 300)] + rng.normal(size=(300, 2))) * np.array([3.0, 1.0])


@pytest.mark.parametrize("theta", [0.3, 2.0, -2.8])
@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_aligns_a_rotated_scaled_translated_copy_back(cloud, theta, reflect):
    moved = 2.5 * cloud @ rotation(theta) + np.array([10.0, -4.0])
    if reflect:  # UMAP and PCA axes have no sign: a mirrored copy must align back too
        moved[:, 0] *= -1
    aligned = ProcrustesAlignment().fit_transform(moved, cloud)
    assert np.abs(aligned - cloud).max() < 1e-8 * np.abs(cloud).max()
    fit = ProcrustesAlignment().fit(moved, cloud)
    assert fit.scale_ == pytest.approx(1 / 2.5)
    assert fit.disparity_ < 1e-12
    assert np.allclose(fit.rotation_ @ fit.rotation_.T, np.eye(2))


def test_procrustes_with_noise_stays_within_tolerance(cloud):
    rng = np.random.default_rng(1)
    moved = 0.3 * cloud @ rotation(1.1) - 7.0 + rng.normal(scale=0.05, size=cloud.shape)
    aligned = ProcrustesAlignment().fit_transform(moved, cloud)
    rms = np.sqrt(((aligned - cloud) ** 2).sum(axis=1).mean())
    assert rms < 0.05 / 0.3 * 1.5  # the noise, scaled back up, and no more
    assert ProcrustesAlignment().fit(moved, cloud).disparity_ < 0.01


def test_procrustes_of_a_collapsed_source_only_translates():
    target = np.random.default_rng(0).normal(size=(10, 2))
    aligned = ProcrustesAlignment().fit_transform(np.ones((10, 2)), target)
    assert np.allclose(aligned, target.mean(axis=0))


def test_align_sequence_chains_successive_epochs_into_one_frame(cloud):
    # every "epoch" is the same layout, spun and rescaled differently, as independent UMAP fits would be
    epochs = [s * cloud @ rotation(t) + s for s, t in [(1.0, 0.0), (0.5, 1.0), (3.0, -2.0), (1.7, 2.9)]]
    chain = align_sequence(epochs)
    for aligned in chain:
        assert np.allclose(aligned, chain[0], atol=1e-8)
    anchored = align_sequence(epochs[1:], anchor=cloud)
    assert all(np.allclose(a, cloud, atol=1e-8) for a in anchored)


def rms_spread(y: np.ndarray) -> float:
    return float(np.sqrt(((y - y.mean(axis=0)) ** 2).sum(axis=1).mean()))


def test_align_sequence_does_not_shrink_epochs_that_only_partly_agree(cloud):
    # independent UMAP fits agree only in part: here each epoch moves a third of the points elsewhere
    rng = np.random.default_rng(0)
    epochs = [cloud]
    for _ in range(12):
        y = epochs[-1].copy()
        moved = rng.choice(len(y), len(y) // 3, replace=False)
        y[moved] = rng.permutation(y[moved])
        epochs.append(y @ rotation(rng.uniform(-3, 3)))
    chain = align_sequence(epochs[1:], anchor=cloud)
    for aligned in chain:  # a least-squares scale shrank every further epoch again: epoch 12 was a dot
        assert rms_spread(aligned) == pytest.approx(rms_spread(cloud), rel=1e-9)
    references = [(1 + i) * cloud for i in range(12)]  # e.g. each epoch's own PCA view, growing as classes separate
    sized = align_sequence(epochs[1:], anchor=cloud, references=references)
    for aligned, reference in zip(sized, references, strict=True):
        assert rms_spread(aligned) == pytest.approx(rms_spread(reference), rel=1e-9)
        assert np.allclose(aligned.mean(axis=0), reference.mean(axis=0))
    with pytest.raises(ValueError, match="2 references for 12 embeddings"):
        align_sequence(epochs[1:], references=references[:2])


def test_procrustes_spread_scaling_keeps_the_targets_size_where_least_squares_shrinks(cloud):
    scrambled = np.random.default_rng(1).permutation(cloud)  # no agreement at all with the target
    assert ProcrustesAlignment().fit(scrambled, cloud).scale_ < 0.5
    aligned = ProcrustesAlignment("spread").fit_transform(3.0 * scrambled, cloud)
    assert rms_spread(aligned) == pytest.approx(rms_spread(cloud))
    with pytest.raises(ValueError, match="scaling must be"):
        ProcrustesAlignment("both")


@pytest.fixture(scope="module")
def mfeat_snapshots(tmp_path_factory) -> list:
    """The 'pix' snapshots of a real 10-epoch mfeat baseline run (the run the UMAP collapse was seen on)."""
    import subprocess
    import sys
    from pathlib import Path

    ws = tmp_path_factory.mktemp("mfeat-ws")
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "mmviz", "train", "--workspace", str(ws), "--dataset", "mfeat", "--epochs", "10",
            *(f"--set=probes.{p}.enabled=false" for p in ("shapley", "grad_conflict", "separability"))]  # fmt: skip
    run = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300, check=True).stdout.split()[0]
    files = sorted((ws / "runs" / run / "snapshots").glob("epoch_*.npz"))
    assert len(files) == 10, files
    return [load_snapshot(f, i + 1).features["pix"] for i, f in enumerate(files)]


def test_every_epochs_umap_keeps_the_spread_of_its_pca_view_on_a_real_run(mfeat_snapshots):
    # what the embeddings page does: PCA axes from the last epoch; per-epoch UMAPs rotated onto each other
    pca = PCAProjection(2).fit(mfeat_snapshots[-1])
    pcas = [pca.transform(x) for x in mfeat_snapshots]
    umaps = [UMAPProjection(n_epochs=100).fit_transform(x) for x in mfeat_snapshots]
    chain = align_sequence(umaps, anchor=pcas[0], references=pcas)
    for epoch, (aligned, view) in enumerate(zip(chain, pcas, strict=True), start=1):
        assert 0.5 < rms_spread(aligned) / rms_spread(view) < 2.0, epoch
    for epoch in range(1, len(chain)):  # and the rotation onto the previous epoch keeps the picture steady
        agreement = ProcrustesAlignment().fit(chain[epoch], chain[epoch - 1]).rotation_
        assert agreement[0, 0] > 0.5, epoch


def test_pca_frame_is_fitted_on_the_reference_epoch_and_stays_fixed():
    rng = np.random.default_rng(0)
    features = {e: rng.normal(size=(200, 16)) * np.linspace(3, 0.1, 16) for e in (1, 2, 3)}
    coords, pca = project_epochs_pca(features, reference_epoch=2)
    reference = PCAProjection(2).fit(features[2])
    assert np.allclose(pca.components_, reference.components_)
    for epoch, x in features.items():  # every epoch on the reference epoch's axes, not on its own
        assert np.allclose(coords[epoch], (x - features[2].mean(axis=0)) @ reference.components_.T)
    own = PCAProjection(2).fit(features[3]).transform(features[3])
    assert not np.allclose(coords[3], own)
    # the frame is deterministic: refitting (even on a sign-flipped copy of the data) gives the same axes
    flipped = PCAProjection(2).fit(-features[2] + 5.0)
    assert np.allclose(np.abs(flipped.components_), np.abs(reference.components_))
    assert np.allclose(PCAProjection(2).fit(features[2]).components_, reference.components_)
    assert reference.explained_variance_ratio_[0] >= reference.explained_variance_ratio_[1] > 0


def test_pca_needs_a_fit_and_matching_features():
    with pytest.raises(RuntimeError, match="not fitted"):
        PCAProjection().transform(np.zeros((3, 4)))
    pca = PCAProjection().fit(np.random.default_rng(0).normal(size=(20, 4)))
    with pytest.raises(ValueError, match="4"):
        pca.transform(np.zeros((3, 5)))


def test_relations_over_the_fixed_probe_set_are_identity_maps():
    index = np.array([101, 7, 55, 3000, 42])
    relations = compute_relations([index, index.copy(), index.copy()])
    assert relations == [{i: i for i in range(5)}] * 2


def test_relations_follow_samples_when_rows_are_reordered_or_missing():
    first = np.array([10, 20, 30, 40])
    second = np.array([40, 10, 30])  # 20 is gone; the rest in another order
    assert compute_relations([first, second]) == [{0: 1, 2: 2, 3: 0}]


def test_aligned_umap_passes_identity_relations_to_umap(monkeypatch):
    seen = {}

    class FakeAligned:
        def __init__(self, **kwargs):
            seen["kwargs"] = kwargs

        def fit(self, graphs, relations):
            seen["relations"], seen["graphs"] = relations, graphs
            self.embeddings_ = [np.zeros((g.shape[0], 2)) for g in graphs]
            return self

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(AlignedUMAP=FakeAligned))  # no numba compile
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(40, 6)) for _ in range(3)]
    fit = AlignedUMAPProjection(n_neighbors=5).fit(xs, [np.arange(100, 140)] * 3)
    assert seen["relations"] == [{i: i for i in range(40)}] * 2 == fit.relations_
    assert seen["kwargs"]["metric"] == "precomputed"
    assert len(fit.embeddings_) == 3 and fit.embeddings_[0].shape == (40, 2)


def test_knn_graph_is_symmetric_without_self_loops_and_keeps_duplicates():
    x = np.vstack([np.zeros((3, 4)), np.random.default_rng(0).normal(size=(20, 4))])  # three identical rows
    graph = compute_knn_graph(x, 5)
    assert (graph != graph.T).nnz == 0
    assert graph.diagonal().sum() == 0
    assert (np.diff(graph.indptr) >= 5).all()  # umap needs n_neighbors distances in every row


def test_umap_parameters_are_validated_with_one_sentence():
    with pytest.raises(ConfigError, match="'n_neighbors' parameter of UMAPProjection must be an int in"):
        UMAPProjection(n_neighbors=1).fit(np.zeros((10, 3)))
    with pytest.raises(ConfigError, match="metric"):
        UMAPProjection(metric="manhattan").fit(np.zeros((10, 3)))


# ---------------------------------------------------------------- the snapshot file format (written by the probe)
def test_load_snapshot_reads_the_probe_format(tmp_path, write_snapshot):
    arrays = write_snapshot(tmp_path / "epoch_0001.npz", dropped=True)
    snap = load_snapshot(tmp_path / "epoch_0001.npz", epoch=1)
    assert snap.views == ("a", "b", FUSED) and snap.modalities == ("a", "b") and snap.n == 30
    assert np.array_equal(snap.index, arrays["index"]) and np.array_equal(snap.labels, arrays["label"])
    assert snap.features["fused"].shape == (30, 16)
    assert np.array_equal(snap.predictions["b"], arrays["pred_b"])
    assert np.array_equal(snap.dropped["a"], arrays["dropped_a"])
    assert np.array_equal(snap.dropped[FUSED], arrays["dropped_a"])  # any modality dropped
    table = compute_sample_table(snap, [0, 5])
    assert list(table.columns) == ["index", "label", "pred_a", "pred_b", "pred_fused", "confidence", "dropped"]
    assert table["index"].tolist() == [1000, 1005]
    frame = compute_embedding_frame(snap, {v: np.zeros((30, 2)) for v in ("a", FUSED)})
    assert sorted(frame["view"].unique()) == ["a", FUSED] and len(frame) == 60
    assert frame.loc[frame["view"] == "a", "correct"].mean() == pytest.approx(
        (arrays["pred_a"] == arrays["label"]).mean()
    )


def test_load_snapshot_errors_are_one_sentence(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        load_snapshot(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StoreError, match="cannot be read"):
        load_snapshot(tmp_path / "junk.npz")
    np.savez(tmp_path / "nofeat.npz", index=np.arange(3), label=np.arange(3))
    with pytest.raises(StoreError, match="no features"):
        load_snapshot(tmp_path / "nofeat.npz")


def test_pca_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(3).normal(size=(150, 12)) * np.linspace(4, 0.5, 12)
    ours = PCAProjection(2).fit(x)
    ref = PCA(2).fit(x)
    assert np.allclose(np.abs(ours.components_ @ ref.components_.T), np.eye(2), atol=1e-8)
    assert np.allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_)
    assert np.allclose(np.abs(ours.transform(x)), np.abs(ref.transform(x)))
