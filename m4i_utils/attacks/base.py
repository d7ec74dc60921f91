"""The Attack protocol: fit on the shadow's (or references') signals, score the target's queries.

Every membership attack of the project is a subclass of :class:`Attack` and is run by the one harness,
:func:`m4i_utils.experiments.harness.evaluate`, which fits it on the shadow signals, scores the target's
queries (higher = member) and applies the decision rule the attack learnt on the shadow. Attacks are created
by name through :mod:`m4i_utils.attacks.registry`; a new attack is one module with a subclass plus one line
in the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Signals:
    """What an attacker measured on one model's queries.

    Attributes:
        x: ``(n, d)`` (or ``(n,)``) signal per query, e.g. BLEU/ROUGE scores of the generated caption.
        labels: membership ground truth, 1 = member, 0 = non-member (used to fit on a shadow, and only to
            evaluate on a target). Reference signals of the calibrated attacks
            (:mod:`m4i_utils.attacks.calibrated`) have ``x`` of shape ``(n, k[, d])`` for k reference models
            and ``labels`` of shape ``(n, k)``: 1 where the reference trained on the record.
        ids: the queried records' ids, stored with the per-sample scores (optional).
    """

    x: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.shape(self.x)[0] if np.ndim(self.x) else -1
        per_query = np.ndim(self.labels) == 1 and np.shape(self.labels)[0] == n
        per_reference = np.ndim(self.labels) == 2 and np.shape(self.labels) == np.shape(self.x)[:2]
        if not (per_query or per_reference):
            raise ValueError(
                f"signals: {np.shape(self.x)} signals but labels of shape {np.shape(self.labels)}"
            )
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"signals: {n} queries but {len(self.ids)} ids")


class Attack(ABC):
    """A membership attack: ``fit`` on shadow signals, ``score`` target signals (higher = more likely member).

    Attributes:
        name: the default label of its results (``attack`` column).
        access: what the attacker needs, e.g. ``"black-box (generated text)"`` or ``"none (data only)"``.
        threshold: the decision rule learnt on the shadow (member iff score >= threshold); ``None`` when the
            attack only ranks.
    """

    name: str = "attack"
    access: str = "black-box"
    threshold: float | None = None

    @abstractmethod
    def fit(self, x: np.ndarray, labels: np.ndarray) -> Attack:
        """Learn the attack from the shadow's signals and membership labels; returns ``self``."""

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray:
        """Membership score per target query (1-D ``float64``), higher = more likely a member."""

    def diagnostics(self) -> dict[str, Any]:
        """Scalars about the fit kept in the results row (e.g. convergence, epochs trained)."""
        return {}
