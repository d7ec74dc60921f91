"""The data of the CLIP study (notebook 11): who is a member, how often, which images train and which attack.

Identity inference ("Does CLIP Know My Face?", Hintersdorf et al., JAIR 2024) needs people whose images are
injected into the training set ``N`` times, people who never appear, held-out images of everybody for the
attacker, and a pool of candidate names. Pair-level membership inference (Ko et al., ICCV 2023) needs
member pairs, non-member pairs from the same distribution (i.i.d.) and from another corpus, and known
non-members for WSA. :func:`build_study_data` draws all of it, seeded, with these roles:

* **Evaluated people**, from the faces world (:mod:`m4i_utils.data.faces`) or LFW
  (:mod:`m4i_utils.data.lfw`): ``clip_members_per_count`` members for each ``N`` of
  ``clip_inject_counts`` (one model holds every group: the paper trains one model per ``N``),
  ``clip_nonmembers`` non-members, and ``clip_name_only`` controls (beyond the paper) whose *names*
  appear in ``clip_name_only_count`` filler captions each but whose faces never do. Every member's ``N``
  training images are captioned with a name template (:data:`TRAIN_TEMPLATES`, disjoint from the attack's
  prompt templates); everybody's ``clip_attack_images`` attack images are other images of them, never
  trained on.
* **Candidate names**: the evaluated people and controls first, then other names up to
  ``clip_candidates`` (faces world: further names of its pools; LFW: other LFW people's names), shuffled.
* **Filler**: pairs of the synthetic world ``clip_filler_world`` (one fixed caption per image) so that
  people are a minority of the training set. Of a seeded permutation of the world, the first
  ``max(clip_filler, clip_size_sweep)`` are the training pool (a model with ``S`` filler pairs trains on
  the first ``S``; the first ``clip_pair_queries`` are the member queries, which every model trains on),
  the next ``clip_pair_queries`` the i.i.d. non-member queries, the next ``clip_known_nonmembers`` WSA's
  known non-members. Cross-corpus non-members: ``clip_pair_queries`` pairs of ``clip_cross_world``.

Roles are disjoint by construction (:func:`check_disjoint` asserts it on ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import rng_for
from m4i_utils.data import faces
from m4i_utils.data.records import DataError
from m4i_utils.data.synthetic import load_world

TRAIN_TEMPLATES: tuple[str, ...] = (
    "{}",
    "{} smiling for the camera",
    "{} at a press event",
    "{} photographed outdoors",
    "{} in the news today",
    "an interview with {}",
    "{} on stage",
    "a candid shot of {}",
)
"""Captions of the members' training images (none is one of the attack's 21 templates)."""
NAME_ONLY_SUFFIX = "{} , photo credit {}"
"""A control's name added to a filler caption: ``caption , photo credit <name>`` (text only, no face)."""
ATTACK_OFFSET = 100_000
"""Faces world: attack image ``j`` of a person is image ``ATTACK_OFFSET + j`` (training images are 0..N-1)."""


@dataclass(frozen=True)
class StudyData:
    """Arrays and labels of the CLIP study (see the module docstring for the roles).

    Attributes:
        names: the candidate names; evaluated person ``i`` has name ``names[name_index[i]]``.
        person_ids: id of each evaluated person (members, non-members, controls).
        group: ``"N=<n>"`` for members, ``"non-member"``, ``"name-only control"``.
        inject: training images per evaluated person (0 for non-members and controls).
        name_index: index of each evaluated person's name in ``names``.
        attack_images: ``(people, clip_attack_images, s, s, 3)`` uint8, never trained on.
        person_images, person_captions, person_of: the members' training pairs and whose they are.
        filler_images, filler_captions, filler_ids: the filler training pool (first S used by a model).
        iid_images, iid_captions, iid_ids: i.i.d. non-member queries.
        known_images, known_captions, known_ids: WSA's known non-members.
        cross_images, cross_captions, cross_ids: cross-corpus non-member queries.
        source: ``synthetic`` or ``lfw``.
    """

    names: list[str]
    person_ids: list[str]
    group: list[str]
    inject: np.ndarray
    name_index: np.ndarray
    attack_images: np.ndarray
    person_images: np.ndarray
    person_captions: list[str]
    person_of: np.ndarray
    filler_images: np.ndarray
    filler_captions: list[str]
    filler_ids: list[str]
    iid_images: np.ndarray
    iid_captions: list[str]
    iid_ids: list[str]
    known_images: np.ndarray
    known_captions: list[str]
    known_ids: list[str]
    cross_images: np.ndarray
    cross_captions: list[str]
    cross_ids: list[str]
    source: str

    @property
    def member(self) -> np.ndarray:
        """Membership ground truth of each evaluated person (``inject > 0``)."""
        return self.inject > 0

    def training_pairs(self, n_filler: int, people: bool = True) -> tuple[np.ndarray, list[str]]:
        """The training set of a model with the first ``n_filler`` filler pairs (and the people's pairs)."""
        if n_filler > len(self.filler_images):
            raise ValueError(f"n_filler={n_filler}: the filler pool holds {len(self.filler_images)} pairs")
        imgs, caps = self.filler_images[:n_filler], list(self.filler_captions[:n_filler])
        if people:
            imgs, caps = np.concatenate([self.person_images, imgs]), list(self.person_captions) + caps
        return imgs, caps


