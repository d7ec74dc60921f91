"""The CLIP study's data (notebook 11): disjoint roles, attack images never trained on, controls' names
in text only, the config's cross-field checks."""

import dataclasses

import numpy as np
import pytest

from m4i_utils.core import config
from m4i_utils.data import identity_world


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cfg = config.resolve_profile("smoke", {"cache_dir": str(tmp_path_factory.mktemp("cache"))})
    return cfg, identity_world.build_study_data(cfg)


def test_people_groups_and_candidate_names(data):
    cfg, d = data
    members = len(cfg.clip_inject_counts) * cfg.clip_members_per_count
    assert d.member.sum() == members and len(d.group) == members + cfg.clip_nonmembers + cfg.clip_name_only
    assert sorted(set(d.inject[d.member].tolist())) == sorted(cfg.clip_inject_counts)
    assert len(d.names) == cfg.clip_candidates == len(set(d.names))
    assert len(set(d.name_index.tolist())) == len(d.group)  # everybody evaluated is a distinct candidate
    # each member trains on exactly N images, captioned with their own name
    for p in np.flatnonzero(d.member):
        own = np.flatnonzero(d.person_of == p)
        assert len(own) == d.inject[p]
        assert all(d.names[d.name_index[p]] in d.person_captions[i] for i in own)


def test_attack_images_are_never_trained_on(data):
    _, d = data
    trained = {d.person_images[i].tobytes() for i in range(len(d.person_images))}
    attack = d.attack_images.reshape(-1, *d.attack_images.shape[2:])
    assert not any(a.tobytes() in trained for a in attack)


def test_roles_are_disjoint_and_controls_are_text_only(data):
    cfg, d = data
    identity_world.check_disjoint(d)
    assert not set(d.filler_ids) & set(d.iid_ids) and not set(d.iid_ids) & set(d.known_ids)
    assert len(d.cross_ids) == len(d.iid_ids) == cfg.clip_pair_queries
    controls = [d.names[d.name_index[p]] for p, g in enumerate(d.group) if g == "name-only control"]
    for name in controls:
        hits = [i for i, c in enumerate(d.filler_captions) if name in c]
        assert len(hits) == cfg.clip_name_only_count and min(hits) >= cfg.clip_pair_queries
        assert not any(name in c for c in d.person_captions)


def test_training_pairs(data):
    cfg, d = data
    imgs, caps = d.training_pairs(cfg.clip_filler)
    assert len(imgs) == len(caps) == len(d.person_images) + cfg.clip_filler
    imgs, caps = d.training_pairs(cfg.clip_size_sweep[0], people=False)
    assert len(caps) == cfg.clip_size_sweep[0] and caps == d.filler_captions[: len(caps)]
    with pytest.raises(ValueError, match="filler pool holds"):
        d.training_pairs(len(d.filler_images) + 1)


def test_config_checks_name_the_field():
    cfg = config.resolve_profile("smoke")
    problems = config.config_problems(dataclasses.replace(cfg, clip_k=(1, 99)))
    assert any("clip_k=(1, 99)" in p and "clip_attack_images" in p for p in problems)
    problems = config.config_problems(dataclasses.replace(cfg, clip_candidates=10))
    assert any(p.startswith("clip_candidates=10") for p in problems)
    problems = config.config_problems(dataclasses.replace(cfg, n_pairs=300))
    assert any(p.startswith("n_pairs=300: the CLIP study") for p in problems)
    problems = config.config_problems(dataclasses.replace(cfg, clip_inject_counts=()))
    assert any(p.startswith("clip_inject_counts=()") for p in problems)


def test_calibrated_population_halves_and_roles(data):
    from m4i_utils.experiments import clip_study

    cfg, d = data
    masks = clip_study.calib_masks(cfg)
    q = cfg.clip_pair_queries
    assert masks.shape == (cfg.clip_calib_models, 2 * q) and (masks.sum(1) == q).all()
    assert not (masks[0] == masks[1]).all() and np.array_equal(masks, clip_study.calib_masks(cfg))
    # population (member queries + i.i.d. queries), base filler and RMIA's z (known non-members) are disjoint
    _, _, population = clip_study._population(d, q)
    base = d.filler_ids[q : q + cfg.clip_calib_base]
    assert len(set(population)) == 2 * q
    assert not set(population) & set(base) and not set(population) & set(d.known_ids)
    assert not set(base) & set(d.known_ids)


def test_lfw_mode_scales_to_the_images_people_have(tmp_path):
    from test_lfw import _make_lfw

    from m4i_utils.data.records import DataError

    # 12 people with 5 images, 30 with 3: members with N=2 need 2 + 3 attack images
    people = {f"Person_{i:02d}": 5 for i in range(12)} | {f"Other_{i:02d}": 3 for i in range(30)}
    root = _make_lfw(tmp_path / "data", people)
    over = {"cache_dir": str(tmp_path / "cache"), "data_root": str(root), "clip_source": "lfw",
            "clip_inject_counts": (2,), "clip_members_per_count": 10, "clip_nonmembers": 10,
            "clip_name_only": 2, "clip_attack_images": 3, "clip_k": (1, 3),
            "clip_candidates": 40}  # fmt: skip
    cfg = config.resolve_profile("smoke", over)
    d = identity_world.build_study_data(cfg)
    assert d.source == "lfw" and d.attack_images.shape[:2] == (22, 3) and len(d.person_images) == 20
    members = [d.person_ids[p] for p in np.flatnonzero(d.member)]
    assert all(m.startswith("Person_") for m in members)  # only they have 2 + 3 images
    assert " " in d.names[d.name_index[0]]  # display names, not folder names
    trained = {im.tobytes() for im in d.person_images}
    assert not any(a.tobytes() in trained for a in d.attack_images.reshape(-1, *d.attack_images.shape[2:]))
    with pytest.raises(DataError, match="need >= 5 images"):
        identity_world.build_study_data(dataclasses.replace(cfg, clip_members_per_count=13))
