"""The TTS membership attacks of notebook 08 (M4I appendix E): MB, FB and blind, in the ``iid`` and ``shift``
settings, through the one harness (:func:`m4i_utils.experiments.harness.evaluate`)."""

from __future__ import annotations

import warnings

import numpy as np

from m4i_utils.attacks.base import Signals
from m4i_utils.core.config import Config
from m4i_utils.experiments.harness import evaluate
from m4i_utils.signals.speech import blind_features


def run_attacks(
    cfg: Config, data, queries: dict[str, dict], fb: dict[str, dict], meta: dict
) -> tuple[list, list[dict]]:
    """The TTS attacks of notebook 08 in both settings, through the one harness.

    ``iid``: non-members are held-out utterances of the members' speaker; ``shift`` (the paper's): another
    corpus. Per setting: MB thresholds on the DTW-aligned and the teacher-forced mel distance
    (:func:`mb_scores`), the FB MLP on ``E_text - E_mel`` without and with the reference mel
    (:func:`fb_features`), and a blind logistic regression on the text and reference mel alone
    (:func:`blind_features`).

    Args:
        data: the speech roles (``<side>_members``, ``<side>_nonmembers``, ``<side>_shift_nonmembers``).
        queries: role -> :func:`mb_scores` of the side's model; fb: role -> :func:`fb_features`.
        meta: result metadata shared by every row (experiment, scenario, shadow, target, ...).
    Returns:
        The attack results and their results-table rows.
    """
    signals = {
        **{f"MB_{kind}": (lambda r, k=kind: queries[r][k]) for kind in ("dtw", "teacher_forced")},
        "FB": lambda r: fb[r]["paper"],
        "FB_with_reference": lambda r: fb[r]["with_reference"],
        "blind": lambda r: blind_features(data.role(r)),
    }
    attacks = {"MB_dtw": "threshold", "MB_teacher_forced": "threshold", "FB": "fb_mlp"}
    attacks |= {"FB_with_reference": "fb_mlp", "blind": "blind_logreg"}
    results, rows = [], []
    for setting in ("iid", "shift"):
        non = "nonmembers" if setting == "iid" else "shift_nonmembers"

        def stack(get, side, non=non):
            mem, non_ = f"{side}_members", f"{side}_{non}"
            ids = [f"{r}/{i}" for r in (mem, non_) for i in data.role(r).ids]
            y = np.r_[np.ones(len(data.role(mem))), np.zeros(len(data.role(non_)))].astype(np.int64)
            return Signals(np.concatenate([get(mem), get(non_)]), y, np.asarray(ids))

        for name, get in signals.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res, row = evaluate(
                    cfg, attacks[name], stack(get, "shadow"), stack(get, "target"),
                    {**meta, "setting": setting, "attack": name},
                )  # fmt: skip
            results.append(res)
            rows.append(row)
    return results, rows