def _world_pairs(cfg: Config, world: str, label: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """A seeded permutation of the world, its images, one seeded caption per image, and ids."""
    corpus = load_world(cfg.cache_dir, world, cfg.n_pairs, cfg.clip_image_size, cfg.seed)
    rng = rng_for(cfg.seed, "clip_pairs", label, world)
    perm = rng.permutation(len(corpus))
    caps = [corpus[int(i)].captions[int(rng.integers(len(corpus[int(i)].captions)))] for i in perm]
    imgs = np.stack([np.asarray(corpus[int(i)].image) for i in perm])
    return perm, imgs, caps, [corpus[int(i)].id for i in perm]


def _synthetic_people(cfg: Config, n_people: int, rng: np.random.Generator):
    """Faces world: identities (all candidate names) and an image renderer."""
    people = faces.make_identities(cfg.clip_candidates, cfg.seed, "clip")
    order = rng.permutation(len(people))
    evaluated = [people[int(i)] for i in order[:n_people]]
    others = [people[int(i)].name for i in order[n_people:]]

    def train_image(p: int, j: int) -> np.ndarray:
        return faces.render_face(evaluated[p], cfg.seed, j, size=cfg.clip_image_size)

    def attack_image(p: int, j: int) -> np.ndarray:
        return faces.render_face(evaluated[p], cfg.seed, ATTACK_OFFSET + j, size=cfg.clip_image_size)

    return [p.id for p in evaluated], [p.name for p in evaluated], others, train_image, attack_image


def _lfw_people(cfg: Config, counts: list[int], rng: np.random.Generator):
    """LFW: members need ``N + clip_attack_images`` images, everybody else ``clip_attack_images``."""
    from m4i_utils.data.lfw import load_face, load_lfw

    if not cfg.data_root:
        raise DataError("clip_source='lfw' needs the data root (config field data_root or M4I_DATA_ROOT)")
    everyone = load_lfw(cfg.data_root)
    k = cfg.clip_attack_images
    taken: set[str] = set()
    chosen = []
    # hardest first: the largest N needs the most images
    for need in sorted(set(counts), reverse=True):
        slots = [i for i, c in enumerate(counts) if c == need]
        pool = [p for p in everyone if len(p.images) >= need + k and p.folder not in taken]
        if len(pool) < len(slots):
            raise DataError(
                f"LFW: {len(slots)} people need >= {need + k} images (N={need} + clip_attack_images={k}) but "
                f"only {len(pool)} unused ones have that many; lower clip_inject_counts, clip_attack_images, "
                "clip_members_per_count or clip_nonmembers"
            )
        for slot, j in zip(slots, rng.choice(len(pool), len(slots), replace=False), strict=True):
            chosen.append((slot, pool[int(j)]))
            taken.add(pool[int(j)].folder)
    evaluated = [p for _, p in sorted(chosen, key=lambda t: t[0])]
    rest = [p.name for p in everyone if p.folder not in taken]
    if len(rest) < cfg.clip_candidates - len(evaluated):
        raise DataError(
            f"LFW holds {len(rest)} other names; lower clip_candidates to <= {len(rest) + len(evaluated)}"
        )
    others = [
        rest[int(i)] for i in rng.choice(len(rest), cfg.clip_candidates - len(evaluated), replace=False)
    ]
    # per person: a seeded order of their images; attack images first, training images after them
    orders = [rng.permutation(len(p.images)) for p in evaluated]

    def attack_image(p: int, j: int) -> np.ndarray:
        return load_face(evaluated[p].images[int(orders[p][j])], cfg.clip_image_size)

    def train_image(p: int, j: int) -> np.ndarray:
        return load_face(evaluated[p].images[int(orders[p][k + j])], cfg.clip_image_size)

    return [p.folder for p in evaluated], [p.name for p in evaluated], others, train_image, attack_image


def _build(cfg: Config) -> dict:
    rng = rng_for(cfg.seed, "clip_people", cfg.clip_source)
    n_members = len(cfg.clip_inject_counts) * cfg.clip_members_per_count
    n_people = n_members + cfg.clip_nonmembers + cfg.clip_name_only
    inject = np.r_[np.repeat(np.asarray(cfg.clip_inject_counts, np.int64), cfg.clip_members_per_count),
                   np.zeros(cfg.clip_nonmembers + cfg.clip_name_only, np.int64)]  # fmt: skip
    group = [f"N={n}" for n in inject[:n_members]] + ["non-member"] * cfg.clip_nonmembers
    group += ["name-only control"] * cfg.clip_name_only
    if cfg.clip_source == "synthetic":
        ids, names, others, train_image, attack_image = _synthetic_people(cfg, n_people, rng)
    else:
        ids, names, others, train_image, attack_image = _lfw_people(
            cfg, [int(n) if n else 0 for n in inject], rng
        )
    candidates = names + others[: cfg.clip_candidates - n_people]
    shuffle = rng.permutation(len(candidates))
    pos = np.empty(len(candidates), np.int64)
    pos[shuffle] = np.arange(len(candidates))
    attack = np.stack([
        np.stack([attack_image(p, j) for j in range(cfg.clip_attack_images)]) for p in range(n_people)
    ])  # fmt: skip
    p_imgs, p_caps, p_of = [], [], []
    for p in range(n_members):
        for j in range(int(inject[p])):
            p_imgs.append(train_image(p, j))
            p_caps.append(TRAIN_TEMPLATES[int(rng.integers(len(TRAIN_TEMPLATES)))].format(names[p]))
            p_of.append(p)
    size = cfg.clip_image_size
    pool = max((cfg.clip_filler, *cfg.clip_size_sweep))
    q, known = cfg.clip_pair_queries, cfg.clip_known_nonmembers
    _, w_imgs, w_caps, w_ids = _world_pairs(cfg, cfg.clip_filler_world, "filler")
    fill_caps = list(w_caps[:pool])
    # the controls' names go into filler captions that are not member queries (the first q)
    slots = rng.choice(
        np.arange(q, cfg.clip_filler), cfg.clip_name_only * cfg.clip_name_only_count, replace=False
    )
    for c, slot in enumerate(slots):
        person = n_members + cfg.clip_nonmembers + c // cfg.clip_name_only_count
        fill_caps[int(slot)] = NAME_ONLY_SUFFIX.format(fill_caps[int(slot)], names[person])
    _, x_imgs, x_caps, x_ids = _world_pairs(cfg, cfg.clip_cross_world, "cross")
    return {
        "names": [candidates[int(i)] for i in shuffle],
        "person_ids": ids,
        "group": group,
        "inject": inject,
        "name_index": pos[:n_people],
        "attack_images": attack,
        "person_images": np.stack(p_imgs) if p_imgs else np.zeros((0, size, size, 3), np.uint8),
        "person_captions": p_caps,
        "person_of": np.asarray(p_of, np.int64),
        "filler_images": w_imgs[:pool],
        "filler_captions": fill_caps,
        "filler_ids": w_ids[:pool],
        "iid_images": w_imgs[pool : pool + q],
        "iid_captions": w_caps[pool : pool + q],
        "iid_ids": w_ids[pool : pool + q],
        "known_images": w_imgs[pool + q : pool + q + known],
        "known_captions": w_caps[pool + q : pool + q + known],
        "known_ids": w_ids[pool + q : pool + q + known],
        "cross_images": x_imgs[:q],
        "cross_captions": x_caps[:q],
        "cross_ids": x_ids[:q],
        "source": cfg.clip_source,
    }


DATA_FIELDS = (
    *("seed", "n_pairs", "clip_source", "clip_inject_counts", "clip_members_per_count", "clip_nonmembers"),
    *("clip_name_only", "clip_name_only_count", "clip_candidates", "clip_attack_images", "clip_filler_world"),
    *("clip_filler", "clip_cross_world", "clip_pair_queries", "clip_known_nonmembers", "clip_size_sweep"),
    "clip_image_size",
)
"""The config fields the study's data depends on (its cache key)."""
_ARRAYS = ("inject", "name_index", "attack_images", "person_images", "person_of", "filler_images",
           "iid_images", "known_images", "cross_images")  # fmt: skip


def build_study_data(cfg: Config) -> StudyData:
    """The study's data for ``cfg`` (cached: ``arrays.npz`` and ``lists.json``; LFW mode keyed on the data
    root's path as well)."""
    params = {k: getattr(cfg, k) for k in DATA_FIELDS}
    if cfg.clip_source == "lfw":
        params["data_root"] = str(Path(cfg.data_root or "").resolve())

    def build(out: Path) -> None:
        data = _build(cfg)
        np.savez(out / "arrays.npz", **{k: data[k] for k in _ARRAYS})
        (out / "lists.json").write_text(json.dumps({k: v for k, v in data.items() if k not in _ARRAYS}))

    code = ["m4i_utils.data.faces", "m4i_utils.data.lfw", "m4i_utils.data.synthetic"]
    art = cached(cfg.cache_dir, "clip_study_data", params, build, code_modules=code)
    arrays = np.load(art.file("arrays.npz"))
    data = StudyData(**{k: arrays[k] for k in _ARRAYS}, **json.loads(art.file("lists.json").read_text()))
    check_disjoint(data)
    return data


def check_disjoint(data: StudyData) -> None:
    """The roles share no record and no evaluated person trains with an attack image (raises otherwise)."""
    roles = {"filler": data.filler_ids, "iid": data.iid_ids, "known": data.known_ids}
    seen: dict[str, str] = {}
    for role, ids in roles.items():
        for i in ids:
            if i in seen:
                raise AssertionError(f"record {i} is in both {seen[i]} and {role}")
            seen[i] = role
    if len(set(data.names)) != len(data.names):
        raise AssertionError("candidate names repeat")
    if len(set(data.person_ids)) != len(data.person_ids):
        raise AssertionError("an evaluated person appears twice")
