"""The measurement core against scikit-learn, brute force or hand computation."""

import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, silhouette_score

from mmviz.measures import (
    compute_class_means,
    compute_confidence_scores,
    compute_fisher_ratio,
    compute_grad_cosine,
    compute_group_norm,
    compute_kmeans_clusters,
    compute_kmeans_purity,
    compute_linear_probe_accuracy,
    compute_ncm_loo_predictions,
    compute_ncm_predictions,
    compute_prototype_drift,
    compute_prototype_stats,
    compute_purity,
    compute_score_ratios,
    compute_silhouette,
    scale_to_unit_box,
)


def blobs(n=120, d=6, k=4, std=1.0, seed=0):
    x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


# ---------------------------------------------------------------------------------------- gradients


def test_group_norm_is_the_norm_of_all_tensors_concatenated():
    ts = [torch.randn(3, 4), None, torch.randn(5)]
    flat = torch.cat([ts[0].flatten(), ts[2]])
    assert torch.allclose(compute_group_norm(ts), flat.norm())
    assert float(compute_group_norm([None])) == 0.0


def test_grad_cosine_matches_flattened_cosine_and_skips_missing():
    a = [torch.randn(3, 4), torch.randn(2)]
    b = [torch.randn(3, 4), torch.randn(2)]
    fa, fb = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    assert torch.allclose(compute_grad_cosine(a, b), torch.nn.functional.cosine_similarity(fa, fb, dim=0), atol=1e-6)
    assert float(compute_grad_cosine(a, [-t for t in a])) == pytest.approx(-1.0)
    assert float(compute_grad_cosine([None], [None])) == 0.0


# ------------------------------------------------------------------------------------ confidence scores


def test_confidence_scores_sum_the_true_class_probabilities():
    logits = [torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])]
    labels = torch.tensor([0, 1])
    s = compute_confidence_scores(logits, labels)
    p0 = math.exp(2) / (math.exp(2) + 1)
    p1 = 1 / (1 + math.e)
    assert s.tolist() == pytest.approx([p0 + 0.5, p1 + p1])


def test_score_ratios_are_over_the_weakest_other_modality():
    assert compute_score_ratios(torch.tensor([3.0, 1.5])).tolist() == pytest.approx([2.0, 0.5])
    # three modalities: each leader against the weakest (1.0), the weakest against the runner-up (2.0)
    assert compute_score_ratios(torch.tensor([2.0, 1.0, 3.0])).tolist() == pytest.approx([2.0, 0.5, 3.0])


# ----------------------------------------------------------------------------------- class geometry


def test_ncm_loo_equals_refitting_without_each_sample():
    x, y = blobs(n=60, std=3.0)
    fast = compute_ncm_loo_predictions(x, y, 4)
    slow = []
    for i in range(len(y)):
        keep = torch.arange(len(y)) != i
        means, counts = compute_class_means(x[keep], y[keep], 4)
        slow.append(int(compute_ncm_predictions(x[i : i + 1], means, counts > 0)[0]))
    assert fast.tolist() == slow


def test_ncm_loo_never_assigns_a_singleton_class_to_itself():
    x = torch.tensor([[0.0], [0.1], [5.0]])
    y = torch.tensor([0, 0, 1])
    assert compute_ncm_loo_predictions(x, y, 3)[2] == 0  # class 1 has no other member; class 2 absent


def test_prototype_stats_and_drift_by_hand():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0]])
    y = torch.tensor([0, 0, 1, 1])
    means, counts = compute_class_means(x, y, 3)
    present = counts > 0
    assert means[:2].tolist() == [[1.0, 0.0], [10.0, 1.0]] and counts.tolist() == [2, 2, 0]
    stats = compute_prototype_stats(x, y, means, present)
    assert stats["intra"] == pytest.approx(1.0)
    assert stats["inter"] == pytest.approx(math.hypot(9, 1))
    assert stats["margin"] == pytest.approx(math.hypot(9, 1))
    moved = means + torch.tensor([[3.0, 4.0], [0.0, 1.0], [100.0, 0.0]])
    assert float(compute_prototype_drift(means, moved, present)) == pytest.approx(3.0)  # (5 + 1) / 2, absent ignored
    assert float(compute_prototype_drift(means, moved, torch.zeros(3, dtype=torch.bool))) == 0.0


# ------------------------------------------------------------------------------------- separability


def test_silhouette_matches_sklearn():
    for seed, std in [(0, 1.0), (1, 4.0), (2, 10.0)]:
        x, y = blobs(n=90, k=3, std=std, seed=seed)
        assert compute_silhouette(x, y) == pytest.approx(silhouette_score(x.numpy(), y.numpy()), abs=1e-5)
        assert compute_silhouette(x.double(), y) == pytest.approx(silhouette_score(x.numpy(), y.numpy()), abs=1e-5)
    x = torch.tensor([[0.0], [1.0], [5.0]])  # a singleton class scores 0, as in sklearn
    y = torch.tensor([0, 0, 1])
    assert compute_silhouette(x, y) == pytest.approx(silhouette_score(x.numpy(), y.numpy()))


def test_fisher_ratio_by_hand():
    # class means -1 and +1 (grand mean 0): between = 2*1 + 2*1 = 4; within = 4 * 0.5^2 = 1
    x = torch.tensor([[-1.5], [-0.5], [0.5], [1.5]])
    y = torch.tensor([0, 0, 1, 1])
    assert compute_fisher_ratio(x, y) == pytest.approx(4.0)
    assert compute_fisher_ratio(torch.tensor([[1.0], [1.0], [1.0]]), torch.tensor([0, 1, 1])) == math.inf


