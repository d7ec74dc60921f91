"""The one attack harness: every experiment (the captioning grid, the defenses, report generation, TTS)
evaluates an attack on a target through :func:`evaluate`.

It fits the attack on the shadow's signals, scores the target's queries, keeps the decision rule learnt on
the shadow, the attack's diagnostics and the queried record ids, and computes the metrics with bootstrap CIs
(:func:`m4i_utils.core.metrics.compute_metrics`) for the results row
(:func:`m4i_utils.core.runstore.result_row`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from m4i_utils.attacks.base import Attack, Signals
from m4i_utils.attacks.calibrated import RMIA, LiRA
from m4i_utils.attacks.registry import make_attack
from m4i_utils.core.metrics import AttackResult, compute_metrics
from m4i_utils.core.runstore import result_row

AttackSpec = str | Attack | Callable[[], Attack]


def build_attack(cfg: Any, attack: AttackSpec) -> Attack:
    """An unfitted attack from a registry name, a factory, or an attack instance (used as it is)."""
    if isinstance(attack, str):
        return make_attack(attack, cfg)
    if isinstance(attack, Attack):
        return attack
    return attack()


def evaluate(
    cfg: Any, attack: AttackSpec, shadow: Signals, target: Signals, meta: dict[str, Any]
) -> tuple[AttackResult, dict]:
    """Fit ``attack`` on ``shadow``, score ``target``; the result and its results-table row.

    Args:
        cfg: the run's config (attack defaults, ``n_bootstrap`` and ``seed`` of the CIs).
        attack: a registry name (:data:`m4i_utils.attacks.registry.ATTACKS`), a factory or an attack.
        shadow: the shadow (or reference) model's signals with membership labels.
        target: the target's signals; labels are used only for the evaluation.
        meta: experiment, scenario, setting, shadow, target, ...; ``attack`` defaults to the attack's name.
    Returns:
        The :class:`AttackResult` (with ids and diagnostics in its meta) and its row.
    """
    model = build_attack(cfg, attack).fit(shadow.x, shadow.labels)
    scores = np.asarray(model.score(target.x), dtype=np.float64)
    info = {"attack": model.name, **meta, "access": model.access, **model.diagnostics()}
    result = AttackResult(scores, target.labels, model.threshold, info, target.ids)
    return result, result_row(result, compute_metrics(result, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed))


def evaluate_lira_rmia(
    cfg: Any,
    lira_signal: np.ndarray,
    prob: np.ndarray,
    prob_z: np.ndarray,
    masks: np.ndarray,
    ids: np.ndarray,
    meta: dict[str, Any],
    access: str,
) -> tuple[list[AttackResult], list[dict]]:
    """LiRA (offline / online, per-record / global variance; Carlini et al. 2022) and RMIA (offline / online;
    Zarifzadeh et al. 2024) against model 0 of a population of models, each through :func:`evaluate`.

    Args:
        lira_signal: ``(models, records)`` LiRA's roughly Gaussian signal (row 0 the target).
        prob, prob_z: ``(models, records)`` / ``(models, z records)`` RMIA's probability-like signal on the
            records and on its population records z (which no model trained on).
        masks: ``(models, records)`` bool, which model trained on which record (row 0: the target's labels).
        ids: the records' ids; meta: every result's metadata (its ``attack`` is ignored); access: the
            attacks' access.
    """
    attacks = [
        (LiRA(online=False, min_std=1e-3, access=access), lira_signal),
        (LiRA(online=False, global_variance=True, min_std=1e-3, access=access), lira_signal),
        (LiRA(online=True, min_std=1e-3, access=access), lira_signal),
        (LiRA(online=True, global_variance=True, min_std=1e-3, access=access), lira_signal),
        (RMIA(prob_z[0], prob_z[1:].T, online=False, a=cfg.calib_rmia_a, access=access), prob),
        (RMIA(prob_z[0], prob_z[1:].T, online=True, a=cfg.calib_rmia_a, access=access), prob),
    ]
    labels = masks[0].astype(int)
    results, rows = [], []
    for attack, signal in attacks:
        ref = Signals(signal[1:].T, masks[1:].T.astype(int))
        tgt = Signals(signal[0], labels, ids)
        res, row = evaluate(cfg, attack, ref, tgt, {k: v for k, v in meta.items() if k != "attack"})
        results.append(res)
        rows.append(row)
    return results, rows
