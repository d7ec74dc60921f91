"""Every attack by name: one line per attack (``name -> "module:Class"``), imported only when used.

Each class has ``from_config(cfg, **options)`` that reads its defaults from the run's
:class:`~m4i_utils.core.config.Config`; ``options`` override them (e.g. the authors' SVM in an ablation).
"""

from __future__ import annotations

from typing import Any

from m4i_utils.attacks.base import Attack
from m4i_utils.core.plugins import resolve

ATTACKS: dict[str, str] = {
    "mb_svm": "m4i_utils.attacks.metric_attack:SVMAttack",  # paper 3.1: SVM on BLEU/ROUGE scores
    "threshold": "m4i_utils.attacks.metric_attack:ThresholdAttack",  # one signal, shadow-chosen threshold
    "fb_mlp": "m4i_utils.attacks.feature_attack:MLPAttack",  # paper 3.2: MLP 256-20 on MFE features
    "blind_logreg": "m4i_utils.attacks.baselines:BlindLogisticAttack",  # data only, model never queried
    "lira": "m4i_utils.attacks.calibrated:LiRA",  # per-record Gaussians over references (Carlini 2022)
    "rmia": "m4i_utils.attacks.calibrated:RMIA",  # ratio against population records (Zarifzadeh 2024)
}


def make_attack(name: str, cfg: Any, **options: Any) -> Attack:
    """A new, unfitted attack ``name`` configured from ``cfg`` (and ``options``).

    Raises:
        ValueError: unknown name, listing the registered ones.
    """
    return resolve(ATTACKS, name, "attack", "attacks").from_config(cfg, **options)
