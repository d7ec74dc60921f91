"""The privacy-utility report of the defenses (M4I section 5, notebook 09): one summary row per defense
(utility and attack strength) and the privacy-utility plot."""

from __future__ import annotations

from typing import Any

import pandas as pd

from m4i_utils.experiments.defenses import DefenseRun


def summary_table(runs: list[DefenseRun]) -> pd.DataFrame:
    """One row per defense: utility, MB / FB accuracy, AUC (CI), TPR at 1% / 0.1% FPR."""

    out = []
    for run in runs:
        row: dict[str, Any] = {"defense": run.defense.label, "kind": run.defense.name}
        row["strength"] = run.defense.strength
        row.update(run.utility)
        for r in run.rows:
            a = "mb" if r["attack"] == "mb_svm" else "fb"
            for m in ("accuracy", "auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
                row[f"{a}_{m}"] = r[m]
        row["train_seconds"] = run.target.build_seconds
        out.append(row)
    return pd.DataFrame(out).set_index("defense")


def plot_privacy_utility(summary: pd.DataFrame):
    """ROUGE-L (x) vs attack AUC and vs TPR at 1% FPR (y), one curve per defense and attack, the undefended
    point marked with a star (paper section 5)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = {"l2": "#2ca02c", "augment": "#ff7f0e"}
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


def plot_dp_sweep(utility: pd.DataFrame, attacks: pd.DataFrame):
    """The DP study's privacy-utility curve (notebook 09): against the accountant's epsilon (log axis; the
    non-private control and the undefended twin at the right, marked), held-out BLEU-1 and ROUGE-L beside
    the constant caption (left), and each attack's AUC and TPR at 1% FPR (right).

    Args:
        utility: one row per model (index: model name; ``bleu1``, ``rougeL``, ``accountant_epsilon``) plus a
            ``constant caption`` row.
        attacks: one row per model and attack (``defense``, ``attack``, ``auc``, ``tpr_at_1pct_fpr``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    dp = utility[np.isfinite(utility.accountant_epsilon.astype(float))].sort_values("accountant_epsilon")
    right = float(dp.accountant_epsilon.max()) * 4 if len(dp) else 1.0
    place = {name: eps for name, eps in dp.accountant_epsilon.items()}
    place |= {"control": right, "twin": right * 2}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    ax = axes[0]
    for metric, color in (("bleu1", "#1f77b4"), ("rougeL", "#d62728")):
        names = [n for n in place if n in utility.index]
        ax.plot([place[n] for n in names], utility.loc[names, metric], "o-", color=color, label=metric)
        if "constant caption" in utility.index:
            ax.axhline(utility.loc["constant caption", metric], color=color, ls=":", lw=1,
                       label=f"{metric}, constant caption")  # fmt: skip
    ax.set_ylabel("held-out utility")
    ax.set_title("Utility against epsilon")
    ax.legend(fontsize=7)
    ax = axes[1]
    for (attack, metric), style in zip(
        [(a, m) for a in sorted(attacks.attack.unique()) for m in ("auc", "tpr_at_1pct_fpr")],
        ("o-", "s--", "^-", "v--"),
        strict=False,
    ):
        part = attacks[attacks.attack == attack].set_index("defense")
        names = [n for n in place if n in part.index]
        ax.plot([place[n] for n in names], part.loc[names, metric], style, label=f"{attack} {metric}")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("attack AUC / TPR at 1% FPR")
    ax.set_title("Attacks against epsilon")
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("accountant epsilon (control and undefended twin: no DP, at the right)")
        for name in ("control", "twin"):
            ax.axvline(place[name], color="grey", lw=0.5)
            ax.annotate(name, (place[name], ax.get_ylim()[0]), fontsize=7, rotation=90, va="bottom")
    fig.tight_layout()
    return fig
