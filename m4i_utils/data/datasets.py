"""Dataset registry: one call turns a dataset name + config into a :class:`Corpus`.

Synthetic worlds (``synth_coco``, ``synth_flickr``, ``synth_iapr``) are generated and cached; real datasets
(``mscoco``, ``flickr8k``, ``iapr_tc12``) are read from the configured data root (``M4I_DATA_ROOT``).
"""

from __future__ import annotations

import hashlib
import json

from m4i_utils.core.config import REAL_DATASETS, SYNTHETIC_DATASETS, Config
from m4i_utils.data.records import Corpus, DataError

# Paper notation (section 4.1): dataset letter + architecture letter, e.g. "CR" = MSCOCO + ResNet.
DATASET_LETTERS = {
    "synth_coco": "C",
    "synth_flickr": "F",
    "synth_iapr": "I",
    "mscoco": "C",
    "flickr8k": "F",
    "iapr_tc12": "I",
}


def load_corpus(name: str, cfg: Config) -> Corpus:
    """Load dataset ``name`` for the run configured by ``cfg``.

    Raises:
        DataError: unknown name, or a real dataset that is not under the data root (the message says where
            it is expected and how to obtain it).
    """
    if name in SYNTHETIC_DATASETS:
        from m4i_utils.data.synthetic import load_world

        return load_world(cfg.cache_dir, name, cfg.n_pairs, cfg.image_size, cfg.seed)
    if name in REAL_DATASETS:
        from m4i_utils.data.loaders import load_real_corpus

        return load_real_corpus(name, cfg.data_root)
    raise DataError(f"unknown dataset {name!r}; choose from {list(SYNTHETIC_DATASETS) + list(REAL_DATASETS)}")


def corpus_fingerprint(corpus: Corpus) -> str:
    """Short hash of a corpus' ids and captions: the upstream key of every artifact derived from it."""
    h = hashlib.sha256(corpus.name.encode())
    for rec in corpus.records:
        h.update(json.dumps([rec.id, rec.captions]).encode())
    return h.hexdigest()[:16]
