"""Attack models of the metric-based (MB) attack (M4I paper, section 3.1).

The MB attack turns each generated caption into similarity scores against the image's references
(:mod:`m4i_utils.signals.text_similarity`) and learns, on the shadow model's members and non-members, a
rule telling members
(high similarity: the model reproduces its training captions) from non-members:

* several metrics: a linear SVM on the score vector (authors' code: ``SVC(kernel='linear', C=1e5)`` on
  unscaled features) -> :func:`svm_attack`;
* one metric: a threshold -> :func:`threshold_attack`.

Note on the authors' SVM: with ``C=1e5`` on unscaled, overlapping features libsvm practically never converges
(measured here: 16 M iterations, 7 s for 2,000 x 4 synthetic BLEU-like features), and a solution stopped at an
iteration cap is an arbitrary point on the optimisation path (60% vs 51% target accuracy at 1e5 vs 1e6
iterations on one synthetic set, where a converged linear model reaches 62%). We therefore cap ``max_iter``
(default 100,000: about 1 s for 2,000 samples, ~2 s for 6,000), record non-convergence in the estimator and
the result's meta, and offer ``solver="liblinear"`` (sklearn ``LinearSVC``, squared hinge, converges in
milliseconds) and ``scale=True`` as robust alternatives.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from m4i_utils.core.metrics import AttackResult, choose_threshold


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (n_samples, n_features), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _as_labels(y: np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.all(np.isin(arr, (0, 1))):
        raise ValueError(f"{name} must be 0 (non-member) or 1 (member)")
    return arr.astype(np.int64)


def fit_svm_attack(
    features: np.ndarray,
    labels: np.ndarray,
    C: float = 1e5,
    kernel: str = "linear",
    scale: bool = False,
    seed: int = 0,
    max_iter: int = 100_000,
    solver: str = "libsvm",
):
    """Fit the MB attack's SVM on shadow member (1) / non-member (0) score vectors (paper section 3.1).

    Args:
        features: ``(n, d)`` caption scores of the shadow's queries (e.g. BLEU-1/2/3, ROUGE-L).
        labels: 1 = shadow member, 0 = shadow non-member.
        C: SVM regularisation (authors: 1e5).
        kernel: libsvm kernel (authors: ``"linear"``); ignored by ``solver="liblinear"``.
        scale: standardise features first (``StandardScaler`` in a ``Pipeline``); authors: unscaled.
        seed: ``random_state`` of the SVM.
        max_iter: iteration cap; libsvm with C=1e5 on unscaled features rarely converges otherwise.
        solver: ``"libsvm"`` (``SVC``, authors) or ``"liblinear"`` (``LinearSVC``, squared hinge, fast).
    Returns:
        The fitted estimator, with ``m4i_converged_`` (bool) and ``m4i_warnings_`` (messages) attributes.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    x = _as_features(features, "features")
    y = _as_labels(labels, x.shape[0], "labels")
    if len(np.unique(y)) < 2:
        raise ValueError("the shadow data need both members and non-members")
    if solver == "libsvm":
        svm = SVC(kernel=kernel, C=C, max_iter=max_iter, random_state=seed)
    elif solver == "liblinear":
        svm = LinearSVC(C=C, max_iter=max_iter, random_state=seed, dual="auto")
    else:
        raise ValueError(f"solver must be 'libsvm' or 'liblinear', got {solver!r}")
    model = make_pipeline(StandardScaler(), svm) if scale else svm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    model.m4i_converged_ = not messages
    model.m4i_warnings_ = messages
    return model


def svm_attack(
    shadow_feats: np.ndarray,
    shadow_labels: np.ndarray,
    target_feats: np.ndarray,
    target_labels: np.ndarray,
    meta: dict[str, Any],
    **svm_kwargs: Any,
) -> AttackResult:
    """MB attack with several metrics: SVM trained on the shadow, applied to the target (paper section 3.1).

    Args:
        shadow_feats, shadow_labels: shadow score vectors and membership (1 = member).
        target_feats, target_labels: target score vectors and ground-truth membership (for evaluation only).
        meta: result metadata (experiment, scenario, shadow, target, ...); ``attack`` defaults to
            ``"metric_svm"``; ``svm_converged`` is added.
        **svm_kwargs: passed to :func:`fit_svm_attack` (C, kernel, scale, seed, max_iter, solver).
    Returns:
        :class:`AttackResult` with the SVM decision function as score and threshold 0.0 (the SVM's own rule).
    """
    model = fit_svm_attack(shadow_feats, shadow_labels, **svm_kwargs)
    x_t = _as_features(target_feats, "target_feats")
    if x_t.shape[1] != _as_features(shadow_feats, "shadow_feats").shape[1]:
        raise ValueError(f"target has {x_t.shape[1]} features, shadow {np.shape(shadow_feats)}")
    y_t = _as_labels(target_labels, x_t.shape[0], "target_labels")
    scores = np.asarray(model.decision_function(x_t), dtype=np.float64)
    info = {"attack": "metric_svm", **meta, "svm_converged": bool(model.m4i_converged_)}
    return AttackResult(scores=scores, labels=y_t, threshold=0.0, meta=info)


def threshold_attack(
    shadow_scores: np.ndarray,
    shadow_labels: np.ndarray,
    target_scores: np.ndarray,
    target_labels: np.ndarray,
    meta: dict[str, Any],
) -> AttackResult:
    """MB attack with one metric: the accuracy-maximising threshold on the shadow, applied to the target.

    Args:
        shadow_scores, shadow_labels: one similarity score per shadow query and its membership (1 = member).
        target_scores, target_labels: the target's scores and ground-truth membership.
        meta: result metadata; ``attack`` defaults to ``"metric_threshold"``.
    Returns:
        :class:`AttackResult` with the target scores and the shadow-chosen threshold
        (:func:`m4i_utils.core.metrics.choose_threshold`).
    """
    s_sh = _as_features(shadow_scores, "shadow_scores")
    s_t = _as_features(target_scores, "target_scores")
    if s_sh.shape[1] != 1 or s_t.shape[1] != 1:
        raise ValueError("threshold_attack takes one score per query; use svm_attack for several metrics")
    y_sh = _as_labels(shadow_labels, s_sh.shape[0], "shadow_labels")
    y_t = _as_labels(target_labels, s_t.shape[0], "target_labels")
    thr = choose_threshold(y_sh, s_sh[:, 0])
    return AttackResult(
        scores=s_t[:, 0], labels=y_t, threshold=thr, meta={"attack": "metric_threshold", **meta}
    )
