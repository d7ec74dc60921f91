"""Tables that set our grid results beside the paper's, and attack ablations.

The paper's numbers (``PAPER_RANGES``) are listed in docs/paper_notes.md, section 'M4I: headline numbers'.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from m4i_utils.attacks.registry import make_attack
from m4i_utils.core.config import Config
from m4i_utils.core.metrics import chance_verdict
from m4i_utils.experiments import attack_grid

# Attack success rates the paper reports per scenario: (low, high, mean); None where it gives no number.
PAPER_RANGES: dict[str, dict[str, tuple[float | None, float | None, float | None]]] = {
    "mb": {
        "unrestricted": (None, 0.81, 0.725),
        "data_only": (0.65, 0.75, None),
        "constrained": (0.51, 0.76, None),
    },
    "fb": {
        "unrestricted": (None, None, 0.9483),
        "data_only": (0.75, 0.90, None),
        "constrained": (0.50, 0.68, None),
    },
}


CI_COLUMNS: tuple[str, ...] = ("accuracy_ci_low", "accuracy_ci_high", "auc_ci_low", "auc_ci_high")


def _paper_text(low: float | None, high: float | None, mean: float | None) -> str:
    parts = []
    if mean is not None:
        parts.append(f"mean {mean:.1%}")
    if low is not None or high is not None:
        lo = f"{low:.0%}" if low is not None else "?"
        parts.append(f"range {lo}-{high:.0%}" if high is not None else f"from {lo}")
    return ", ".join(parts)


def scenario_summary(grid: pd.DataFrame, attack: str) -> pd.DataFrame:
    """Mean / min / max attack success and mean AUC, TPR@1% and TPR@0.1% FPR per (setting, scenario).

    Where the grid has bootstrap CI columns (``accuracy_ci_low`` / ``_high``, ``auc_ci_low`` / ``_high``), the
    summary carries the mean of the cells' CI bounds under the same names (a conservative interval for the
    scenario's mean; NaN without CIs, ``n_bootstrap=0``): :func:`scenario_sentences` compares it with chance.
    """
    g = grid.groupby(["setting", "scenario"])
    out = pd.DataFrame(
        {
            "cells": g.size(),
            "accuracy_mean": g["accuracy"].mean(),
            "accuracy_min": g["accuracy"].min(),
            "accuracy_max": g["accuracy"].max(),
            "auc_mean": g["auc"].mean(),
            "tpr_at_1pct_fpr_mean": g["tpr_at_1pct_fpr"].mean(),
            "tpr_at_0_1pct_fpr_mean": g["tpr_at_0_1pct_fpr"].mean(),
        }
    )
    for col in CI_COLUMNS:
        if col in grid.columns:
            out[col] = g[col].mean()
    paper = PAPER_RANGES.get(attack, {})
    out["paper_accuracy"] = [_paper_text(*paper[s]) if s in paper else "not in paper" for _, s in out.index]
    return out


def seed_spread(
    grid: pd.DataFrame, metrics: tuple[str, ...] = ("accuracy", "auc", "tpr_at_1pct_fpr")
) -> pd.DataFrame:
    """Spread over training seeds: per (setting, scenario), each training seed's mean over the grid's cells,
    then the mean, sd (ddof 1) and number of seeds of those means.

    The bootstrap CIs of :func:`scenario_summary` reflect which records were queried; this reflects how a
    differently seeded training of the same captioners (same splits and trunks) changes the result.
    """
    seed_col = "train_seed" if "train_seed" in grid.columns else None
    keys = ["setting", "scenario"] + ([seed_col] if seed_col else [])
    per_seed = grid.groupby(keys)[list(metrics)].mean().reset_index()
    g = per_seed.groupby(["setting", "scenario"])
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{'sd' if stat == 'std' else 'mean'}_over_seeds" for m, stat in out.columns]
    out["n_train_seeds"] = g.size()
    return out


def _known(x: object) -> bool:
    return x is not None and not pd.isna(x)


def paper_verdict(
    accuracy: float | None,
    ci_low: float | None,
    ci_high: float | None,
    paper: tuple[float | None, float | None, float | None],
    tolerance: float = 0.02,
) -> str:
    """Verdict on one attack success rate: against chance first (its confidence interval), then the paper.

    Args:
        accuracy: our attack success rate (accuracy).
        ci_low, ci_high: its confidence interval (or the AUC's; chance is 0.5 for both).
        paper: the paper's ``(low, high, mean)`` (:data:`PAPER_RANGES`; None where it gives no number).
        tolerance: slack around the paper's range (a mean only: 0.05 around it).
    Returns:
        ``"below chance (inverted)"`` when the CI lies below 0.5, ``"at chance"`` when it includes 0.5
        (:func:`m4i_utils.core.metrics.chance_verdict`), otherwise
        ``"in line with the paper"`` (inside the paper's range), ``"above chance but below the paper"`` or
        ``"above the paper"``; without a CI, that chance could not be checked (never "in line").
    """
    nan = float("nan")
    chance = chance_verdict(ci_low if _known(ci_low) else nan, ci_high if _known(ci_high) else nan)
    if chance in ("below chance (inverted)", "at chance"):
        return chance
    if chance == "no CI":
        return "not compared with chance (no confidence interval: n_bootstrap=0)"
    if not _known(accuracy):
        return "above chance (no accuracy to compare with the paper)"
    low, high, mean = paper
    if low is None and high is None:
        if mean is None:
            return "above chance (the paper reports no number)"
        inside, below = abs(accuracy - mean) <= 0.05, accuracy < mean
    else:
        inside = (low is None or accuracy >= low - tolerance) and (
            high is None or accuracy <= high + tolerance
        )
        below = low is not None and accuracy < low - tolerance
    if inside:
        return "in line with the paper"
    return "above chance but below the paper" if below else "above the paper"


def _ci(row: pd.Series) -> tuple[str | None, float | None, float | None]:
    """``(metric, low, high)``: the row's accuracy CI, else its AUC CI (both have chance at 0.5)."""
    for metric in ("accuracy", "auc"):
        low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
        if _known(low) and _known(high):
            return metric, float(low), float(high)
    return None, None, None


def scenario_sentences(summary: pd.DataFrame, attack: str) -> list[str]:
    """One sentence per scenario comparing our mean attack success (both settings) with chance (via the
    summary's CI columns) and with the paper's numbers (:func:`paper_verdict`, iid setting)."""
    paper = PAPER_RANGES.get(attack, {})
    lines = []
    scenarios = [s for s in attack_grid.SCENARIOS if s in summary.index.get_level_values("scenario")]
    for scenario in scenarios:
        low, high, mean = paper.get(scenario, (None, None, None))
        parts = []
        for setting in ("iid", "shift"):
            if (setting, scenario) in summary.index:
                row = summary.loc[(setting, scenario)]
                metric, ci_low, ci_high = _ci(row)
                label = "CI" if metric == "accuracy" else "AUC CI"
                ci = f" [{label} {ci_low:.1%}-{ci_high:.1%}]" if metric else ""
                parts.append(f"{setting} {row.accuracy_mean:.1%}{ci} (AUC {row.auc_mean:.3f})")
        ours = "; ".join(parts)
        if low is None and high is None and mean is None:
            lines.append(f"{scenario}: {ours}; the paper reports no number for this scenario.")
            continue
        verdict = "not run"
        if ("iid", scenario) in summary.index:
            row = summary.loc[("iid", scenario)]
            verdict = paper_verdict(row.accuracy_mean, *_ci(row)[1:], (low, high, mean))
        lines.append(f"{scenario}: {ours}; paper {_paper_text(low, high, mean)} -> iid setting {verdict}.")
    return lines


def mb_ablations(cfg: Config, featurize_factory: Callable) -> pd.DataFrame:
    """Unrestricted-scenario (iid) MB variants: the configured SVM, the authors' exact SVM (libsvm, unscaled,
    C=1e5), the authors' ROUGE-1/2/L features, and a threshold on each single metric (paper section 3.1); on
    the captioners of the first training seed."""
    from m4i_utils.signals.text_similarity import AUTHORS_FEATURES

    def svm(**kw):
        return lambda: make_attack("mb_svm", cfg, **kw)

    main = dict(C=cfg.mb_svm_c, scale=cfg.mb_svm_scale, solver=cfg.mb_svm_solver)
    authors = dict(C=1e5, scale=False, solver="libsvm", kernel="linear")
    paper_feats = featurize_factory(cfg)
    variants: list[tuple[str, Callable, Callable]] = [
        (
            f"SVM {cfg.mb_svm_solver}, scale={cfg.mb_svm_scale} on {'/'.join(cfg.mb_features)}",
            paper_feats,
            svm(**main),
        ),
        ("authors' SVC(linear, C=1e5), unscaled", paper_feats, svm(**authors)),
        (
            f"SVM {cfg.mb_svm_solver} on authors' rouge1/rouge2/rougeL",
            featurize_factory(cfg, AUTHORS_FEATURES),
            svm(**main),
        ),
    ]
    for j, name in enumerate(cfg.mb_features):

        def single(model, part, attacker, j=j):
            return paper_feats(model, part, attacker)[:, j : j + 1]

        variants.append((f"threshold on {name}", single, "threshold"))
    rows = []
    for label, featurize, attack in variants:
        _, cell_rows = attack_grid.run_grid(
            cfg,
            featurize,
            attack,
            "ablation",
            label,
            settings=("iid",),
            scenarios=("unrestricted",),
            train_seeds=cfg.train_seeds[:1],
        )
        for r in cell_rows:
            rows.append(
                {"variant": label, **{k: r[k] for k in ("target", "accuracy", "auc", "tpr_at_1pct_fpr")}}
            )
    table = pd.DataFrame(rows)
    return table.groupby("variant", sort=False)[["accuracy", "auc", "tpr_at_1pct_fpr"]].mean().reset_index()
