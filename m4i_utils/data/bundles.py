"""A dataset with its disjoint splits, loaded once per process: what every captioning notebook starts from.

:func:`load_bundle` loads a dataset (:func:`m4i_utils.data.datasets.load_corpus`), fits the profile's split
sizes to it (:func:`m4i_utils.core.config.fit_splits_to_data`: an error for a dataset that is too small
unless ``scale_splits_to_data`` is set) and makes the cached splits
(:func:`m4i_utils.data.splits.make_splits`, paper appendix C.1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from m4i_utils.core.config import Config, fit_splits_to_data
from m4i_utils.data.datasets import load_corpus
from m4i_utils.data.records import Corpus
from m4i_utils.data.splits import Splits, make_splits


@dataclass(frozen=True)
class DatasetBundle:
    """A dataset with its splits, and the config its split sizes were resolved with (``note`` says how the
    sizes were scaled when ``scale_splits_to_data`` was needed; None when the profile's sizes fit)."""

    name: str
    corpus: Corpus
    splits: Splits
    cfg: Config
    note: str | None = None

    def role(self, role: str) -> Corpus:
        """Records of a split role; ``"val"`` is the first ``cfg.n_val`` pairs of ``public``."""
        if role == "val":
            return self.corpus.subset(self.splits.indices["public"][: self.n_val], name=f"{self.name}:val")
        if role == "public_pretrain":
            return self.corpus.subset(
                self.splits.indices["public"][self.n_val :], name=f"{self.name}:pretrain"
            )
        return self.splits.corpus(self.corpus, role)

    @property
    def n_val(self) -> int:
        return min(self.cfg.n_val, len(self.splits.indices["public"]) // 2)


def dataset_cfg(cfg: Config, n_records: int, dataset: str) -> Config:
    """``cfg`` for ``dataset`` of ``n_records`` pairs (:func:`config.fit_splits_to_data`): unchanged when the
    split sizes fit; otherwise a DataError, or with ``scale_splits_to_data`` the sizes scaled to the data."""
    return fit_splits_to_data(cfg, n_records, dataset)[0]


@functools.lru_cache(maxsize=8)
def load_bundle(cfg: Config, dataset: str) -> DatasetBundle:
    """Load ``dataset`` and its cached splits.

    Raises:
        DataError: the dataset holds fewer pairs than the split sizes need and ``scale_splits_to_data`` is
            not set (with it, the sizes are scaled to the data; the note is printed and kept in the bundle).
    """
    corpus = load_corpus(dataset, cfg)
    dcfg, note = fit_splits_to_data(cfg, len(corpus), dataset)
    if note:
        print(note, flush=True)
    return DatasetBundle(dataset, corpus, make_splits(corpus, dcfg), dcfg, note)
