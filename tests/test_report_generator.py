"""The medical report generators (M4I appendix G) as cached models and Targets: each of notebook 07's three
models is its own artifact (kind ``med_model``), and ``run_medical`` assembles their reports."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from m4i_utils.core.config import resolve_profile
from m4i_utils.core.runtime import rng_for
from m4i_utils.experiments import report_generation as rg
from m4i_utils.models.base import Target


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return resolve_profile("smoke", {"cache_dir": str(tmp_path_factory.mktemp("cache"))})


@pytest.fixture(scope="module")
def run(cfg) -> rg.MedRun:
    return rg.run_medical(cfg)


@pytest.fixture(scope="module")
def models(cfg, run) -> dict[str, rg.TrainedReportGenerator]:
    return {name: rg.load_report_generator(cfg, name) for name in rg.MED_MODELS}


def test_run_medical_reports_are_those_of_the_loaded_models(cfg, run, models) -> None:
    assert set(run.generated) == set(rg.MED_MODELS)
    for name, (_, _, roles) in rg.MED_MODELS.items():
        assert set(run.generated[name]) == set(roles)
        for role in roles:
            assert models[name].query(cfg, run.corpus.name, role) == run.generated[name][role]
    keys = "\n".join(models[name].key for name in rg.MED_MODELS)
    assert run.key == hashlib.sha256(keys.encode()).hexdigest()[:16]
    assert set(run.history) == {"target", "shadow_r2gen"} and set(run.seconds) == set(rg.MED_MODELS)


def test_saved_weights_regenerate_the_stored_reports(cfg, run, models) -> None:
    for name, (_, _, roles) in rg.MED_MODELS.items():
        role = roles[-1]
        assert models[name].reports_for(cfg, run.images(role)) == run.generated[name][role], name


@pytest.mark.parametrize(
    "name, role", [("shadow_r2gen", "target_test"), ("shadow_lstm", "public"), ("target", "shadow_members")]
)
def test_other_roles_get_one_report_per_study(cfg, run, models, name: str, role: str) -> None:
    out = models[name].query(cfg, run.corpus.name, role)
    assert len(out) == len(run.splits[role]) > 0
    assert all(isinstance(r, str) for r in out)


def test_models_are_targets(cfg, models) -> None:
    expected = {
        "target": ("R2GenCMN", "target"),
        "shadow_r2gen": ("R2GenCMN", "shadow"),
        "shadow_lstm": ("CNN+LSTM", "shadow"),
    }
    for name, model in models.items():
        assert isinstance(model, Target)
        assert model.kind == "report_generator"
        assert (model.name, model.role) == expected[name]
    assert models["shadow_lstm"].train_seed == cfg.seed
    assert models["target"].train_seed == int(rng_for(cfg.seed, "med", "target").integers(2**31))
    assert len({m.key for m in models.values()}) == 3


def test_bad_queries_raise(cfg, run, models) -> None:
    with pytest.raises(ValueError, match="unknown medical model"):
        rg.load_report_generator(cfg, "shadow")
    target = models["target"]
    with pytest.raises(ValueError, match="not 'synth_coco'"):
        target.query(cfg, "synth_coco", "target_members")
    with pytest.raises(ValueError, match="unknown role 'val'"):
        target.query(cfg, run.corpus.name, "val")
    with pytest.raises(ValueError, match="med_beam_width"):
        target.query(dataclasses.replace(cfg, med_beam_width=2), run.corpus.name, "public")


def test_registered_kind_loads_the_same_model(cfg, models) -> None:
    from m4i_utils.models import registry

    loaded = registry.load_target("report_generator", cfg, name="shadow_lstm")
    assert loaded.key == models["shadow_lstm"].key
