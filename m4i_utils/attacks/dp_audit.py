"""DP audits: empirical lower bounds on epsilon to set beside a DP-trained model's accountant epsilon (M4I
section 5, notebook 09).

Two audits with a stated, valid statistical analysis (docs/paper_notes.md, 'Evaluation practice'):

- :func:`one_run_audit`: Steinke, Nasr and Jagielski (NeurIPS 2023), "Privacy Auditing with One (1) Training
  Run". ``m`` canaries are each included in the training set by an independent fair coin; after one training
  run the auditor guesses "in" for the ``k_pos`` highest scores and "out" for the ``k_neg`` lowest and
  abstains on the rest. Under (epsilon, delta)-DP the number of correct guesses is stochastically dominated by
  Binomial(r, e^eps / (1 + e^eps)) up to a delta term (their Theorem 3.1 and Proposition 5.2), which
  :func:`one_run_p_value` evaluates; the bound is the largest epsilon this null rejects at the confidence
  level. It needs no independence across training runs: the randomness is the canaries' coins.
- :func:`threshold_audit`: several independently trained models, one query each (Jagielski et al. 2020, Nasr
  et al. 2021). The threshold is fixed on calibration data before the audit data are seen, and one pair of
  Clopper-Pearson bounds (TPR from below, FPR from above, Bonferroni over the two) gives
  ``log((TPR_lo - delta) / FPR_hi)``. Its trials must be independent: one query per trained model, never many
  queries to one model.

Both are tested on mechanisms whose epsilon is known (randomized response, the Gaussian mechanism): the bound
sits below the true epsilon and approaches it with enough trials.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AuditResult:
    """One audit's empirical lower bound on epsilon and what it rests on."""

    method: str  # "one-run (Steinke et al. 2023)" or "threshold + Clopper-Pearson"
    eps_lb: float  # the empirical lower bound (0.0: no evidence of any leakage)
    confidence: float  # the bound holds with at least this probability
    delta: float  # the delta the bound is for
    trials: int  # canaries (one-run) or audit trials (threshold)
    guesses: int  # guesses made (one-run: k_pos + k_neg; threshold: trials)
    correct: int  # correct guesses (one-run) or true positives (threshold)
    detail: str = ""  # k_pos / k_neg or the threshold, in words

    def as_dict(self) -> dict:
        return asdict(self)


