"""The one functional core of measurements (DESIGN.md §1): pure functions on tensors and arrays.

Balancing methods, probes and the analysis process all call these functions, so no quantity has two
implementations (``tests/measures/test_single_source.py`` checks that nothing outside this package re-implements
them). Modules: :mod:`attribution` (Shapley values over modality coalitions, the imbalance index),
:mod:`clustering` (k-means purity), :mod:`geometry` (class means / prototypes, NCM, Fisher ratio, silhouette),
:mod:`scores` (OGM-GE confidence scores and their ratio), :mod:`features` (feature extraction, eval-mode
save/restore, masked coalition logits), :mod:`linear` (the linear probe), :mod:`gradients` (gradient norms and
cosines). Imports no other mmviz module.
"""

from mmviz.measures.attribution import coalitions, compute_coalition_accuracies, compute_imbalance, compute_shapley
from mmviz.measures.clustering import (
    KMEANS_N_INIT,
    compute_kmeans_clusters,
    compute_kmeans_purity,
    compute_purity,
    scale_to_unit_box,
)
from mmviz.measures.features import (
    compute_coalition_logits,
    concat_features,
    eval_mode,
    extract_features,
    zero_inputs,
)
from mmviz.measures.geometry import (
    compute_class_means,
    compute_fisher_ratio,
    compute_ncm_accuracy,
    compute_ncm_loo_predictions,
    compute_ncm_predictions,
    compute_prototype_drift,
    compute_prototype_stats,
    compute_silhouette,
)
from mmviz.measures.gradients import compute_grad_cosine, compute_group_norm
from mmviz.measures.linear import compute_linear_probe_accuracy, single_blas_thread
from mmviz.measures.scores import (
    compute_confidence_scores,
    compute_score_ratios,
    confidence_scores_by_name,
    score_ratios_by_name,
)

__all__ = [
    "KMEANS_N_INIT",
    "coalitions",
    "compute_class_means",
    "compute_coalition_accuracies",
    "compute_coalition_logits",
    "compute_confidence_scores",
    "compute_fisher_ratio",
    "compute_grad_cosine",
    "compute_group_norm",
    "compute_imbalance",
    "compute_kmeans_clusters",
    "compute_kmeans_purity",
    "compute_linear_probe_accuracy",
    "compute_ncm_accuracy",
    "compute_ncm_loo_predictions",
    "compute_ncm_predictions",
    "compute_prototype_drift",
    "compute_prototype_stats",
    "compute_purity",
    "compute_score_ratios",
    "compute_shapley",
    "compute_silhouette",
    "concat_features",
    "confidence_scores_by_name",
    "eval_mode",
    "extract_features",
    "scale_to_unit_box",
    "score_ratios_by_name",
    "single_blas_thread",
    "zero_inputs",
]
