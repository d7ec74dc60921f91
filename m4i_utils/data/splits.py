"""Disjoint, seeded member / non-member / test / shadow / public splits (paper appendix C.1).

Per dataset: target members (train the target), target non-members, a target test set (utility), shadow
members (train the shadow) and shadow non-members, and the attacker's public data (the rest). All roles are
pairwise disjoint. Shadow data "from the same distribution" is this dataset's shadow roles; the constrained
scenario uses another dataset's shadow roles. Unlike the authors' code, target and shadow never share pairs
and non-members are drawn from the same dataset as members (i.i.d.).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import rng_for
from m4i_utils.data.datasets import corpus_fingerprint
from m4i_utils.data.records import Corpus, DataError

ROLES = (
    "target_members",
    "target_nonmembers",
    "target_test",
    "shadow_members",
    "shadow_nonmembers",
    "public",
)


@dataclass(frozen=True)
class Splits:
    """Record indices per role for one corpus, plus the cache key that identifies them."""

    dataset: str
    indices: dict[str, np.ndarray]
    key: str

    def ids(self, corpus: Corpus, role: str) -> list[str]:
        return [corpus.records[i].id for i in self.indices[role]]

    def corpus(self, corpus: Corpus, role: str) -> Corpus:
        """The records of ``role`` as a corpus named ``<dataset>:<role>``."""
        return corpus.subset(self.indices[role], name=f"{corpus.name}:{role}")

    def sizes(self) -> dict[str, int]:
        return {role: len(idx) for role, idx in self.indices.items()}


def split_sizes(cfg: Config) -> dict[str, int]:
    """The requested size of every role except ``public`` (which gets the rest)."""
    return {
        "target_members": cfg.n_target_members,
        "target_nonmembers": cfg.n_target_nonmembers,
        "target_test": cfg.n_target_test,
        "shadow_members": cfg.n_shadow_members,
        "shadow_nonmembers": cfg.n_shadow_nonmembers,
    }


def compute_splits(
    n: int, sizes: dict[str, int], min_public: int, seed: int, dataset: str
) -> dict[str, list[int]]:
    """Assign a seeded random permutation of ``range(n)`` to the roles (indices sorted within a role).

    Raises:
        DataError: the roles need more pairs than the dataset holds.
    """
    need = sum(sizes.values()) + min_public
    if need > n:
        detail = " + ".join(f"{k}={v}" for k, v in sizes.items())
        raise DataError(
            f"impossible split sizes for {dataset!r}: {detail} + min_public={min_public} = {need} pairs, "
            f"but the dataset holds {n}. Lower the n_* sizes or min_public (or use a larger dataset/n_pairs)."
        )
    perm = rng_for(seed, "splits", dataset).permutation(n)
    out, start = {}, 0
    for role, size in sizes.items():
        out[role] = sorted(int(i) for i in perm[start : start + size])
        start += size
    out["public"] = sorted(int(i) for i in perm[start:])
    return out


def make_splits(corpus: Corpus, cfg: Config) -> Splits:
    """The cached splits of ``corpus`` for ``cfg`` (a JSON manifest of ids per role)."""
    sizes = split_sizes(cfg)
    fingerprint = corpus_fingerprint(corpus)

    def build(out: Path) -> None:
        idx = compute_splits(len(corpus), sizes, cfg.min_public, cfg.seed, corpus.name)
        manifest = {role: [corpus.records[i].id for i in idx[role]] for role in ROLES}
        (out / "splits.json").write_text(json.dumps(manifest, indent=0))

    params = {"dataset": corpus.name, "sizes": sizes, "min_public": cfg.min_public, "seed": cfg.seed}
    art = cached(cfg.cache_dir, "splits", params, build, upstream=[fingerprint])
    manifest = json.loads(art.file("splits.json").read_text())
    position = {rec.id: i for i, rec in enumerate(corpus.records)}
    indices = {role: np.array([position[i] for i in manifest[role]], dtype=np.int64) for role in ROLES}
    return Splits(corpus.name, indices, art.key)


def check_disjoint(splits: Splits) -> None:
    """Raise AssertionError if any two roles share a record."""
    seen: dict[int, str] = {}
    for role, idx in splits.indices.items():
        for i in idx.tolist():
            if i in seen:
                raise AssertionError(f"record {i} is in both {seen[i]} and {role}")
            seen[i] = role


# ------------------------------------------------------------------------------- reference-model population

# the roles pooled into the population of the calibrated attacks (records that a captioner of the grid may
# train on); ``target_test`` and ``public`` are never trained on by a population model
POPULATION_ROLES = ("target_members", "target_nonmembers", "shadow_members", "shadow_nonmembers")


def population_masks(n_records: int, n_models: int, seed: int, label: str) -> np.ndarray:
    """Membership of ``n_records`` population records in ``n_models`` models: ``(n_models, n_records)`` bool.

    LiRA's evaluation protocol (Carlini et al. 2022, section V): every model trains on a random half of the
    population. Each row is an independent, seeded, uniformly random subset of exactly ``n_records // 2``
    records, so the target (row 0) has as many members as non-members and one model's mask says nothing
    about another's. A record is then IN for a Binomial(n_models - 1, 1/2) number of the references.

    Raises:
        ValueError: fewer than 2 records or 1 model.
    """
    if n_records < 2 or n_models < 1:
        raise ValueError(f"a population needs >= 2 records and >= 1 model, got {n_records} and {n_models}")
    masks = np.zeros((n_models, n_records), dtype=bool)
    for m in range(n_models):
        chosen = rng_for(seed, "population", label, m).choice(n_records, n_records // 2, replace=False)
        masks[m, chosen] = True
    return masks