def one_run_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P[at least ``v`` of ``r`` guesses correct] on ``m`` canaries under the null "(eps, delta)-DP".

    Steinke, Nasr and Jagielski (2023), Theorem 3.1 with the delta term of their Proposition 5.2: the tail
    of Binomial(r, q), q = e^eps / (1 + e^eps) the accuracy of eps-randomized response, plus
    ``2 m delta max_i P[v > Binomial(r, q) >= v - i] / i``.
    """
    from scipy.stats import binom

    if not (0 <= v <= r <= m):
        raise ValueError(f"need 0 <= v <= r <= m, got m={m}, r={r}, v={v}")
    if eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need eps >= 0 and 0 <= delta <= 1, got eps={eps}, delta={delta}")
    q = 1.0 / (1.0 + math.exp(-eps))
    tail = float(binom.sf(v - 1, r, q))
    alpha = 0.0
    if delta > 0 and v > 0:
        below = np.cumsum(binom.pmf(np.arange(v - 1, -1, -1), r, q))  # P[v > Bin >= v - i], i = 1..v
        alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(1.0, tail + 2.0 * m * delta * alpha)


def one_run_epsilon(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """The largest epsilon the one-run null rejects at ``confidence`` (0.0 when even epsilon 0 is not
    rejected): with probability at least ``confidence`` the mechanism is not (eps, delta)-DP for any smaller
    eps. Bisection to 1e-6."""
    level = 1.0 - confidence
    if r == 0 or one_run_p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m, r, v, hi, delta) < level:
        lo, hi = hi, 2.0 * hi
        if hi > 1e3:  # every guess right on a huge r: report the last rejected value
            return lo
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        if one_run_p_value(m, r, v, mid, delta) < level:
            lo = mid
        else:
            hi = mid
    return lo


def _check(labels: np.ndarray, scores: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"{what}: labels and scores must be 1-d of one length, got {labels.shape} and "
                         f"{scores.shape}")  # fmt: skip
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 (out) or 1 (in)")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what}: {int((~np.isfinite(scores)).sum())} scores are not finite")
    return labels.astype(int), scores


def one_run_audit(
    included: np.ndarray,
    scores: np.ndarray,
    delta: float,
    k_pos: int,
    k_neg: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> AuditResult:
    """The one-run audit of Steinke, Nasr and Jagielski (2023) on canaries.

    Args:
        included: per canary, 1 if its fair coin put it into the training set (the coins must be independent
            and drawn before training; that is what makes the bound valid).
        scores: per canary, the attack's membership score (higher = more likely included), computed without
            looking at ``included``.
        delta: the delta of the bound (the accountant's).
        k_pos, k_neg: guess "in" for the ``k_pos`` highest scores, "out" for the ``k_neg`` lowest; fix them
            before looking at the scores (choosing them on the result voids the confidence level; use a
            pre-declared grid and Bonferroni, as :func:`one_run_audit_grid` does).
        seed: ties in ``scores`` are broken by a random order drawn from it (never by position, which could
            follow the labels).
    """
    included, scores = _check(included, scores, "one_run_audit")
    m = len(scores)
    if not (isinstance(k_pos, int | np.integer) and isinstance(k_neg, int | np.integer)):
        raise ValueError(f"k_pos and k_neg must be integers, got {k_pos!r} and {k_neg!r}")
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > m:
        raise ValueError(f"need k_pos, k_neg >= 0 and k_pos + k_neg <= {m} canaries, got {k_pos}, {k_neg}")
    perm = np.random.default_rng(seed).permutation(m)
    order = perm[np.argsort(scores[perm], kind="stable")]  # ascending score, ties in random order
    guess_in = order[m - k_pos :] if k_pos else order[:0]
    guess_out = order[:k_neg]
    r = int(k_pos + k_neg)
    v = int(included[guess_in].sum() + (1 - included[guess_out]).sum())
    eps = one_run_epsilon(m, r, v, delta, confidence)
    return AuditResult("one-run (Steinke et al. 2023)", eps, confidence, delta, m, r, v,
                       f"k_pos={k_pos}, k_neg={k_neg}")  # fmt: skip


def one_run_audit_grid(
    included: np.ndarray,
    scores: np.ndarray,
    delta: float,
    ks: tuple[tuple[int, int], ...],
    confidence: float = 0.95,
    seed: int = 0,
) -> AuditResult:
    """:func:`one_run_audit` at each pre-declared ``(k_pos, k_neg)`` of ``ks``, each at confidence
    ``1 - (1 - confidence) / len(ks)`` (Bonferroni), and the largest bound: valid at ``confidence``."""
    if not ks:
        raise ValueError("ks must name at least one (k_pos, k_neg)")
    each = 1.0 - (1.0 - confidence) / len(ks)
    best = max((one_run_audit(included, scores, delta, kp, kn, each, seed) for kp, kn in ks),
               key=lambda a: a.eps_lb)  # fmt: skip
    return AuditResult(best.method, best.eps_lb, confidence, delta, best.trials, best.guesses, best.correct,
                       f"{best.detail} (best of {len(ks)} pre-declared, Bonferroni)")  # fmt: skip


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds on a binomial rate: (lower, upper), each holding at ``confidence``."""
    from scipy.stats import beta

    a = 1.0 - confidence
    lo = float(beta.ppf(a, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(1 - a, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def threshold_audit(
    cal_labels: np.ndarray,
    cal_scores: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    delta: float,
    confidence: float = 0.95,
) -> AuditResult:
    """Threshold audit over independent trials (one query per independently trained model).

    The threshold is the one that maximises ``log(TPR / FPR)`` on the calibration trials (among thresholds
    with at least 5% of the calibration non-members above it, so that the rate is estimable); the audit
    trials then give one Clopper-Pearson lower bound on TPR and upper bound on FPR, each at
    ``1 - (1 - confidence) / 2``, and the bound ``log((TPR_lo - delta) / FPR_hi)``.
    """
    cal_labels, cal_scores = _check(cal_labels, cal_scores, "threshold_audit (calibration)")
    labels, scores = _check(labels, scores, "threshold_audit (audit)")
    for name, lab in (("calibration", cal_labels), ("audit", labels)):
        if lab.min() == lab.max():
            raise ValueError(f"threshold_audit: the {name} trials need both members and non-members")
    out_sorted = np.sort(cal_scores[cal_labels == 0])
    floor = max(1, int(np.ceil(0.05 * len(out_sorted))))
    candidates = np.unique(cal_scores)
    best_t, best_ratio = candidates[0], -np.inf
    for t in candidates:
        fp = int((out_sorted >= t).sum())
        if fp < floor:
            continue
        tpr = (cal_scores[cal_labels == 1] >= t).mean()
        ratio = np.log(max(tpr, 1e-12) / (fp / len(out_sorted)))
        if ratio > best_ratio:
            best_t, best_ratio = t, ratio
    n_in, n_out = int(labels.sum()), int((1 - labels).sum())
    tp = int((scores[labels == 1] >= best_t).sum())
    fp = int((scores[labels == 0] >= best_t).sum())
    each = 1.0 - (1.0 - confidence) / 2.0
    tpr_lo, _ = clopper_pearson(tp, n_in, each)
    _, fpr_hi = clopper_pearson(fp, n_out, each)
    eps = math.log((tpr_lo - delta) / fpr_hi) if tpr_lo > delta and fpr_hi > 0 else 0.0
    return AuditResult("threshold + Clopper-Pearson", max(0.0, eps), confidence, delta, len(labels),
                       len(labels), tp, f"threshold {best_t:.4g} fixed on {len(cal_labels)} calibration "
                       f"trials; TP {tp}/{n_in}, FP {fp}/{n_out}")  # fmt: skip
