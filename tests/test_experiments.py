import numpy as np
import pytest

from m4i_utils.core import config
from m4i_utils.experiments import attack_grid
from m4i_utils.experiments.attack_grid import ModelSpec, QueryPart


@pytest.fixture
def cfg():
    return config.resolve_profile("smoke")


def test_scenarios_follow_the_paper():
    t = ModelSpec("synth_coco", "resnet", "target")
    assert attack_grid.scenario_of(ModelSpec("synth_coco", "resnet", "shadow"), t) == "unrestricted"
    assert attack_grid.scenario_of(ModelSpec("synth_coco", "vgg", "shadow"), t) == "data_only"
    assert attack_grid.scenario_of(ModelSpec("synth_iapr", "vgg", "shadow"), t) == "constrained"
    assert attack_grid.scenario_of(ModelSpec("synth_iapr", "resnet", "shadow"), t) == "architecture_only"
    assert t.name == "CR" and ModelSpec("synth_flickr", "vgg", "shadow").name == "FV"


def test_query_parts_use_disjoint_roles(cfg):
    target = ModelSpec("synth_coco", "resnet", "target")
    shadow = ModelSpec("synth_coco", "resnet", "shadow")
    iid_t = attack_grid.query_parts(cfg, target, "iid")
    iid_s = attack_grid.query_parts(cfg, shadow, "iid")
    assert iid_t == [
        QueryPart("synth_coco", "target_members", 1),
        QueryPart("synth_coco", "target_nonmembers", 0),
    ]
    assert {p.role for p in iid_t}.isdisjoint({p.role for p in iid_s})
    shift = attack_grid.query_parts(cfg, target, "shift")
    assert shift[1].dataset == "synth_flickr" and shift[1].label == 0 and shift[0] == iid_t[0]
    with pytest.raises(ValueError, match="unknown setting"):
        attack_grid.query_parts(cfg, target, "bogus")


def test_run_grid_covers_every_cell(cfg, monkeypatch):
    rng = np.random.default_rng(0)
    monkeypatch.setattr(attack_grid, "query_ids", lambda cfg, model, setting: np.arange(40))

    def featurize(model, part, attacker):
        return rng.normal(part.label, 1.0, size=(20, 2))

    results, rows = attack_grid.run_grid(cfg, featurize, "mb_svm", "test", "toy")
    assert len(rows) == 2 * 36
    assert {r["scenario"] for r in rows} == set(attack_grid.SCENARIOS)
    assert sum(r["scenario"] == "unrestricted" for r in rows) == 2 * 6
    assert np.mean([r["auc"] for r in rows]) > 0.7


def test_model_registry_names_the_registered_kinds(cfg):
    from m4i_utils.models.base import Target
    from m4i_utils.models.captioner import TrainedCaptioner
    from m4i_utils.models.registry import TARGETS, load_target

    with pytest.raises(ValueError, match="registered kinds: \\['captioner', 'report_generator', 'tts'\\]"):
        load_target("diffusion", cfg)
    assert "captioner" in TARGETS and TrainedCaptioner.kind == "captioner"
    cap = TrainedCaptioner(None, None, {}, "k", "synth_coco", "mobilenet", "target", "f", 0.0, 1)
    assert isinstance(cap, Target) and cap.label == "CM/s1" and cap.name == "CM"


def test_run_grid_pairs_shadow_and_target_of_each_training_seed(monkeypatch):
    cfg = config.resolve_profile("smoke", {"train_seeds": "0,3"})
    seen = []

    def featurize(model, part, attacker):
        seen.append((model.role, model.train_seed, attacker.train_seed))
        return np.random.default_rng(len(seen)).normal(part.label, 1.0, size=(20, 2))

    monkeypatch.setattr(attack_grid, "query_ids", lambda cfg, model, setting: np.arange(40))
    _, rows = attack_grid.run_grid(cfg, featurize, "mb_svm", "test", "toy", settings=("iid",))
    assert sorted({r["train_seed"] for r in rows}) == [0, 3] and len(rows) == 2 * 36
    assert all(model_seed == attacker_seed for _, model_seed, attacker_seed in seen)
    only_first = attack_grid.run_grid(
        cfg, featurize, "mb_svm", "t", "toy", settings=("iid",), train_seeds=(0,)
    )
    assert {r["train_seed"] for r in only_first[1]} == {0}
