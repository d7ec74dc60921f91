import pytest

from m4i_utils.core import config


def test_profiles_resolve_and_are_frozen():
    for name in config.PROFILES:
        cfg = config.resolve_profile(name)
        assert cfg.profile == name
        with pytest.raises(AttributeError):
            cfg.seed = 3  # type: ignore[misc]


def test_paper_profile_has_paper_sizes():
    cfg = config.resolve_profile("paper")
    assert (cfg.n_target_members, cfg.n_target_nonmembers, cfg.n_target_test) == (3000, 3000, 1000)
    assert (cfg.n_shadow_members, cfg.n_shadow_nonmembers) == (3000, 3000)
    assert (cfg.resnet_trunk, cfg.vgg_trunk, cfg.epochs) == ("resnet152", "vgg16", 20)
    assert (cfg.lr, cfg.batch_size, cfg.optimizer) == (0.01, 128, "sgd")


def test_overrides_are_coerced_from_strings():
    cfg = config.resolve_profile("smoke", {"seed": "7", "datasets": "synth_coco,synth_iapr", "lr": "0.1"})
    assert cfg.seed == 7 and cfg.datasets == ("synth_coco", "synth_iapr") and cfg.lr == 0.1


def test_env_sets_data_root(monkeypatch):
    monkeypatch.setenv("M4I_DATA_ROOT", "/some/where")
    assert config.resolve_profile("smoke").data_root == "/some/where"


@pytest.mark.parametrize(
    ("profile", "overrides", "match"),
    [
        ("nope", {}, "unknown profile"),
        ("smoke", {"not_a_field": 1}, "unknown config field"),
        ("smoke", {"datasets": "imagenet"}, "unknown dataset"),
        ("smoke", {"trunk_weights": "magic"}, "unknown trunk_weights"),
        ("smoke", {"n_target_members": 0}, "must be positive"),
    ],
)
def test_bad_configuration_is_a_clear_error(profile, overrides, match):
    with pytest.raises(ValueError, match=match):
        config.resolve_profile(profile, overrides)


def test_science_excludes_paths():
    sci = config.resolve_profile("smoke").science()
    assert "cache_dir" not in sci and "data_root" not in sci and sci["profile"] == "smoke"


def test_scaled_to_fits_small_corpus():
    cfg = config.scaled_to(config.resolve_profile("default"), 1000)
    need = cfg.n_target_members + cfg.n_target_nonmembers + cfg.n_target_test
    need += cfg.n_shadow_members + cfg.n_shadow_nonmembers + cfg.min_public
    assert need <= 1000
