"""Tests of the evaluation core: metrics, thresholds, bootstrap CIs, plots and the results table."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from m4i_utils.core.metrics import (
    AttackResult,
    _count_matrix,
    _curve_metrics,
    choose_threshold,
    compute_metrics,
    tpr_at_fpr,
)
from m4i_utils.core.runstore import RESULT_COLUMNS, read_results, result_row, upsert_results
from m4i_utils.reporting.figures import plot_attack_heatmap, plot_roc

matplotlib.use("Agg")


def _result(scores, labels, threshold=None, **meta) -> AttackResult:
    return AttackResult(
        scores=np.asarray(scores, float), labels=np.asarray(labels), threshold=threshold, meta=meta
    )


def test_attack_result_validates() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        _result([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0 \\(non-member\\) or 1"):
        _result([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        _result([[0.1, 0.2]], [[1, 0]])
    with pytest.raises(ValueError, match="non-finite"):
        _result([np.nan, 0.2], [1, 0])
    res = _result([0.1, 0.9], [0, 1], threshold=0.5)
    assert res.n_members == 1 and res.n_nonmembers == 1
    assert list(res.predictions()) == [0, 1]


def test_perfect_and_reversed_separation() -> None:
    labels = np.r_[np.ones(1000, int), np.zeros(1000, int)]
    scores = np.r_[np.linspace(1, 2, 1000), np.linspace(-1, 0, 1000)]
    m = compute_metrics(_result(scores, labels, threshold=0.5), n_bootstrap=50)
    assert m["auc"] == 1.0 and m["tpr_at_1pct_fpr"] == 1.0 and m["tpr_at_0_1pct_fpr"] == 1.0
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0 and m["best_accuracy"] == 1.0
    assert m["n_members"] == 1000 and m["n_nonmembers"] == 1000
    assert m["auc_verdict"] == "above chance" and not m["degenerate"]
    r = compute_metrics(_result(-scores, labels, threshold=0.0), n_bootstrap=50)
    assert r["auc"] == 0.0 and r["tpr_at_1pct_fpr"] == 0.0 and r["accuracy"] == 0.0
    assert r["best_accuracy"] == 0.5  # predicting everyone a non-member
    assert r["auc_verdict"] == "below chance (inverted)"


def test_low_fpr_needs_enough_nonmembers_and_constant_scores_are_degenerate() -> None:
    from m4i_utils.core.metrics import min_nonmembers, tpr_label

    labels = np.r_[np.ones(500, int), np.zeros(500, int)]
    scores = np.r_[np.linspace(1, 2, 500), np.linspace(-1, 0, 500)]
    m = compute_metrics(_result(scores, labels, threshold=0.5), n_bootstrap=20)
    assert m["tpr_at_1pct_fpr"] == 1.0 and np.isnan(m["tpr_at_0_1pct_fpr"])  # 500 < 1,000 non-members
    assert min_nonmembers(0.001) == 1000 and min_nonmembers(0.01) == 100
    assert tpr_label(m["tpr_at_0_1pct_fpr"], 500, 0.001) == "needs >= 1,000 non-members"
    assert tpr_label(0.25, 1000, 0.001) == "0.250"
    flat = compute_metrics(_result(np.zeros(1000), labels, threshold=0.5), n_bootstrap=20)
    assert flat["degenerate"] and flat["auc_verdict"] == "degenerate (constant scores)"


def test_random_scores_are_at_chance() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(1000, int), np.zeros(1000, int)]
    m = compute_metrics(_result(rng.normal(size=2000), labels, threshold=0.0), n_bootstrap=200, seed=3)
    assert abs(m["auc"] - 0.5) < 0.05
    assert m["auc_ci_low"] <= 0.5 <= m["auc_ci_high"]
    assert m["accuracy_ci_low"] <= 0.5 <= m["accuracy_ci_high"]
    assert m["best_accuracy"] >= m["accuracy"]


def test_tpr_at_fpr_exact_small_example() -> None:
    # members 0.9, 0.8, 0.3; non-members 0.7, 0.2, 0.1 -> ROC: (0,1/3) (0,2/3) (1/3,2/3) (1/3,1) (2/3,1) (1,1)
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(labels, scores, 0.2) == pytest.approx(2 / 3)
    assert tpr_at_fpr(labels, scores, 1 / 3) == pytest.approx(1.0)
    # ties between a member and a non-member: the tied point is (1/2, 1) only
    assert tpr_at_fpr(np.array([1, 0]), np.array([0.5, 0.5]), 0.4) == 0.0
    with pytest.raises(ValueError, match="members and non-members"):
        tpr_at_fpr(np.array([1, 1]), np.array([0.1, 0.2]), 0.1)


def test_choose_threshold_maximises_accuracy() -> None:
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    thr = choose_threshold(labels, scores)
    acc = np.mean((scores >= thr) == (labels == 1))
    assert acc == pytest.approx(7 / 8)
    assert thr == pytest.approx(0.35)  # midpoint; ties with 0.55 go to the lowest candidate
    # everyone a member / nobody a member
    assert choose_threshold(np.array([1, 1]), np.array([0.2, 0.4])) < 0.2
    assert choose_threshold(np.array([0, 0]), np.array([0.2, 0.4])) > 0.4
    # brute force on random data
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    thr = choose_threshold(y, s)
    best = max(np.mean((s >= t) == (y == 1)) for t in np.r_[s, s.max() + 1])
    assert np.mean((s >= thr) == (y == 1)) == pytest.approx(best)


def test_accuracy_at_threshold_and_balanced() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.3, 0.0])
    m = compute_metrics(_result(scores, labels, threshold=0.5), n_bootstrap=0)
    assert m["accuracy"] == pytest.approx(4 / 6)  # 2 TP + 2 TN
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert math.isnan(m["auc_ci_low"])
    none = compute_metrics(_result(scores, labels), n_bootstrap=20)
    assert math.isnan(none["accuracy"]) and math.isnan(none["accuracy_ci_low"])
    assert not math.isnan(none["auc_ci_low"])


def test_bootstrap_ci_ordering_and_determinism() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(3000, int), np.zeros(3000, int)]
    scores = rng.normal(size=6000) + 0.5 * labels
    res = _result(scores, labels, threshold=0.25)
    m = compute_metrics(res, n_bootstrap=200, seed=0)
    for key in ("accuracy", "auc", "tpr_at_1pct_fpr"):
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key
        assert m[f"{key}_ci_low"] < m[f"{key}_ci_high"], key
    again = compute_metrics(res, n_bootstrap=200, seed=0)
    assert again == m


def test_vectorised_curve_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(300, int), np.zeros(400, int)]
    scores = np.round(rng.normal(size=700) + 0.7 * labels, 1)  # many ties
    uniq, inv = np.unique(scores, return_inverse=True)
    mem = _count_matrix(np.flatnonzero(labels == 1)[None, :], inv, uniq.size)
    non = _count_matrix(np.flatnonzero(labels == 0)[None, :], inv, uniq.size)
    out = _curve_metrics(mem, non, fprs=(0.01, 0.1))
    assert out["auc"][0] == pytest.approx(roc_auc_score(labels, scores))
    assert out[0.01][0] == pytest.approx(tpr_at_fpr(labels, scores, 0.01))
    assert out[0.1][0] == pytest.approx(tpr_at_fpr(labels, scores, 0.1))


def test_result_table_upsert(tmp_path: Path) -> None:
    from m4i_utils.core.config import resolve_profile

    cfg = resolve_profile("smoke", {"run_dir": str(tmp_path / "results")})
    path = cfg.figures_dir / "results.csv"
    assert list(read_results(path).columns) == list(RESULT_COLUMNS)
    labels = np.r_[np.ones(20, int), np.zeros(20, int)]
    res = _result(np.r_[np.ones(20), np.zeros(20)], labels, 0.5, experiment="exp_a", attack="x", seed=0)
    row = result_row(res, compute_metrics(res, n_bootstrap=10))
    assert set(row) | {"run_id", "overrides"} == set(RESULT_COLUMNS)
    upsert_results(cfg, [row, {**row, "attack": "y"}], "exp_a")
    other = {**row, "experiment": "exp_b"}
    upsert_results(cfg, [other], "exp_b")
    table = upsert_results(cfg, [{**row, "attack": "z"}], "exp_a")  # re-running a run replaces its rows
    assert len(table) == 2
    disk = read_results(path)
    assert sorted(disk["experiment"]) == ["exp_a", "exp_b"]
    assert disk.loc[disk["experiment"] == "exp_a", "attack"].tolist() == ["z"]
    assert set(disk["run_id"]) == {cfg.run_id}
    assert list(disk.columns)[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="not 'exp_c'"):
        upsert_results(cfg, [row], "exp_c")


def test_plots_draw() -> None:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    results = [_result(rng.normal(size=200) + k * labels, labels) for k in (0.0, 1.0)]
    fig, axes = plt.subplots(1, 3)
    plot_roc(results, ["noise", "signal"], ax=axes[0], title="ROC")
    ax = plot_roc(results, ["noise", "signal"], ax=axes[1], log=True)
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] == pytest.approx(1e-4)
    assert "AUC" in ax.get_legend().get_texts()[0].get_text()
    table = pd.DataFrame(
        {
            "shadow": ["CR", "CR", "FV", "FV"],
            "target": ["CR", "FV", "FV", "CR"],
            "scenario": ["unrestricted", "constrained", "unrestricted", "constrained"],
            "accuracy": [0.81, 0.55, 0.7, np.nan],
        }
    )
    ax = plot_attack_heatmap(table, ax=axes[2], title="MB")
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["55.0", "70.0", "81.0"]  # the NaN cell stays blank
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["unrestricted", "constrained"]
    plt.close(fig)
