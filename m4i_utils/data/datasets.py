"""Dataset registry: one call turns a dataset name + config into a :class:`Corpus`.

Synthetic worlds (``synth_coco``, ``synth_flickr``, ``synth_iapr``) are generated and cached; real datasets
(``mscoco``, ``flickr8k``, ``iapr_tc12``) are read from the configured data root (``M4I_DATA_ROOT``).

:func:`corpus_fingerprint`, the upstream key of every artifact derived from a corpus (splits, features,
trunks, captioners, ...), covers each record's id, captions AND image content (sha256 of the image file, or
of the pixel array of a synthetic world), so changed image bytes never reuse a stale artifact. For real
datasets :func:`load_corpus` hashes every image file once at load time, reusing a JSON index of file hashes
under ``<cache_dir>/image_digests/`` for files whose size, mtime, inode and ctime are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from m4i_utils.core.config import REAL_DATASETS, SYNTHETIC_DATASETS, Config
from m4i_utils.data.records import Corpus, DataError, prime_digest_index

DIGEST_INDEX_DIR = "image_digests"

# Model names: dataset letter + architecture letter (R ResNet, V VGG, M MobileNet), after the paper's notation
# (section 4.1, e.g. "CR" = MSCOCO + ResNet). The synthetic stand-ins keep the paper's C / F / I (committed
# results use CM, CR, FM, FR, IM, IR); the real datasets get letters of their own, so that every dataset has a
# distinct letter and model names are unique within a run (config validation rejects a collision).
DATASET_LETTERS = {
    "synth_coco": "C",
    "synth_flickr": "F",
    "synth_iapr": "I",
    "mscoco": "M",  # MS-COCO
    "flickr8k": "K",  # Flickr8K
    "iapr_tc12": "T",  # IAPR TC-12
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

        kwargs = {"split": cfg.coco_split} if name == "mscoco" else {}
        corpus = load_real_corpus(name, cfg.data_root, **kwargs)
        index = Path(cfg.cache_dir) / DIGEST_INDEX_DIR / f"{name}.json"
        prime_digest_index((r.image for r in corpus.records if isinstance(r.image, Path)), index)
        return corpus
    raise DataError(f"unknown dataset {name!r}; choose from {list(SYNTHETIC_DATASETS) + list(REAL_DATASETS)}")


def corpus_fingerprint(corpus: Corpus) -> str:
    """Short hash of a corpus' name and each record's id, captions and image content (sha256 of the file's
    bytes or of the pixel array, :meth:`~m4i_utils.data.records.Record.content_digest`): the upstream key of
    every artifact derived from the corpus.

    Raises:
        DataError: an image file is missing or unreadable (the message names it).
    """
    h = hashlib.sha256(corpus.name.encode())
    for rec in corpus.records:
        h.update(json.dumps([rec.id, rec.captions, rec.content_digest()]).encode())
    return h.hexdigest()[:16]


def require_real_data(cfg: Config) -> None:
    """Fail before any work if a real dataset of ``cfg.datasets`` is not under the data root.

    Every missing dataset is named in one error, with the folders tried and where to obtain it (the paper
    profile uses MSCOCO, Flickr8k and IAPR TC-12).

    Raises:
        DataError: listing each missing dataset.
    """
    from m4i_utils.data.loaders import resolve_dataset_root

    missing = []
    for name in cfg.datasets:
        if name in REAL_DATASETS:
            try:
                resolve_dataset_root(cfg.data_root, name)
            except DataError as exc:
                missing.append(f"- {name}: {exc}")
    if missing:
        raise DataError(
            f"profile {cfg.profile!r} needs real datasets that are not available:\n" + "\n".join(missing)
        )
