"""Attack metrics shared by every attack: the result type, accuracy, AUC, TPR at low FPR, bootstrap CIs.

The M4I paper (section 4, figures 4 and 6) reports the "attack success rate", i.e. accuracy on balanced target
member / non-member sets at the attack's own decision rule, plus ROC curves and a log-scale ROC (appendix H).
Following Carlini et al. 2022 (LiRA) we also report AUC and TPR at low FPR (1%, 0.1%) on the exact ROC, and
percentile bootstrap confidence intervals (members and non-members resampled separately).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

META_KEYS: tuple[str, ...] = (
    "experiment",
    "attack",
    "scenario",
    "setting",
    "shadow",
    "target",
    "dataset",
    "architecture",
    "profile",
    "seed",
    "train_seed",
)
CI_METRICS: tuple[str, ...] = ("accuracy", "auc", "tpr_at_1pct_fpr")
METRIC_COLUMNS: tuple[str, ...] = (
    "n_members",
    "n_nonmembers",
    "accuracy",
    "balanced_accuracy",
    "best_accuracy",
    "auc",
    "tpr_at_1pct_fpr",
    "tpr_at_0_1pct_fpr",
    *(f"{m}_ci_{side}" for m in CI_METRICS for side in ("low", "high")),
    "auc_verdict",
    "degenerate",
)


@dataclass
class AttackResult:
    """Membership scores of one attack on one target, with the decision threshold learnt on the shadow.

    Attributes:
        scores: one score per query, higher = more likely a member.
        labels: ground truth, 1 = member, 0 = non-member.
        threshold: decision threshold chosen on the SHADOW data (prediction: ``scores >= threshold``);
            ``None`` when the attack has no decision rule (accuracy is then NaN).
        meta: experiment, attack, scenario, setting, shadow, target, dataset, architecture, profile, seed
            (missing keys allowed), plus the attack's diagnostics.
        ids: the queried records' ids (``<dataset>/<record id>``), stored with the per-sample scores;
            ``None`` stores positions.
    """

    scores: np.ndarray
    labels: np.ndarray
    threshold: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64)
        labels = np.asarray(self.labels)
        if scores.ndim != 1 or labels.ndim != 1:
            raise ValueError(f"scores and labels must be 1-D, got shapes {scores.shape} and {labels.shape}")
        if scores.shape != labels.shape:
            raise ValueError(f"scores ({scores.shape[0]}) and labels ({labels.shape[0]}) differ in length")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"scores contain {int(np.sum(~np.isfinite(scores)))} non-finite values")
        if labels.size and not np.all(np.isin(labels, (0, 1))):
            raise ValueError(
                f"labels must be 0 (non-member) or 1 (member), got values {np.unique(labels)[:10]}"
            )
        if self.threshold is not None:
            self.threshold = float(self.threshold)
            if math.isnan(self.threshold):
                raise ValueError("threshold is NaN; use None for an attack without a decision rule")
        if self.ids is not None:
            self.ids = np.asarray(self.ids).astype(str)
            if self.ids.shape != scores.shape:
                raise ValueError(f"ids ({self.ids.shape[0]}) and scores ({scores.shape[0]}) differ in length")
        self.scores = scores
        self.labels = labels.astype(np.int64)
        self.meta = dict(self.meta)

    @property
    def n_members(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nonmembers(self) -> int:
        return int(self.labels.size - self.labels.sum())

    def predictions(self) -> np.ndarray:
        """Member (1) / non-member (0) decisions ``scores >= threshold``; needs a threshold."""
        if self.threshold is None:
            raise ValueError("this result has no threshold")
        return (self.scores >= self.threshold).astype(np.int64)


def check_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    res = AttackResult(scores=scores, labels=labels)
    if res.n_members == 0 or res.n_nonmembers == 0:
        raise ValueError(f"need members and non-members, got {res.n_members} and {res.n_nonmembers}")
    return res.labels, res.scores


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """Highest TPR among ROC points with FPR <= ``fpr`` (exact ROC, Carlini et al. 2022; M4I appendix H).

    Args:
        labels: 1 = member, 0 = non-member.
        scores: higher = more likely a member.
        fpr: the false-positive-rate budget, e.g. 0.01.
    Returns:
        The TPR in [0, 1] ((0, 0) is always on the ROC, so some point meets any budget >= 0).
    """
    from sklearn.metrics import roc_curve

    labels, scores = check_binary(labels, scores)
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    ok = fprs <= fpr
    return float(tprs[ok].max()) if ok.any() else 0.0


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising the accuracy of ``scores >= threshold`` on (shadow) data (paper section 3.1).

    Candidates are midpoints between consecutive distinct sorted scores, plus one below the minimum (all
    members) and one above the maximum (all non-members); ties go to the lowest candidate.

    Args:
        labels: 1 = member, 0 = non-member (shadow).
        scores: higher = more likely a member (shadow).
    Returns:
        The threshold (finite float).
    """
    res = AttackResult(scores=scores, labels=labels)
    if res.scores.size == 0:
        raise ValueError("cannot choose a threshold on empty data")
    uniq, inv = np.unique(res.scores, return_inverse=True)
    mem = np.bincount(inv, weights=res.labels, minlength=uniq.size)
    non = np.bincount(inv, weights=1 - res.labels, minlength=uniq.size)
    # Candidate k predicts "member" for uniq[k:], k = 0..K (k = K: nobody is a member).
    tp = np.r_[np.cumsum(mem[::-1])[::-1], 0.0]
    tn = np.r_[0.0, np.cumsum(non)]
    best = int(np.argmax(tp + tn))
    span = float(uniq[-1] - uniq[0]) or 1.0
    if best == 0:
        return float(uniq[0] - span)
    if best == uniq.size:
        return float(uniq[-1] + span)
    return float((uniq[best - 1] + uniq[best]) / 2.0)


