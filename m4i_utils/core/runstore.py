"""The run store: every run's results rows and per-sample scores, kept apart from every other run's.

A run is a resolved :class:`~m4i_utils.core.config.Config`; its id (``cfg.run_id``) hashes every science
field, seed included, and its folder is ``cfg.figures_dir`` (``figures/<profile>/`` for a plain profile run,
``runs/<profile>/<run_id>/`` for a run with overrides, the runner's folder for a grid cell). In that folder:

* ``results.csv``: one row per attack evaluation (:func:`result_row`): the result's meta (experiment, attack,
  scenario, setting, shadow, target, ...), the run id, the seed and the overrides (JSON), the metrics with
  bootstrap CIs, and the attack's diagnostics (e.g. ``svm_converged``, ``fb_best_epoch``). Re-running a run
  replaces its own rows of that experiment (:func:`upsert_results`; within a folder a run is known by its
  overrides, so a re-run after a code change that alters the run id still replaces them); rows of other
  runs in the same file are kept.
* ``scores.parquet``: the per-sample scores of every attack (:func:`save_scores`): record id, label, score
  and the result's meta, so that later notebooks can build per-sample reports and calibrated attacks without
  querying a model again.
* ``config.json``: the resolved config (written by ``cfg.figures_dir``).

:func:`aggregate_seeds` turns rows of several seeds into mean, sd and n per cell.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m4i_utils.core.metrics import META_KEYS, METRIC_COLUMNS, AttackResult

RUN_KEYS: tuple[str, ...] = ("run_id", "overrides")
RESULT_COLUMNS: tuple[str, ...] = (*META_KEYS, *RUN_KEYS, *METRIC_COLUMNS, "created")
SCORE_COLUMNS: tuple[str, ...] = ("record_id", "label", "score", *META_KEYS, *RUN_KEYS)
RESULTS_FILE = "results.csv"
SEED_KEYS = ("seed", "train_seed")  # what aggregate_seeds averages over
SCORES_FILE = "scores.parquet"


def result_row(result: AttackResult, metrics: dict) -> dict:
    """One results-table row: the result's meta, the metrics, its diagnostics and a UTC ``created`` stamp.

    Args:
        result: supplies the meta keys (missing ones become None); any other scalar meta entry (an attack's
            diagnostics such as ``svm_converged`` or ``fb_best_epoch``) is kept as an extra column.
        metrics: output of :func:`~m4i_utils.core.metrics.compute_metrics`.
    Returns:
        dict with the columns of :data:`RESULT_COLUMNS` (run columns are filled by :func:`upsert_results`)
        plus the diagnostics.
    """
    row: dict[str, Any] = {k: result.meta.get(k) for k in META_KEYS}
    for k in METRIC_COLUMNS:
        row[k] = metrics.get(k, math.nan)
    for k, v in result.meta.items():
        if k not in row and k not in RUN_KEYS and isinstance(v, bool | int | float | str | np.generic):
            row[k] = v.item() if isinstance(v, np.generic) else v
    row["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    return row


def read_results(path: Path) -> pd.DataFrame:
    """A results CSV as a frame (an empty frame with :data:`RESULT_COLUMNS` if the file is missing)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    df = pd.read_csv(path)
    for col in RESULT_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df[list(RESULT_COLUMNS) + [c for c in df.columns if c not in RESULT_COLUMNS]]


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stamp(cfg, rows: list[dict], experiment: str) -> pd.DataFrame:
    new = pd.DataFrame([{**r, "experiment": r.get("experiment") or experiment} for r in rows])
    if len(new) and (new["experiment"] != experiment).any():
        bad = sorted(set(new["experiment"]) - {experiment})
        raise ValueError(f"rows belong to experiments {bad}, not {experiment!r}")
    if len(new):
        new["run_id"] = cfg.run_id
        new["overrides"] = overrides_key(cfg)
        new["profile"] = cfg.profile
        new["seed"] = new["seed"].fillna(cfg.seed) if "seed" in new else cfg.seed
    return new


def overrides_key(cfg) -> str:
    """The run's overrides as JSON: what tells runs sharing a folder apart (a plain profile run: ``{}``).

    A run re-run after a code change that alters the run id (e.g. a new config field) keeps its overrides,
    so its new rows replace its old ones instead of piling up beside them.
    """
    return json.dumps(dict(cfg.overrides), sort_keys=True, default=str)


