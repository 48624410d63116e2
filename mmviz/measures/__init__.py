"""The one functional core of measurements (DESIGN.md §1): pure functions on tensors and arrays.

Balancing methods, probes and the analysis process all call these functions, so no quantity has two
implementations (``tests/measures/test_single_source.py`` checks that nothing outside this package re-implements
them). Modules: :mod:`attribution` (Shapley values over modality coalitions, the imbalance index),
:mod:`clustering` (k-means purity), :mod:`geometry` (class means / prototypes, NCM, Fisher ratio, silhouette),
:mod:`scores` (OGM-GE confidence scores and their ratio), :mod:`features` (feature extraction, eval-mode
save/restore, masked coalition logits), :mod:`linear` (the linear probe), :mod:`gradients` (gradient norms and
cosines). Imports no other mmviz module; names load lazily, and :mod:`attribution`'s Shapley values and
imbalance index need neither torch nor numpy.
"""

_WHERE = {
    "score_ratios_by_name": "scores",
    "confidence_scores_by_name": "scores",
    "compute_score_ratios": "scores",
    "compute_confidence_scores": "scores",
    "KMEANS_N_INIT": "clustering",
    "coalitions": "attribution",
    "compute_class_means": "geometry",
    "compute_coalition_accuracies": "attribution",
    "compute_coalition_logits": "features",
    "compute_fisher_ratio": "geometry",
    "compute_grad_cosine": "gradients",
    "compute_group_norm": "gradients",
    "compute_imbalance": "attribution",
    "compute_kmeans_clusters": "clustering",
    "compute_kmeans_purity": "clustering",
    "compute_linear_probe_accuracy": "linear",
    "compute_ncm_accuracy": "geometry",
    "compute_ncm_loo_predictions": "geometry",
    "compute_ncm_predictions": "geometry",
    "compute_prototype_drift": "geometry",
    "compute_prototype_stats": "geometry",
    "compute_purity": "clustering",
    "compute_shapley": "attribution",
    "compute_silhouette": "geometry",
    "concat_features": "features",
    "eval_mode": "features",
    "extract_features": "features",
    "scale_to_unit_box": "clustering",
    "single_blas_thread": "linear",
    "zero_inputs": "features",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Import the submodule that defines ``name`` on first use (PEP 562), so a torch-free submodule (e.g.
    :mod:`attribution`'s index, read by the dashboard's summaries) can be imported without importing torch."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mmviz.measures' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"mmviz.measures.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
