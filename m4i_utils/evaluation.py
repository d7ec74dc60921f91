"""Evaluation core shared by every attack: results, metrics with CIs, ROC plots, heatmaps, results table.

The M4I paper (section 4, figures 4 and 6) reports the "attack success rate", i.e. accuracy on balanced target
member / non-member sets at the attack's own decision rule, plus ROC curves and a log-scale ROC (appendix H).
Following Carlini et al. 2022 (LiRA) we also report AUC and TPR at low FPR (1%, 0.1%) on the exact ROC, and
percentile bootstrap confidence intervals (members and non-members resampled separately).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
)
RESULT_COLUMNS: tuple[str, ...] = (*META_KEYS, *METRIC_COLUMNS, "created")

# Paper figures 4 / 6: unrestricted red, data-only yellow-orange, constrained pink.
SCENARIO_COLORS: dict[str, str] = {
    "unrestricted": "#d62728",
    "data_only": "#f5a623",
    "constrained": "#e377c2",
}
_OTHER_COLOR = "#7f7f7f"


@dataclass
class AttackResult:
    """Membership scores of one attack on one target, with the decision threshold learnt on the shadow.

    Attributes:
        scores: one score per query, higher = more likely a member.
        labels: ground truth, 1 = member, 0 = non-member.
        threshold: decision threshold chosen on the SHADOW data (prediction: ``scores >= threshold``);
            ``None`` when the attack has no decision rule (accuracy is then NaN).
        meta: experiment, attack, scenario, setting, shadow, target, dataset, architecture, profile, seed
            (missing keys allowed).
    """

    scores: np.ndarray
    labels: np.ndarray
    threshold: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

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


def _check_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    labels, scores = _check_binary(labels, scores)
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
        ROC); and ``<metric>_ci_low`` / ``<metric>_ci_high`` for accuracy, auc and tpr_at_1pct_fpr.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, scores = _check_binary(result.labels, result.scores)
    n_m, n_n = result.n_members, result.n_nonmembers
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    out: dict[str, Any] = {
        "n_members": n_m,
        "n_nonmembers": n_n,
        "accuracy": math.nan,
        "balanced_accuracy": math.nan,
        "best_accuracy": float(np.max((tprs * n_m + (1.0 - fprs) * n_n) / (n_m + n_n))),
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_1pct_fpr": tpr_at_fpr(labels, scores, 0.01),
        "tpr_at_0_1pct_fpr": tpr_at_fpr(labels, scores, 0.001),
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
    return out


# --------------------------------------------------------------------------------------------------- plots


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
        y, s = _check_binary(res.labels, res.scores)
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


# --------------------------------------------------------------------------------------------- results table


def result_row(result: AttackResult, metrics: dict) -> dict:
    """One results-table row: the result's meta, the metrics and a UTC ``created`` timestamp.

    Args:
        result: supplies the meta keys (missing ones become None).
        metrics: output of :func:`compute_metrics`.
    Returns:
        dict with exactly the columns of :data:`RESULT_COLUMNS` (other meta keys are not stored).
    """
    row: dict[str, Any] = {k: result.meta.get(k) for k in META_KEYS}
    for k in METRIC_COLUMNS:
        row[k] = metrics.get(k, math.nan)
    row["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    return row


def read_results(path: Path) -> pd.DataFrame:
    """The results CSV as a frame (an empty frame with :data:`RESULT_COLUMNS` if the file is missing)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    df = pd.read_csv(path)
    for col in RESULT_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df[list(RESULT_COLUMNS) + [c for c in df.columns if c not in RESULT_COLUMNS]]


def upsert_results(path: Path, rows: list[dict], experiment: str) -> pd.DataFrame:
    """Replace all rows of ``experiment`` in the results CSV with ``rows`` (re-runs never duplicate).

    Args:
        path: the CSV (created with its folder if missing).
        rows: new rows (e.g. from :func:`result_row`); a row without ``experiment`` gets ``experiment``.
        experiment: the experiment (notebook) these rows belong to; every row must carry this value.
    Returns:
        The whole table as written.
    """
    path = Path(path)
    new = pd.DataFrame([{**r, "experiment": r.get("experiment") or experiment} for r in rows])
    if len(new) and (new["experiment"] != experiment).any():
        bad = sorted(set(new["experiment"]) - {experiment})
        raise ValueError(f"rows belong to experiments {bad}, not {experiment!r}")
    old = read_results(path)
    old = old[old["experiment"].astype(str) != experiment]
    parts = [p for p in (old, new) if len(p)]
    table = pd.concat(parts, ignore_index=True) if parts else old
    extra = [c for c in table.columns if c not in RESULT_COLUMNS]
    table = table.reindex(columns=list(RESULT_COLUMNS) + extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            table.to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return table
