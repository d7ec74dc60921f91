"""Figures shared by the notebooks: saving, examples, ROC curves (linear and log-log) and attack heatmaps.

Figures are named ``NN_stage__what`` after their notebook and saved into the run's folder.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult, check_binary
from m4i_utils.data.records import Corpus

# Paper figures 4 / 6: unrestricted red, data-only yellow-orange, constrained pink.
SCENARIO_COLORS: dict[str, str] = {
    "unrestricted": "#d62728",
    "data_only": "#f5a623",
    "constrained": "#e377c2",
}
_OTHER_COLOR = "#7f7f7f"


def save_figure(fig: Figure, cfg: Config, name: str) -> None:
    """Write ``fig`` as ``figures/<profile>/<name>.png`` and ``.pdf``."""
    for ext in ("png", "pdf"):
        fig.savefig(cfg.figures_dir / f"{name}.{ext}", dpi=120, bbox_inches="tight")


def show_examples(corpora: list[Corpus], per_corpus: int = 4, n_captions: int = 2) -> Figure:
    """A grid of example images (one row per corpus) with the first ``n_captions`` references under each."""
    fig, axes = plt.subplots(
        len(corpora), per_corpus, figsize=(3.2 * per_corpus, 3.4 * len(corpora)), squeeze=False
    )
    for row, corpus in zip(axes, corpora, strict=True):
        for ax, rec in zip(row, corpus.records[:per_corpus], strict=False):
            ax.imshow(rec.load_image())
            caps = "\n".join(textwrap.fill(c, 38) for c in rec.captions[:n_captions])
            ax.set_title(caps, fontsize=7, loc="left")
            ax.set_xlabel(f"{corpus.name}: {rec.id}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_roc(
    results: Sequence[AttackResult],
    labels: Sequence[str],
    ax=None,
    log: bool = False,
    title: str | None = None,
):
    """ROC curves of several attacks, linear or log-log (Carlini et al. 2022; M4I section 4 and appendix H).

    Args:
        results: attack results (each needs members and non-members).
        labels: legend name per result; the legend adds each curve's AUC.
        ax: matplotlib axes (a new figure when None).
        log: both axes logarithmic, from ``min(1e-4, 1 / n_nonmembers)`` to 1, to show the low-FPR regime.
        title: axes title.
    Returns:
        The axes.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(results) != len(labels):
        raise ValueError(f"{len(results)} results but {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    lower = 1e-4
    for res, name in zip(results, labels, strict=True):
        y, s = check_binary(res.labels, res.scores)
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        auc = roc_auc_score(y, s)
        lower = min(lower, 1.0 / res.n_nonmembers)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc:.3f})")
    ax.plot(
        [lower if log else 0.0, 1.0],
        [lower if log else 0.0, 1.0],
        ls="--",
        color="grey",
        lw=1,
        label="chance",
    )
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lower, 1.0)
        ax.set_ylim(lower, 1.0)
    else:
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax


_PAPER_ORDER = ("CR", "CV", "FR", "FV", "IR", "IV")


def _axis_order(names: Sequence[str]) -> list[str]:
    """Paper order (CR, CV, FR, FV, IR, IV) for known names, then the others in order of appearance."""
    seen = list(dict.fromkeys(str(n) for n in names))
    known = [n for n in _PAPER_ORDER if n in seen]
    return known + [n for n in seen if n not in known]


def plot_attack_heatmap(
    table: pd.DataFrame,
    value: str = "accuracy",
    ax=None,
    scenario_col: str = "scenario",
    title: str | None = None,
):
    """Shadow x target grid of one metric, coloured by threat scenario (paper figures 4 and 6).

    Rows are shadows, columns targets (names like "CR" = MSCOCO + ResNet, "FV" = Flickr8k + VGG). Each cell
    shows ``value`` in percent (mean over rows of the same pair, e.g. seeds) on the scenario's colour
    (unrestricted red, data-only orange-yellow, constrained pink, other grey), shaded lighter near 50%.
    Pairs not evaluated stay blank.

    Args:
        table: results with columns ``shadow``, ``target``, ``value`` and (optionally) ``scenario_col``.
        value: the metric column (a fraction in [0, 1]).
        ax: matplotlib axes (a new figure when None).
        scenario_col: the scenario column; cells of a missing column are grey.
        title: axes title.
    Returns:
        The axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    for col in ("shadow", "target", value):
        if col not in table.columns:
            raise ValueError(f"table lacks column {col!r} (has {list(table.columns)})")
    df = table.dropna(subset=[value]).copy()
    df["shadow"] = df["shadow"].astype(str)
    df["target"] = df["target"].astype(str)
    if scenario_col in df.columns:
        df[scenario_col] = df[scenario_col].fillna("other").astype(str)
    else:
        df[scenario_col] = "other"
    rows = _axis_order(list(df["shadow"]) + list(df["target"]))
    rows = [r for r in rows if r in set(df["shadow"])]
    cols = [c for c in _axis_order(list(df["target"]) + list(df["shadow"])) if c in set(df["target"])]
    cells = df.groupby(["shadow", "target"], sort=False).agg(
        v=(value, "mean"), scenario=(scenario_col, "first")
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(0.9 * max(len(cols), 2) + 1.5, 0.8 * max(len(rows), 2) + 1.0))
    img = np.ones((max(len(rows), 1), max(len(cols), 1), 3))
    used: list[str] = []
    for (sh, tg), rec in cells.iterrows():
        i, j = rows.index(sh), cols.index(tg)
        base = np.array(to_rgb(SCENARIO_COLORS.get(rec["scenario"], _OTHER_COLOR)))
        strength = 0.35 + 0.65 * float(np.clip((rec["v"] - 0.5) / 0.5, 0.0, 1.0))
        img[i, j] = 1.0 - strength * (1.0 - base)
        ax.text(j, i, f"{100 * rec['v']:.1f}", ha="center", va="center", fontsize=9)
        if rec["scenario"] not in used:
            used.append(rec["scenario"])
    ax.imshow(img, aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("target")
    ax.set_ylabel("shadow")
    ax.set_xticks(np.arange(-0.5, len(cols)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    order = [s for s in SCENARIO_COLORS if s in used] + [s for s in used if s not in SCENARIO_COLORS]
    handles = [Patch(color=SCENARIO_COLORS.get(s, _OTHER_COLOR), label=s.replace("_", "-")) for s in order]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title if title is not None else f"{value} (%)")
    return ax