def write_results(path: Path, new: pd.DataFrame, experiment: str, overrides: Sequence[str]) -> pd.DataFrame:
    """Replace the rows of ``experiment`` from the runs with ``overrides`` (JSON) in the CSV at ``path``.

    Rows of other experiments and of other runs are kept, so a file may collect several runs (a grid).
    Written atomically. Returns the whole table as written.
    """
    path = Path(path)
    old = read_results(path)
    same_run = old["overrides"].fillna("{}").astype(str).isin(list(overrides))
    keep = (old["experiment"].astype(str) != experiment) | ~same_run
    parts = [p for p in (old[keep], new) if len(p)]
    table = pd.concat(parts, ignore_index=True) if parts else old
    extra = [c for c in table.columns if c not in RESULT_COLUMNS]
    table = table.reindex(columns=list(RESULT_COLUMNS) + extra)
    _atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    return table


def upsert_results(cfg, rows: list[dict], experiment: str) -> pd.DataFrame:
    """Store ``rows`` of ``experiment`` as this run's rows in ``<cfg.figures_dir>/results.csv``.

    Each row gets the run id, the overrides (JSON), the profile and the seed of ``cfg``; this run's earlier
    rows of ``experiment`` are replaced (re-running a run never duplicates), every other row is kept.

    Args:
        cfg: the run's resolved config.
        rows: new rows (e.g. from :func:`result_row`); a row without ``experiment`` gets ``experiment``.
        experiment: the experiment (notebook) these rows belong to; every row must carry this value.
    Returns:
        The whole table as written.
    """
    new = _stamp(cfg, rows, experiment)
    return write_results(cfg.figures_dir / RESULTS_FILE, new, experiment, [overrides_key(cfg)])


def scores_frame(results: Sequence[AttackResult], run_id: str, overrides: str = "{}") -> pd.DataFrame:
    """Per-sample scores of ``results`` as one long frame with :data:`SCORE_COLUMNS`."""
    parts = []
    for res in results:
        ids = res.ids if res.ids is not None else np.arange(len(res.scores)).astype(str)
        part = pd.DataFrame({"record_id": ids.astype(str), "label": res.labels, "score": res.scores})
        for k in META_KEYS:
            part[k] = res.meta.get(k)
        part["run_id"] = run_id
        part["overrides"] = overrides
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(SCORE_COLUMNS)]


def read_scores(path: Path) -> pd.DataFrame:
    """A per-sample scores file (parquet) as a frame; empty with :data:`SCORE_COLUMNS` if missing."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    table = pd.read_parquet(path)
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the columns {missing} of this version's scores file (written by an older "
            "version?); move it away or delete it and re-run the notebooks that wrote it"
        )
    return table


def save_scores(cfg, results: Sequence[AttackResult], experiment: str) -> pd.DataFrame:
    """Store the per-sample scores of ``results`` in ``<cfg.figures_dir>/scores.parquet`` (pyarrow, zstd).

    This run's earlier scores of ``experiment`` are replaced; other experiments and runs are kept. Every
    result must belong to ``experiment`` (its meta's ``experiment`` is set when missing).
    """
    for res in results:
        got = res.meta.setdefault("experiment", experiment)
        if got != experiment:
            raise ValueError(f"a result of experiment {got!r} cannot be stored as {experiment!r}")
        res.meta.setdefault("profile", cfg.profile)
        res.meta.setdefault("seed", cfg.seed)
    new = scores_frame(results, cfg.run_id, overrides_key(cfg))
    path = cfg.figures_dir / SCORES_FILE
    old = read_scores(path)
    same_run = old["overrides"].fillna("{}").astype(str) == overrides_key(cfg) if len(old) else False
    keep = (old["experiment"].astype(str) != experiment) | ~same_run
    parts = [p for p in (old[keep], new) if len(p)]
    table = pd.concat(parts, ignore_index=True) if parts else new
    for col in ("record_id", "attack", "scenario", "setting", "shadow", "target", "experiment", *RUN_KEYS):
        table[col] = table[col].astype("string")
    _atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False, compression="zstd"))
    return table


def aggregate_seeds(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy", "auc", "tpr_at_1pct_fpr"),
    extra_keys: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean, sd and n of ``metrics`` over seeds (split and training seeds) per cell (every other meta key,
    plus ``extra_keys``).

    Args:
        table: results rows of several runs that differ in their seed (e.g. a seed grid).
        metrics: metric columns to aggregate.
        extra_keys: further columns that tell cells apart (e.g. the other parameters of a grid).
    Returns:
        One row per cell with ``<metric>_mean``, ``<metric>_sd`` (ddof 1; NaN for one seed) and ``n_seeds``.
    """
    keys = [k for k in META_KEYS if k not in SEED_KEYS and k in table.columns and table[k].notna().any()]
    keys += list(extra_keys)
    grouped = table.groupby(keys, dropna=False, sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{'sd' if stat == 'std' else stat}" for m, stat in out.columns]
    out["n_seeds"] = grouped[[k for k in SEED_KEYS if k in table.columns]].apply(
        lambda g: len(g.drop_duplicates())
    )
    return out.reset_index()
