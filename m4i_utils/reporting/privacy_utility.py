"""The privacy-utility report of the defenses (M4I section 5, notebook 09): one summary row per defense
(utility, attack strength, accountant epsilon and the empirical epsilon lower bounds) and the
privacy-utility plot."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from m4i_utils.attacks.dp_audit import epsilon_lower_bound
from m4i_utils.experiments.defenses import DefenseRun


def summary_table(runs: list[DefenseRun], delta: float) -> pd.DataFrame:
    """One row per defense: utility, MB / FB accuracy, AUC (CI), TPR at 1% / 0.1% FPR, the accountant's
    epsilon (DP only) and the empirical epsilon lower bounds (Clopper-Pearson 95%, and point)
    of both attacks."""

    out = []
    for run in runs:
        row: dict[str, Any] = {"defense": run.defense.label, "kind": run.defense.name}
        row["strength"] = run.defense.strength
        row.update(run.utility)
        for res, r in zip(run.results, run.rows, strict=True):
            a = "mb" if r["attack"] == "mb_svm" else "fb"
            for m in ("accuracy", "auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
                row[f"{a}_{m}"] = r[m]
            row[f"{a}_eps_lb"] = epsilon_lower_bound(res.labels, res.scores, delta)
            row[f"{a}_eps_lb_point"] = epsilon_lower_bound(res.labels, res.scores, delta, method="point")
        row["accountant_epsilon"] = run.target.history.get("epsilon", math.inf)
        row["shadow_accountant_epsilon"] = run.shadow.history.get("epsilon", math.inf)
        row["noise_multiplier"] = run.target.history.get("noise_multiplier", 0.0)
        row["train_seconds"] = run.target.build_seconds
        out.append(row)
    return pd.DataFrame(out).set_index("defense")


def plot_privacy_utility(summary: pd.DataFrame):
    """ROUGE-L (x) vs attack AUC and vs TPR at 1% FPR (y), one curve per defense and attack, the undefended
    point marked with a star (paper section 5)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = {"dp": "#1f77b4", "l2": "#2ca02c", "augment": "#ff7f0e"}
    base = summary[summary.kind == "none"]
    for ax, metric, name in zip(axes, ("auc", "tpr_at_1pct_fpr"), ("AUC", "TPR at 1% FPR"), strict=True):
        for attack, style in (("mb", "-"), ("fb", "--")):
            for kind, color in colors.items():
                part = summary[summary.kind == kind].sort_values("strength")
                if not len(part):
                    continue
                part = pd.concat([base, part])
                ax.plot(
                    part.rougeL,
                    part[f"{attack}_{metric}"],
                    style,
                    marker="o",
                    color=color,
                    label=f"{attack.upper()} {kind}",
                )
                for label, r in part.iloc[1:].iterrows():
                    ax.annotate(label, (r.rougeL, r[f"{attack}_{metric}"]), fontsize=6)
            if len(base):
                ax.plot(
                    base.rougeL,
                    base[f"{attack}_{metric}"],
                    "*",
                    ms=14,
                    color="k",
                    label=f"{attack.upper()} undefended" if attack == "mb" else None,
                )
        if metric == "auc":
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("target ROUGE-L (test split)")
        ax.set_ylabel(f"attack {name}")
        ax.set_title(f"Privacy-utility: ROUGE-L vs {name} (solid MB, dashed FB)")
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