def _count_matrix(sample_idx: np.ndarray, uniq_index: np.ndarray, k: int) -> np.ndarray:
    """Counts of resampled items per distinct score value: ``(B, K)`` from ``(B, n)`` sampled indices."""
    b = sample_idx.shape[0]
    flat = uniq_index[sample_idx] + (np.arange(b)[:, None] * k)
    return np.bincount(flat.ravel(), minlength=b * k).reshape(b, k).astype(np.float64)


def _curve_metrics(mem: np.ndarray, non: np.ndarray, fprs: Sequence[float]) -> dict[str, np.ndarray]:
    """AUC and TPR at FPR budgets from per-distinct-score counts ``(B, K)`` (scores ascending along K)."""
    n_m = mem.sum(axis=1)
    n_n = non.sum(axis=1)
    below = np.cumsum(non, axis=1) - non  # non-members strictly below each distinct score
    auc = (mem * (below + 0.5 * non)).sum(axis=1) / (n_m * n_n)
    # ROC point for threshold uniq[k]: members / non-members with score >= uniq[k] (reverse cumsum).
    tp = np.cumsum(mem[:, ::-1], axis=1)[:, ::-1]
    fp = np.cumsum(non[:, ::-1], axis=1)[:, ::-1]
    tpr = tp / n_m[:, None]
    fpr = fp / n_n[:, None]
    out = {"auc": auc}
    for budget in fprs:
        out[budget] = np.where(fpr <= budget, tpr, 0.0).max(axis=1)  # (0, 0) is always on the ROC
    return out


