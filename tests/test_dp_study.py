"""The DP study's split (notebook 09): disjoint seeded roles, canaries, the tuning images kept out."""

from dataclasses import replace

import numpy as np
import pytest

from m4i_utils.core.config import resolve_profile
from m4i_utils.data.bundles import load_bundle
from m4i_utils.experiments import dp_study


def test_dp_split_roles_are_disjoint_seeded_and_keep_out_val_and_tuning(tmp_path) -> None:
    cfg = resolve_profile("smoke", {"cache_dir": str(tmp_path)})
    dataset = cfg.datasets[0]
    split = dp_study.dp_split(cfg, dataset)
    ids = {role: set(c.ids) for role, c in split.roles.items()}
    assert sum(map(len, ids.values())) == len(set().union(*ids.values()))  # disjoint
    assert len(ids["members"]) == len(ids["shadow_members"]) == cfg.def_dp_members
    assert len(ids["canaries"]) == cfg.def_dp_canaries and len(ids["test"]) == cfg.def_dp_test
    bundle = load_bundle(cfg, dataset)
    held = set(bundle.role("val").ids) | set(dp_study.tuning_records(cfg, bundle).ids)
    assert not held & set().union(*ids.values())
    again = dp_study.dp_split(cfg, dataset)
    assert again.key == split.key and (again.canary_in == split.canary_in).all()
    other = dp_study.dp_split(resolve_profile("smoke", {"cache_dir": str(tmp_path), "seed": 1}), dataset)
    assert other.roles["members"].ids != split.roles["members"].ids


def test_canaries_are_mislabelled_and_enter_by_their_coins(tmp_path) -> None:
    cfg = resolve_profile("smoke", {"cache_dir": str(tmp_path)})
    split = dp_study.dp_split(cfg, cfg.datasets[0])
    canaries = split.roles["canaries"].records
    corpus = {r.id: r for r in load_bundle(cfg, cfg.datasets[0]).corpus.records}
    for i, rec in enumerate(canaries):  # its own image, the next canary's captions
        assert (
            rec.captions == corpus[canaries[(i + 1) % len(canaries)].id].captions != corpus[rec.id].captions
        )
    assert 0 < split.canary_in.sum() < len(canaries)
    train = split.training_set("target")
    picked = [r.id for r, c in zip(canaries, split.canary_in, strict=True) if c]
    assert train.ids == split.roles["members"].ids + picked
    assert split.training_set("shadow").ids == split.roles["shadow_members"].ids


def test_dp_split_too_small_names_the_fields(tmp_path) -> None:
    cfg = resolve_profile("smoke", {"cache_dir": str(tmp_path), "def_dp_nonmembers": 400})
    with pytest.raises(ValueError, match="def_dp_nonmembers"):
        dp_study.dp_split(cfg, cfg.datasets[0])
    cfg = resolve_profile("smoke", {"cache_dir": str(tmp_path), "def_dp_members": 5000})
    with pytest.raises(ValueError, match="def_dp_members=5000"):
        dp_study.tuning_records(cfg, load_bundle(cfg, cfg.datasets[0]))


def test_study_models_and_stack() -> None:
    cfg = resolve_profile("smoke")
    assert dp_study.study_models(cfg) == ["dp_eps8", "control", "twin", "public_init"]
    assert dp_study.study_models(replace(cfg, def_dp_public_passes=0)) == ["dp_eps8", "control", "twin"]
    with pytest.raises(ValueError, match="unknown DP study model 'dp_eps3'; valid for this config: dp_eps8"):
        dp_study.study_model(cfg, cfg.datasets[0], cfg.families[0], "dp_eps3")
    sig = [
        dp_study.ModelSignals([], np.ones((3, 2)), np.ones(3)),
        dp_study.ModelSignals([], np.zeros((2, 2)), np.zeros(2)),
    ]
    stacked = dp_study._stack(sig, "logprob")
    assert stacked.x.shape == (5, 1) and stacked.labels.tolist() == [1, 1, 1, 0, 0]
    assert dp_study._stack(sig, "similarity").x.shape == (5, 2)


def test_fit_study_model_reproduces_the_cached_study_model(tmp_path) -> None:
    """The uncached recipe (course assignment 4 trains with it) is the one the cached study model was built
    with: same seed, same weights, same accountant."""
    import torch

    from m4i_utils.core.runtime import rng_for

    cfg = resolve_profile("smoke", {"cache_dir": str(tmp_path)})
    dataset, family = cfg.datasets[0], cfg.families[0]
    cached = dp_study.study_model(cfg, dataset, family, "dp_eps8")
    seed = int(rng_for(cfg.seed, "dp_study_model", dataset, family, "dp_eps8", "target").integers(2**31))
    train = dp_study.dp_split(cfg, dataset).training_set("target")
    fresh = dp_study.fit_study_model(cfg, dataset, family, train, "dp_eps8", seed)
    assert fresh.key == "" and fresh.tag == "dp_eps8" and fresh.train_seed == seed == cached.train_seed
    assert fresh.history["epsilon"] == cached.history["epsilon"] <= 8.0
    for (name, a), b in zip(
        fresh.model.state_dict().items(), cached.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert fresh.vocab.itos == cached.vocab.itos
    public = dp_study.fit_study_model(cfg, dataset, family, train, dp_study.PUBLIC, seed)
    assert public.history["epsilon"] == 0.0 and public.history["steps"] == 0
    with pytest.raises(
        ValueError, match="model must be 'dp_eps<epsilon>', 'control' or 'public_init', got 'twin'"
    ):
        dp_study.fit_study_model(cfg, dataset, family, train, dp_study.TWIN, seed)
