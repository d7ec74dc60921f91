"""The run store: the results table every notebook writes (one row per attack evaluation).

The M4I paper (section 4, figures 4 and 6) reports the "attack success rate", i.e. accuracy on balanced target
member / non-member sets at the attack's own decision rule, plus ROC curves and a log-scale ROC (appendix H).
Following Carlini et al. 2022 (LiRA) we also report AUC and TPR at low FPR (1%, 0.1%) on the exact ROC, and
percentile bootstrap confidence intervals (members and non-members resampled separately).
"""

from __future__ import annotations

import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m4i_utils.core.metrics import META_KEYS, METRIC_COLUMNS, AttackResult

RESULT_COLUMNS: tuple[str, ...] = (*META_KEYS, *METRIC_COLUMNS, "created")


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
