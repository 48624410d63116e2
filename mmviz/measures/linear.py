"""The linear probe: a logistic regression fitted on frozen features (METHODS.md §1.4, item 6)."""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch


@functools.cache
def _blas_controller(scipy_loaded: bool, sklearn_loaded: bool = False):
    """A threadpoolctl controller over the BLAS / OpenMP libraries loaded so far (scanning them takes ~1 ms, so it
    is kept; a new one is made once scipy or scikit-learn's k-means, which bring their own, have been imported)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_blas_thread():
    """Context manager limiting numpy's / scipy's BLAS to one thread: on these small problems more threads only
    contend with training (and with each other), sometimes by orders of magnitude on a busy machine."""
    return _blas_controller("scipy.linalg" in sys.modules).limit(limits=1, user_api="blas")


def single_thread():
    """Context manager limiting BLAS and OpenMP (scikit-learn's k-means) to one thread: the same reduction order
    whichever process computes a measure (trainer or analysis process), and no contention with training."""
    return _blas_controller("scipy.linalg" in sys.modules, "sklearn.cluster" in sys.modules).limit(limits=1)


def compute_linear_probe_accuracy(
    train_x: torch.Tensor | np.ndarray,
    train_y: torch.Tensor | np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: torch.Tensor | np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 100,
    random_state: int = 0,
) -> float:
    """Accuracy on ``test`` of a logistic-regression probe fitted on frozen ``train`` features.

    Features are standardised with the train mean and standard deviation; the probe is scikit-learn's
    ``LogisticRegression`` (lbfgs, inverse regularisation ``c``, at most ``max_iter`` iterations, fixed
    ``random_state``), fitted in float32 with one BLAS thread (many threads only contend on small problems).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    xtr, xte = np.asarray(train_x, dtype=np.float32), np.asarray(test_x, dtype=np.float32)
    ytr, yte = np.asarray(train_y), np.asarray(test_y)
    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0])) if len(ytr) else 0.0
    mu, sd = xtr.mean(0), xtr.std(0)
    sd[sd == 0] = 1.0
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=random_state)
    with warnings.catch_warnings(), single_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((xtr - mu) / sd, ytr)
        return float(np.mean(clf.predict((xte - mu) / sd) == yte))
