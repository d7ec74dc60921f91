"""The Target protocol: a trained model under attack, which the attacker queries with records.

The attacker of the M4I threat model (paper section 2) sends records to the target and reads what it outputs
(captions, reports, mel spectrograms; later embeddings or reconstructions); the signals
(:mod:`m4i_utils.signals`) are computed from those outputs and the attacks (:mod:`m4i_utils.attacks`) from the
signals. A model kind implements :class:`Target` and registers its loader in :mod:`m4i_utils.models.registry`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Target(Protocol):
    """A trained target or shadow model.

    Attributes:
        kind: the registered model kind (e.g. ``"captioner"``).
        name: its name in results tables (e.g. ``CM``).
        role: ``"target"`` or ``"shadow"``.
        train_seed: the training seed (splits are fixed by the run's seed).
        key: the cache key of the trained model (changes with anything it was trained from).
    """

    kind: str
    role: str
    train_seed: int
    key: str

    @property
    def name(self) -> str: ...

    def query(self, cfg: Any, dataset: str, role: str) -> list:
        """The model's outputs for every record of ``dataset``'s split ``role``, in split order (cached)."""
        ...
