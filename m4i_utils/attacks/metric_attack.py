"""Attack models of the metric-based (MB) attack (M4I paper, section 3.1).

The MB attack turns each generated caption into similarity scores against the image's references
(:mod:`m4i_utils.signals.text_similarity`) and learns, on the shadow model's members and non-members, a
rule telling members
(high similarity: the model reproduces its training captions) from non-members:

* several metrics: a linear SVM on the score vector (authors' code: ``SVC(kernel='linear', C=1e5)`` on
  unscaled features) -> :class:`SVMAttack`;
* one metric: a threshold -> :class:`ThresholdAttack`.

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

from m4i_utils.attacks.base import Attack
from m4i_utils.core.metrics import choose_threshold


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


class SVMAttack(Attack):
    """MB attack with several metrics: an SVM on the shadow's score vectors (paper section 3.1).

    Score: the SVM decision function; decision rule: the SVM's own (score >= 0).
    """

    name = "mb_svm"
    access = "black-box (generated text)"
    threshold = 0.0

    def __init__(self, **svm_kwargs: Any) -> None:
        self.svm_kwargs = svm_kwargs
        self.model = None

    @classmethod
    def from_config(cls, cfg, **options: Any) -> SVMAttack:
        """``mb_svm_c``, ``mb_svm_scale``, ``mb_svm_solver`` and ``seed`` of ``cfg``; ``options`` override
        them (any :func:`fit_svm_attack` argument)."""
        kw = dict(C=cfg.mb_svm_c, scale=cfg.mb_svm_scale, solver=cfg.mb_svm_solver, seed=cfg.seed)
        return cls(**(kw | options))

    def fit(self, x: np.ndarray, labels: np.ndarray) -> SVMAttack:
        self.model = fit_svm_attack(x, labels, **self.svm_kwargs)
        self.n_features = _as_features(x, "shadow_feats").shape[1]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        x_t = _as_features(x, "target_feats")
        if x_t.shape[1] != self.n_features:
            raise ValueError(f"target has {x_t.shape[1]} features, shadow {self.n_features}")
        return np.asarray(self.model.decision_function(x_t), dtype=np.float64)

    def diagnostics(self) -> dict[str, Any]:
        return {"svm_converged": bool(self.model.m4i_converged_)}


class ThresholdAttack(Attack):
    """Attack with one signal: the accuracy-maximising threshold on the shadow, applied to the target
    (:func:`m4i_utils.core.metrics.choose_threshold`)."""

    name = "threshold"
    access = "black-box (one signal)"

    def __init__(self, access: str | None = None) -> None:
        """``access``: what the signal needs, when it is more than black-box (e.g. a grey-box likelihood)."""
        if access is not None:
            self.access = access

    @classmethod
    def from_config(cls, cfg, **options: Any) -> ThresholdAttack:
        if options:
            raise ValueError(f"the threshold attack takes no options, got {sorted(options)}")
        return cls()

    @staticmethod
    def _one(x: np.ndarray, name: str) -> np.ndarray:
        s = _as_features(x, name)
        if s.shape[1] != 1:
            raise ValueError("the threshold attack takes one score per query; use mb_svm for several metrics")
        return s[:, 0]

    def fit(self, x: np.ndarray, labels: np.ndarray) -> ThresholdAttack:
        s = self._one(x, "shadow_scores")
        self.threshold = choose_threshold(_as_labels(labels, s.shape[0], "shadow_labels"), s)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self._one(x, "target_scores")
