"""The privacy-utility report of the defenses (M4I section 5, notebook 09): the defense grid's tables (mean
and sd over training seeds), the DP study's sweep, and one figure that places every defense."""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("accuracy", "auc", "tpr_at_1pct_fpr")


def _seed_spread(table: pd.DataFrame, keys: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per ``keys`` and training seed the mean over the remaining rows (targets, cells), then the mean and
    sd (ddof 1) of those per-seed means over the seeds, with ``n_seeds`` and ``n_per_seed``."""
    per_seed = table.groupby([*keys, "train_seed"], sort=False)[list(metrics)].mean()
    counts = table.groupby([*keys, "train_seed"], sort=False).size()
    out = per_seed.groupby(level=keys, sort=False).agg(["mean", "std"])
    out.columns = [f"{m}_{'sd' if stat == 'std' else stat}" for m, stat in out.columns]
    out["n_seeds"] = per_seed.groupby(level=keys, sort=False).size()
    out["n_per_seed"] = counts.groupby(level=keys, sort=False).max()
    return out.reset_index()


def defense_attack_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The defense grid's attacks (notebook 09): per defense, attack and scenario, the mean over the grid's
    cells of each training seed, then mean and sd over the seeds (accuracy, AUC, TPR at 1% FPR)."""
    keys = ["defense", "defense_kind", "defense_strength", "attack", "scenario"]
    return _seed_spread(rows, keys, METRICS)


def defense_utility_table(utility: pd.DataFrame) -> pd.DataFrame:
    """The defended targets' held-out utility: per defense the mean over the six targets of each training
    seed, then mean and sd over the seeds, beside the constant caption of the same test sets."""
    cols = ("bleu1", "bleu4", "rougeL", "baseline_bleu1", "baseline_rougeL")
    return _seed_spread(utility, ["defense", "defense_kind", "defense_strength"], cols)


def _argmax(values: pd.Series):
    """The index of the largest value, or None where every value is NaN (too few non-members for TPR at
    1% FPR, e.g. in the smoke profile)."""
    return None if values.isna().all() else values.idxmax()


def _model_point(
    label: str, study: str, kind: str, attacks: pd.DataFrame, rougeL: float, bleu1: float
) -> dict:
    """The point of one trained model (no spread over seeds): the highest TPR at 1% FPR of its ``attacks``."""
    tpr = attacks.set_index("attack").tpr_at_1pct_fpr
    return {"defense": label, "study": study, "kind": kind, "rougeL": rougeL, "rougeL_sd": np.nan,
            "bleu1": bleu1, "tpr_at_1pct_fpr": tpr.max(), "tpr_sd": np.nan, "best_attack": _argmax(tpr),
            "n_seeds": 1}  # fmt: skip


def defense_points(
    grid_rows: pd.DataFrame,
    calib_rows: pd.DataFrame,
    dp_utility: pd.DataFrame,
    dp_attacks: pd.DataFrame,
    target: str,
) -> pd.DataFrame:
    """One point per defense for :func:`plot_all_defenses`: held-out ROUGE-L and BLEU-1 and the strongest
    attacker's TPR at 1% FPR (the highest over the attacks run on that model), each as mean and sd over
    training seeds where there are several.

    Args:
        grid_rows: the defense grid's rows; only the unrestricted cells of ``target`` (e.g. ``CM``) are used.
        calib_rows: the calibrated attacker's rows (population target of the same dataset and family).
        dp_utility, dp_attacks: the DP study's utility (index: model) and attack rows.
    """
    out = []
    grid = grid_rows[(grid_rows.scenario == "unrestricted") & grid_rows.target.str.startswith(f"{target}:")]
    for label, part in grid.groupby("defense", sort=False):
        best = part.groupby("train_seed").tpr_at_1pct_fpr.max()
        util = part.groupby("train_seed")[["rougeL", "bleu1"]].first()
        attacks = _argmax(part.groupby("attack").tpr_at_1pct_fpr.mean())
        out.append({"defense": label, "study": "grid (same-recipe shadow)", "kind": part.defense_kind.iloc[0],
                    "rougeL": util.rougeL.mean(), "rougeL_sd": util.rougeL.std(), "bleu1": util.bleu1.mean(),
                    "tpr_at_1pct_fpr": best.mean(), "tpr_sd": best.std(), "best_attack": attacks,
                    "n_seeds": len(best)})  # fmt: skip
    for label, part in calib_rows.groupby("defense", sort=False):
        out.append(_model_point(label, "calibrated (LiRA / RMIA)", part.defense_kind.iloc[0], part,
                                part.rougeL.iloc[0], part.bleu1.iloc[0]))  # fmt: skip
    for label, part in dp_attacks.groupby("defense", sort=False):
        kind = {"twin": "none", "control": "dp control", "public_init": "dp public start"}.get(label, "dp")
        out.append(_model_point(label, "DP study", kind, part, dp_utility.loc[label, "rougeL"],
                                dp_utility.loc[label, "bleu1"]))  # fmt: skip
    return pd.DataFrame(out)


def plot_all_defenses(points: pd.DataFrame, constant: dict[str, float]):
    """The paper's Figure 10 made quantitative: every defense placed by held-out ROUGE-L (x) and the
    strongest attacker's TPR at 1% FPR (y, log), error bars = sd over training seeds; one marker per study
    (the grid and the calibrated attacker share the grid's test split; the DP study has its own split and
    test set, so its points compare with its own twin and control); dotted: the constant caption."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"grid (same-recipe shadow)": "o", "calibrated (LiRA / RMIA)": "D", "DP study": "s"}
    colors = {"none": "k", "l2": "#2ca02c", "augment": "#ff7f0e", "dp": "#1f77b4", "dp control": "#9467bd",
              "dp public start": "#8c564b"}  # fmt: skip
    for study, part in points.groupby("study", sort=False):
        for kind, sub in part.groupby("kind", sort=False):
            ax.errorbar(sub.rougeL, sub.tpr_at_1pct_fpr.clip(lower=1e-3), xerr=sub.rougeL_sd.fillna(0),
                        yerr=sub.tpr_sd.fillna(0), fmt=markers.get(study, "o"),
                        color=colors.get(kind, "grey"), ms=7, capsize=2,
                        label=f"{study}: {kind}")  # fmt: skip
            for r in sub.itertuples():
                ax.annotate(r.defense, (r.rougeL, max(r.tpr_at_1pct_fpr, 1e-3)), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
    for name, value in constant.items():
        ax.axvline(value, color="grey", ls=":", lw=1)
        ax.annotate(f"constant caption ({name})", (value, 0.02), xycoords=ax.get_xaxis_transform(),
                    fontsize=6, rotation=90, va="bottom")  # fmt: skip
    ax.axhline(0.01, color="grey", lw=0.6, ls="--")
    ax.annotate("chance (TPR = FPR = 1%)", (0.01, 0.01), xycoords=ax.get_yaxis_transform(), fontsize=6,
                va="bottom")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("held-out ROUGE-L (higher = more useful)")
    ax.set_ylabel("strongest attack's TPR at 1% FPR (log; lower = more private)")
    ax.set_title("Every defense: privacy against utility")
    ax.legend(fontsize=7, loc="best")
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

    eps = utility.accountant_epsilon.astype(float)
    dp = utility[np.isfinite(eps) & (eps > 0)].sort_values("accountant_epsilon")
    right = float(dp.accountant_epsilon.max()) * 4 if len(dp) else 1.0
    left = float(dp.accountant_epsilon.min()) / 4 if len(dp) else 0.1
    place = {"public_init": left} if "public_init" in utility.index else {}  # epsilon 0: at the left
    place |= {name: e for name, e in dp.accountant_epsilon.items()}
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
        ax.set_xlabel("accountant epsilon (public start: epsilon 0, left; control and twin: no DP, right)")
        for name in [n for n in ("public_init", "control", "twin") if n in place]:
            ax.axvline(place[name], color="grey", lw=0.5)
            ax.annotate(name, (place[name], ax.get_ylim()[0]), fontsize=7, rotation=90, va="bottom")
    fig.tight_layout()
    return fig
