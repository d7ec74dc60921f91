"""The DP audit of the defenses (M4I section 5, notebook 09): the empirical epsilon lower bound implied by an
attack's ROC, to set beside a DP-trained model's accountant epsilon."""

from __future__ import annotations

import numpy as np


def epsilon_lower_bound(
    labels: np.ndarray, scores: np.ndarray, delta: float, confidence: float = 0.95, method: str = "cp"
) -> float:
    """Empirical epsilon lower bound implied by an attack's ROC (DP: TPR <= e^eps FPR + delta).

    See docs/paper_notes.md, section 'Evaluation practice'.

    eps_lb = max over thresholds of max(log((TPR - delta) / FPR), log((1 - FPR - delta) / (1 - TPR))).
    ``method="cp"``: one-sided Clopper-Pearson bounds at ``confidence`` (TPR from below, FPR from above, per
    threshold, no multiple-testing correction): a conservative bound that respects
    finite samples. ``method="point"``: raw rates, only thresholds with FPR and 1 - TPR >= 1/n.

    Returns:
        The bound (0.0 when no threshold gives evidence).
    """
    from scipy.stats import beta
    from sklearn.metrics import roc_curve

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    n_m, n_n = int(labels.sum()), int((1 - labels).sum())
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    tp, fp = np.rint(tpr * n_m), np.rint(fpr * n_n)
    if method == "cp":  # TPR (and so 1 - FNR) from below, FPR (and so 1 - TNR) from above
        a = 1.0 - confidence
        tpr_lo = np.where(tp > 0, beta.ppf(a, np.maximum(tp, 1), n_m - tp + 1), 0.0)
        fpr_hi = np.where(fp < n_n, beta.ppf(1 - a, fp + 1, np.maximum(n_n - fp, 1)), 1.0)
        fpr_a, fpr_b, tpr_a, tpr_b = fpr_hi, fpr_hi, tpr_lo, tpr_lo
    elif method == "point":  # raw rates; the denominator must hold at least one sample
        fpr_a = np.where(fp >= 1, fpr, np.nan)
        tpr_b = np.where(n_m - tp >= 1, tpr, np.nan)
        fpr_b, tpr_a = fpr, tpr
    else:
        raise ValueError(f"unknown method {method!r}; valid: cp, point")
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log((tpr_a - delta) / fpr_a)
        e2 = np.log((1.0 - fpr_b - delta) / (1.0 - tpr_b))
    vals = np.concatenate([e1, e2])
    vals = vals[np.isfinite(vals)]
    return float(max(0.0, vals.max())) if vals.size else 0.0
