"""The DP audits on mechanisms whose epsilon is known: the bound stays below the truth and approaches it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from m4i_utils.attacks import dp_audit


def _randomized_response(included: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    """eps-DP per canary: report the coin with probability e^eps / (1 + e^eps), else its flip."""
    keep = rng.random(len(included)) < 1.0 / (1.0 + math.exp(-eps))
    return np.where(keep, included, 1 - included).astype(float)


def _gaussian_delta(eps: float, sigma: float) -> float:
    """The exact delta(eps) of the Gaussian mechanism with sensitivity 1 and noise sigma (Balle & Wang
    2018, Theorem 8)."""
    return norm.cdf(0.5 / sigma - eps * sigma) - math.exp(eps) * norm.cdf(-0.5 / sigma - eps * sigma)


def _gaussian_eps(delta: float, sigma: float) -> float:
    lo, hi = 0.0, 50.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _gaussian_delta(mid, sigma) > delta else (lo, mid)
    return hi


def test_p_value_is_the_binomial_tail_without_delta() -> None:
    from scipy.stats import binom

    q = 1 / (1 + math.exp(-1.0))
    assert dp_audit.one_run_p_value(100, 50, 40, 1.0, 0.0) == pytest.approx(binom.sf(39, 50, q))
    # the delta term only makes the null harder to reject
    assert dp_audit.one_run_p_value(100, 50, 40, 1.0, 1e-3) > dp_audit.one_run_p_value(100, 50, 40, 1.0, 0.0)


def test_one_run_bound_on_randomized_response_is_valid_and_tight() -> None:
    """Guessing every canary of eps-randomized response: the bound falls below eps in (nearly) every trial
    (95% confidence) and within 0.15 of it with 20,000 canaries."""
    eps = 1.0
    bounds = []
    for trial in range(100):
        rng = np.random.default_rng(trial)
        included = rng.integers(0, 2, 20_000)
        out = _randomized_response(included, eps, rng)
        audit = dp_audit.one_run_audit(included, out, 0.0, k_pos=int((out == 1).sum()),
                                       k_neg=int((out == 0).sum()), seed=trial)  # fmt: skip
        bounds.append(audit.eps_lb)
    bounds = np.array(bounds)
    assert (bounds > eps).mean() <= 0.10  # at most 5% expected above; 10% leaves room for 100 trials
    assert np.median(bounds) > eps - 0.15


def test_one_run_bound_on_the_gaussian_mechanism_stays_below_its_epsilon() -> None:
    """Canaries through a Gaussian mechanism (score = coin + N(0, sigma^2)); guessing only the most confident
    tails: the bound stays below the mechanism's exact epsilon at that delta, and is far from 0."""
    sigma, delta = 2.0, 1e-5  # epsilon 1.99 at this delta
    true_eps = _gaussian_eps(delta, sigma)
    rng = np.random.default_rng(0)
    included = rng.integers(0, 2, 50_000)
    scores = included + sigma * rng.standard_normal(len(included))
    audit = dp_audit.one_run_audit_grid(included, scores, delta, ((500, 500), (2000, 2000), (200, 0)))
    assert 0.5 * true_eps < audit.eps_lb < true_eps
    assert audit.guesses in (1000, 4000, 200) and "Bonferroni" in audit.detail


def test_one_run_bound_is_zero_without_leakage_and_ties_break_randomly() -> None:
    rng = np.random.default_rng(1)
    included = rng.integers(0, 2, 2000)
    assert dp_audit.one_run_audit(included, rng.standard_normal(2000), 1e-5, 100, 100).eps_lb < 0.5
    # constant scores over sorted labels: a positional tie-break would guess the last (all "in") canaries
    ordered = np.sort(included)
    assert dp_audit.one_run_audit(ordered, np.zeros(2000), 0.0, 200).eps_lb == 0.0


def test_threshold_audit_on_independent_trials_of_randomized_response() -> None:
    """One trial per 'model': the held-out threshold + Clopper-Pearson bound stays below eps."""
    eps = 2.0
    rng = np.random.default_rng(3)
    cal = rng.integers(0, 2, 4000)
    test = rng.integers(0, 2, 4000)
    audit = dp_audit.threshold_audit(cal, _randomized_response(cal, eps, rng), test,
                                     _randomized_response(test, eps, rng), delta=0.0)  # fmt: skip
    assert 1.5 < audit.eps_lb < eps


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_pos": 3000}, "k_pos \\+ k_neg"),
        ({"k_pos": -1}, "k_pos, k_neg >= 0"),
        ({"k_pos": 1.5}, "integers"),
    ],
)
def test_one_run_audit_rejects_bad_guesses(kwargs, match) -> None:
    included = np.r_[np.ones(1000), np.zeros(1000)]
    with pytest.raises(ValueError, match=match):
        dp_audit.one_run_audit(included, np.zeros(2000), 1e-5, **kwargs)


def test_audits_reject_bad_labels_and_scores() -> None:
    with pytest.raises(ValueError, match="0 \\(out\\) or 1 \\(in\\)"):
        dp_audit.one_run_audit(np.array([0, 2]), np.zeros(2), 0.0, 1)
    with pytest.raises(ValueError, match="not finite"):
        dp_audit.one_run_audit(np.array([0, 1]), np.array([0.0, np.nan]), 0.0, 1)
    with pytest.raises(ValueError, match="both members and non-members"):
        dp_audit.threshold_audit(np.ones(4), np.zeros(4), np.r_[0, 1], np.zeros(2), 0.0)
