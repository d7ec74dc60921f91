"""The images of the masked-image-modeling study (notebook 12) and their roles.

Three disjoint, seeded sets of images drawn i.i.d. from one source (``mim_source``):

* **population** (``mim_population``): the query images. The target pre-trains on a seeded random half
  (its members), the other half are its non-members; each reference model of the calibrated attack
  pre-trains on another random half (:func:`m4i_utils.experiments.mim_study.population_masks`).
* **shadow** (``mim_shadow``): the attacker's own images; the shadow pre-trains on a random half and the
  attacker sets the threshold on its members against its non-members.
* **probe** (``mim_probe``): held-out labelled images of the linear probe (half fit, half scored).

Sources: ``synthetic`` (the ``mim_world`` world of :mod:`m4i_utils.data.synthetic`; the probe label is the
main object's colour, 8 classes), ``flickr8k`` (the real Flickr8k images under the data root; label: whether
a caption mentions a dog) and ``lfw`` (the real LFW faces under the data root, one image per identity so that
no face is both a member and a non-member; no probe label). Real images are centre-cropped to a square and
resized to ``mim_image_size`` px with bicubic interpolation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from m4i_utils.core.config import Config
from m4i_utils.core.runtime import rng_for
from m4i_utils.data.lfw import load_lfw
from m4i_utils.data.loaders import load_real_corpus
from m4i_utils.data.records import DataError, Record
from m4i_utils.data.synthetic import COLORS, world_artifact

ROLES = ("population", "shadow", "probe")
_DOG = re.compile(r"\bdogs?\b|\bpupp(?:y|ies)\b", re.IGNORECASE)


@dataclass(frozen=True)
class MimImages:
    """The study's images (uint8 ``(n, s, s, 3)``) and ids per role, and the probe's labels.

    Attributes:
        probe_labels: one integer class per probe image, or ``None`` when the source has no label.
        label_name: what the label is (e.g. ``main object's colour (8 classes)``).
    """

    source: str
    population: np.ndarray
    population_ids: tuple[str, ...]
    shadow: np.ndarray
    shadow_ids: tuple[str, ...]
    probe: np.ndarray
    probe_ids: tuple[str, ...]
    probe_labels: np.ndarray | None
    label_name: str


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop ``image`` to a square and resize it to ``size`` px: uint8 ``(size, size, 3)``."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    crop = image.convert("RGB").crop((left, top, left + side, top + side))
    return np.asarray(crop.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def _split(cfg: Config, n_available: int, what: str) -> dict[str, np.ndarray]:
    """Seeded disjoint index sets of the three roles out of ``n_available`` images."""
    sizes = {"population": cfg.mim_population, "shadow": cfg.mim_shadow, "probe": cfg.mim_probe}
    need = sum(sizes.values())
    if need > n_available:
        raise DataError(
            f"{what} holds {n_available} images but the MIM study needs mim_population + mim_shadow + "
            f"mim_probe = {need}; lower those sizes (e.g. -p mim_population=400 -p mim_shadow=400 "
            "-p mim_probe=200)"
        )
    order = rng_for(cfg.seed, "mim_roles", cfg.mim_source).permutation(n_available)
    out, start = {}, 0
    for role, n in sizes.items():
        out[role] = np.sort(order[start : start + n])
        start += n
    return out


def _synthetic(cfg: Config) -> MimImages:
    art = world_artifact(cfg.cache_dir, cfg.mim_world, cfg.n_pairs, cfg.mim_image_size, cfg.seed)
    images = np.load(art.file("images.npy"), mmap_mode="r")
    latents = json.loads(art.file("latents.json").read_text())
    idx = _split(cfg, len(images), f"the {cfg.mim_world} world (n_pairs)")

    def role(name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        return np.asarray(images[idx[name]]), tuple(f"{cfg.mim_world}_{i:06d}" for i in idx[name])

    colour = {name: i for i, name in enumerate(COLORS)}
    labels = np.asarray([colour[latents[i]["objects"][0]["color"]] for i in idx["probe"]])
    return MimImages("synthetic", *role("population"), *role("shadow"), *role("probe"), labels,
                     f"main object's colour ({len(COLORS)} classes)")  # fmt: skip


def _load(records: list[Record], size: int) -> np.ndarray:
    out = np.empty((len(records), size, size, 3), np.uint8)
    for i, rec in enumerate(records):
        out[i] = square_resize(rec.load_image(), size)
    return out


def _flickr8k(cfg: Config) -> MimImages:
    corpus = load_real_corpus("flickr8k", cfg.data_root)
    records = list(corpus.records)
    idx = _split(cfg, len(records), f"Flickr8k under {cfg.data_root}")
    pick = {role: [records[i] for i in idx[role]] for role in ROLES}
    labels = np.asarray([int(any(_DOG.search(c) for c in r.captions)) for r in pick["probe"]])
    return MimImages(
        "flickr8k",
        _load(pick["population"], cfg.mim_image_size),
        tuple(r.id for r in pick["population"]),
        _load(pick["shadow"], cfg.mim_image_size),
        tuple(r.id for r in pick["shadow"]),
        _load(pick["probe"], cfg.mim_image_size),
        tuple(r.id for r in pick["probe"]),
        labels,
        "a caption mentions a dog (2 classes)",
    )


def _lfw(cfg: Config) -> MimImages:
    people = load_lfw(cfg.data_root)
    records = [Record(p.folder, p.images[0], ()) for p in people]  # one image per identity
    idx = _split(cfg, len(records), f"LFW under {cfg.data_root} (one image per identity)")
    pick = {role: [records[i] for i in idx[role]] for role in ROLES}
    return MimImages(
        "lfw",
        _load(pick["population"], cfg.mim_image_size),
        tuple(f"lfw/{r.id}" for r in pick["population"]),
        _load(pick["shadow"], cfg.mim_image_size),
        tuple(f"lfw/{r.id}" for r in pick["shadow"]),
        _load(pick["probe"], cfg.mim_image_size),
        tuple(f"lfw/{r.id}" for r in pick["probe"]),
        None,
        "none (LFW has no label for a linear probe here)",
    )


def load_mim_images(cfg: Config) -> MimImages:
    """The study's images for ``cfg.mim_source`` (see the module docstring).

    Raises:
        DataError: a real source without its data (the message says what to set), or fewer images than
            ``mim_population + mim_shadow + mim_probe``.
    """
    if cfg.mim_source == "synthetic":
        return _synthetic(cfg)
    if cfg.mim_source == "flickr8k":
        return _flickr8k(cfg)
    return _lfw(cfg)


def check_disjoint(data: MimImages) -> None:
    """Raise ``AssertionError`` if an id (or, for real data, an image) appears in two roles."""
    sets = [set(data.population_ids), set(data.shadow_ids), set(data.probe_ids)]
    for i in range(3):
        for j in range(i + 1, 3):
            shared = sets[i] & sets[j]
            assert not shared, (
                f"{ROLES[i]} and {ROLES[j]} share {len(shared)} images, e.g. {sorted(shared)[:3]}"
            )