def test_purity_by_hand():
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    assert compute_purity(labels=labels, clusters=clusters) == pytest.approx((2 + 2 + 2) / 8)
    assert compute_purity(labels=np.array([0, 1, 2, 3]), clusters=np.zeros(4, int)) == 0.25
    assert compute_purity(labels=np.zeros(4, int), clusters=np.array([0, 1, 2, 3])) == 1.0
    with pytest.raises(TypeError):
        compute_purity(clusters, labels)  # keyword-only: the arguments cannot be swapped by position


def test_unit_box_scaling():
    x = np.array([[0.0, 5.0, 1.0], [10.0, 5.0, 3.0], [5.0, 5.0, 2.0]])
    assert scale_to_unit_box(x).tolist() == [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert scale_to_unit_box(torch.tensor(x)).dtype == np.float32


def test_kmeans_is_sklearns_with_restarts_and_purity_of_clear_clusters_is_one():
    x, y = make_blobs(n_samples=200, n_features=5, centers=4, cluster_std=0.5, random_state=3)
    a = compute_kmeans_clusters(x, 4, random_state=0, n_init=5)
    assert np.array_equal(a, compute_kmeans_clusters(x, 4, random_state=0, n_init=5))
    assert np.array_equal(a, KMeans(4, n_init=5, random_state=0).fit_predict(x.astype(np.float32)))
    assert adjusted_rand_score(a, y) == 1.0
    assert compute_kmeans_purity(x, y, 4) == 1.0


def test_more_restarts_never_raise_the_inertia_and_steady_purity_on_overlapping_clusters():
    x, y = make_blobs(n_samples=300, n_features=8, centers=6, cluster_std=4.0, random_state=0)
    xs = scale_to_unit_box(x)
    inertia = {n: KMeans(6, n_init=n, random_state=0).fit(xs).inertia_ for n in (1, 10)}
    assert inertia[10] <= inertia[1] + 1e-6
    spread = [compute_kmeans_purity(x, y, 6, random_state=s) for s in range(4)]
    assert max(spread) - min(spread) <= 0.03  # across seeds, the default restarts keep purity within 0.03


@pytest.mark.parametrize("n_init", [1, 3, 10])
def test_kmeans_gives_scikit_learns_partition_on_clusters_and_on_noise(n_init):
    """The numpy k-means follows scikit-learn's algorithm and random stream: the same labels on clustered data of
    several shapes, and the same partition of pure noise (where any difference in seeding or iterations shows)."""
    rng = np.random.default_rng(n_init)
    for _ in range(8):
        n, d, k = int(rng.choice([150, 300])), int(rng.choice([8, 64, 128])), int(rng.choice([3, 4, 10]))
        y = rng.integers(0, k, n)
        x = scale_to_unit_box(rng.normal(size=(k, d))[y] * rng.uniform(0.3, 3) + rng.normal(size=(n, d)))
        seed = int(rng.integers(0, 100))
        want = KMeans(k, n_init=n_init, random_state=seed).fit_predict(x)
        assert np.array_equal(compute_kmeans_clusters(x, k, random_state=seed, n_init=n_init), want)
        noise = scale_to_unit_box(rng.normal(size=(300, 64)))
        got = compute_kmeans_clusters(noise, 10, random_state=seed, n_init=n_init)
        assert adjusted_rand_score(got, KMeans(10, n_init=n_init, random_state=seed).fit_predict(noise)) == 1.0


def test_kmeans_with_fewer_distinct_points_than_clusters_fills_every_cluster_it_can():
    x = np.repeat(np.eye(3, dtype=np.float32), 5, axis=0)  # 3 distinct points, 4 clusters asked
    labels = compute_kmeans_clusters(x, 4, random_state=0)
    assert labels.shape == (15,) and labels.min() >= 0 and labels.max() <= 3
    assert compute_purity(labels=np.repeat([0, 1, 2], 5), clusters=labels) == 1.0


def test_kmeans_purity_uses_no_global_random_state():
    x, y = make_blobs(n_samples=100, n_features=3, centers=3, cluster_std=3.0, random_state=0)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    assert compute_kmeans_purity(x, y, 3, n_init=3) == compute_kmeans_purity(x, y, 3, n_init=3)
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.get_rng_state(), torch_state)


# ------------------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_toy_is_perfect():
    x, y = blobs(n=200, d=4, k=3, std=0.3, seed=1)
    assert compute_linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:]) == 1.0


@pytest.mark.parametrize("k", [2, 3, 10])
def test_linear_probe_scores_as_scikit_learns_logistic_regression(k):
    """The numpy probe fits scikit-learn's objective (binomial for two classes, L2 with C, intercept free): on
    overlapping classes, where the boundary matters, it predicts the same val samples right."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(k)
    for n, d, c in ((100, 8, 1.0), (500, 64, 1.0), (300, 32, 0.1)):
        y = rng.integers(0, k, n + 300)
        x = (rng.normal(size=(k, d))[y] * 0.3 + rng.normal(size=(n + 300, d))).astype(np.float32)
        mu, sd = x[:n].mean(0), x[:n].std(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=100).fit((x[:n] - mu) / sd, y[:n])
        want = float(np.mean(clf.predict((x[n:] - mu) / sd) == y[n:]))
        assert 1.0 / k + 0.05 < want < 1.0  # neither chance nor separable: the fit decides the score
        assert compute_linear_probe_accuracy(x[:n], y[:n], x[n:], y[n:], c=c) == want


def test_linear_probe_chance_on_noise_and_constant_features():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = torch.randint(0, 2, (400,), generator=g)
    assert 0.35 < compute_linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) < 0.65
    const = torch.ones(40, 3)  # zero-variance features must not divide by zero
    yc = torch.tensor([0, 1] * 20)
    assert compute_linear_probe_accuracy(const[:30], yc[:30], const[30:], yc[30:]) == pytest.approx(0.5)