def compute_metrics(result: AttackResult, n_bootstrap: int = 200, seed: int = 0, ci: float = 0.95) -> dict:
    """Attack metrics with percentile bootstrap CIs (members and non-members resampled separately).

    Args:
        result: the attack's scores, labels and shadow-chosen threshold.
        n_bootstrap: bootstrap resamples (0 = no CIs; the CI columns are then NaN).
        seed: seeds the resampling.
        ci: two-sided confidence level.
    Returns:
        dict with n_members, n_nonmembers; ``accuracy`` and ``balanced_accuracy`` at ``result.threshold`` (the
        paper's "attack success rate"; NaN without a threshold); ``best_accuracy``, the maximum accuracy over
        all thresholds on the target itself (an optimistic oracle: the attacker cannot pick it; never
        report it as the attack's success rate); ``auc``; ``tpr_at_1pct_fpr``, ``tpr_at_0_1pct_fpr`` (exact
        ROC; NaN with fewer non-members than :func:`min_nonmembers`); ``<metric>_ci_low`` /
        ``<metric>_ci_high`` for accuracy, auc and tpr_at_1pct_fpr; ``degenerate`` (constant scores) and
        ``auc_verdict`` (:func:`chance_verdict`).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, scores = check_binary(result.labels, result.scores)
    n_m, n_n = result.n_members, result.n_nonmembers
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    out: dict[str, Any] = {
        "n_members": n_m,
        "n_nonmembers": n_n,
        "accuracy": math.nan,
        "balanced_accuracy": math.nan,
        "best_accuracy": float(np.max((tprs * n_m + (1.0 - fprs) * n_n) / (n_m + n_n))),
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_1pct_fpr": tpr_at_fpr(labels, scores, 0.01) if n_n >= min_nonmembers(0.01) else math.nan,
        "tpr_at_0_1pct_fpr": tpr_at_fpr(labels, scores, 0.001) if n_n >= min_nonmembers(0.001) else math.nan,
        "degenerate": bool(np.unique(scores).size == 1),
    }
    correct = None
    if result.threshold is not None:
        pred = scores >= result.threshold
        correct = pred == (labels == 1)
        out["accuracy"] = float(correct.mean())
        tpr_t = float(pred[labels == 1].mean())
        tnr_t = float((~pred[labels == 0]).mean())
        out["balanced_accuracy"] = (tpr_t + tnr_t) / 2.0
    for m in CI_METRICS:
        out[f"{m}_ci_low"] = math.nan
        out[f"{m}_ci_high"] = math.nan
    out["auc_verdict"] = chance_verdict(math.nan, math.nan, out["degenerate"])
    if n_bootstrap <= 0:
        return out

    rng = np.random.default_rng(seed)
    mem_idx = np.flatnonzero(labels == 1)
    non_idx = np.flatnonzero(labels == 0)
    s_mem = mem_idx[rng.integers(0, n_m, size=(n_bootstrap, n_m))]
    s_non = non_idx[rng.integers(0, n_n, size=(n_bootstrap, n_n))]
    uniq, inv = np.unique(scores, return_inverse=True)
    curves = _curve_metrics(
        _count_matrix(s_mem, inv, uniq.size), _count_matrix(s_non, inv, uniq.size), fprs=(0.01,)
    )
    boot = {"auc": curves["auc"], "tpr_at_1pct_fpr": curves[0.01]}
    if correct is not None:
        boot["accuracy"] = (correct[s_mem].sum(axis=1) + correct[s_non].sum(axis=1)) / (n_m + n_n)
    alpha = (1.0 - ci) / 2.0
    for m, values in boot.items():
        low, high = np.quantile(values, [alpha, 1.0 - alpha])
        out[f"{m}_ci_low"] = float(low)
        out[f"{m}_ci_high"] = float(high)
    if math.isnan(out["tpr_at_1pct_fpr"]):
        out["tpr_at_1pct_fpr_ci_low"] = out["tpr_at_1pct_fpr_ci_high"] = math.nan
    out["auc_verdict"] = chance_verdict(out["auc_ci_low"], out["auc_ci_high"], out["degenerate"])
    return out


def min_nonmembers(fpr: float) -> int:
    """Non-members needed before TPR at ``fpr`` is reported: enough for one false positive (1 / fpr; 1,000
    for 0.1% FPR). Below it the point is not measured and is reported as NaN ("needs >= n non-members")."""
    return math.ceil(1.0 / fpr - 1e-9)


def chance_verdict(auc_ci_low: float, auc_ci_high: float, degenerate: bool = False) -> str:
    """Label an attack by its AUC confidence interval: ``"above chance"`` (CI above 0.5), ``"at chance"``
    (CI contains 0.5), ``"below chance (inverted)"`` (CI below 0.5: the rule learnt on the shadow transfers
    inverted), ``"degenerate (constant scores)"``, or ``"no CI"`` without bootstrap."""
    if degenerate:
        return "degenerate (constant scores)"
    if math.isnan(auc_ci_low) or math.isnan(auc_ci_high):
        return "no CI"
    if auc_ci_low > 0.5:
        return "above chance"
    if auc_ci_high < 0.5:
        return "below chance (inverted)"
    return "at chance"


def tpr_label(value: float, n_nonmembers: int, fpr: float) -> str:
    """``"0.123"``, or ``"needs >= 1,000 non-members"`` where TPR at ``fpr`` is not measured."""
    if n_nonmembers < min_nonmembers(fpr) or math.isnan(value):
        return f"needs >= {min_nonmembers(fpr):,} non-members"
    return f"{value:.3f}"
