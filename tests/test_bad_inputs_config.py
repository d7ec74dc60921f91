"""Bad inputs fail early and clearly: every message names the field, the bad value and what is valid.

A. overrides are validated (whole config) by ``resolve_profile`` and by the runner before any notebook runs;
B. unknown dataset / family / trunk names are rejected up front with the valid names;
C. a dataset smaller than the split sizes is an error unless ``scale_splits_to_data`` is set;
D. verdicts compare with chance (CI) before claiming agreement with the paper;
E. model names (dataset letter + family letter) are unique within a run.
"""

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest

from m4i_utils.core import config, runner
from m4i_utils.core.runtime import ALLOCATOR_ENV, allocator_env
from m4i_utils.data import bundles, datasets
from m4i_utils.data.records import Corpus, DataError, Record


@pytest.fixture
def no_notebooks(monkeypatch):
    """Fail the test if the runner would execute any notebook."""

    def execute(*args, **kwargs):
        raise AssertionError("a notebook was executed although the configuration is invalid")

    monkeypatch.setattr(runner, "execute", execute)


# ------------------------------------------------------------------------------------------- A: overrides


@pytest.mark.parametrize(
    ("overrides", "field", "value", "valid"),
    [
        ({"epochs": "abc"}, "epochs", "'abc'", "integer"),
        ({"n_shadow_nonmembers": "-5"}, "n_shadow_nonmembers", "-5", ">= 1"),
        ({"epochs": "0"}, "epochs", "0", ">= 1"),
        ({"batch_size": "0"}, "batch_size", "0", ">= 1"),
        ({"lr": "-1"}, "lr", "-1", "> 0"),
        ({"lr": "fast"}, "lr", "'fast'", "number"),
        ({"optimizer": "adamw_typo"}, "optimizer", "adamw_typo", "sgd, adam"),
        ({"med_source": "bogus"}, "med_source", "bogus", "synthetic, iu_xray"),
        ({"datasets": ""}, "datasets", "()", "synth_coco"),
        ({"mfe_holdout": "1.5"}, "mfe_holdout", "1.5", "between 0 and 1"),
        ({"fb_val_fraction": "0"}, "fb_val_fraction", "0", "between 0 and 1"),
        ({"med_dropout": "1"}, "med_dropout", "1", "[0, 1)"),
        ({"seed": "-1"}, "seed", "-1", ">= 0"),
        ({"train_augment": "maybe"}, "train_augment", "'maybe'", "true or false"),
        ({"def_dp_epsilons": "8,-1"}, "def_dp_epsilons", "-1", "> 0"),
        ({"mb_features": "bleu1,meteor"}, "mb_features", "meteor", "rougeL"),
        ({"mb_svm_solver": "sag"}, "mb_svm_solver", "sag", "liblinear, libsvm"),
        ({"trunk_weights": "magic"}, "trunk_weights", "magic", "IMAGENET1K_V1"),
        ({"tts_real_corpora": "ljspeech"}, "tts_real_corpora", "ljspeech", "two different"),
        ({"tts_real_corpora": "ljspeech,vctk"}, "tts_real_corpora", "vctk", "libritts"),
        ({"med_heads": "3"}, "med_heads", "3", "must divide med_d_model"),
        ({"tts_kernel": "4"}, "tts_kernel", "4", "odd"),
        ({"n_pairs": "100"}, "n_pairs", "100", "840"),
    ],
)
def test_bad_override_is_rejected_by_resolve_profile(overrides, field, value, valid):
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", overrides)
    msg = str(exc.value)
    assert field in msg and value in msg and valid in msg, msg


def test_unknown_key_lists_close_matches():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"epoch": "3"})
    msg = str(exc.value)
    assert "unknown config field 'epoch'" in msg and "did you mean" in msg and "epochs" in msg, msg


def test_unknown_key_without_close_match_lists_valid_fields():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"not_a_key": 1})
    msg = str(exc.value)
    assert "'not_a_key'" in msg and "valid fields" in msg and "epochs" in msg, msg


def test_all_problems_are_reported_together():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"epochs": "0", "batch_size": "0", "lr": "-1"})
    msg = str(exc.value)
    assert "epochs=0" in msg and "batch_size=0" in msg and "lr=-1" in msg, msg


def test_valid_overrides_still_resolve():
    cfg = config.resolve_profile("smoke", {"epochs": "3", "def_dp_epsilons": "1,8", "lr": "1e-3"})
    assert cfg.epochs == 3 and cfg.def_dp_epsilons == (1.0, 8.0) and cfg.lr == 1e-3
    assert config.resolve_profile("smoke", {"n_pairs": "1e4"}).n_pairs == 10_000


def test_every_science_field_has_a_validation_rule():
    skip = getattr(config, "NOT_SCIENCE", {"data_root", "cache_dir", "output_dir"})
    fields = {f.name for f in dataclasses.fields(config.Config)} - set(skip)
    assert fields <= config.VALIDATED_FIELDS, sorted(fields - config.VALIDATED_FIELDS)


@pytest.mark.parametrize(
    ("params", "field", "value"),
    [
        (["not_a_key=1"], "not_a_key", "not_a_key"),
        (["epochs=abc"], "epochs", "'abc'"),
        (["n_shadow_nonmembers=-5"], "n_shadow_nonmembers", "-5"),
        (["optimizer=adamw_typo"], "optimizer", "adamw_typo"),
        (["families=foo"], "families", "foo"),
        (["threads=-1"], "threads", "-1"),
    ],
)
def test_runner_run_rejects_bad_overrides_before_any_notebook(no_notebooks, params, field, value):
    argv = ["run", "--profile", "smoke"]
    for p in params:
        argv += ["-p", p]
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    msg = str(exc.value.code)
    assert exc.value.code not in (0, None) and field in msg and value in msg, msg


def test_runner_grid_checks_every_combination_before_any_notebook(no_notebooks):
    with pytest.raises(SystemExit) as exc:
        runner.main(["grid", "04", "--profile", "smoke", "-p", "seed=0,1", "-p", "epochs=2,0"])
    msg = str(exc.value.code)
    assert "epochs=0" in msg and "grid cell" in msg and ">= 1" in msg, msg


def test_runner_pins_the_profiles_threads_and_sets_the_allocator(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "M4I_THREADS", *ALLOCATOR_ENV):
        monkeypatch.delenv(name, raising=False)
    runner.pin_threads(config.resolve_profile("smoke"))  # threads=0: the machine's cores, nothing pinned
    assert "M4I_THREADS" not in os.environ
    runner.pin_threads(config.resolve_profile("default"))
    assert os.environ["OMP_NUM_THREADS"] == os.environ["M4I_THREADS"] == "1"
    for name, value in ALLOCATOR_ENV.items():  # the kernels start with the allocator settings
        assert os.environ[name] == value
    monkeypatch.setenv("M4I_ALLOCATOR", "glibc")  # the documented way back to glibc's own defaults
    assert allocator_env() == {}


def test_validate_overrides_accepts_a_valid_grid():
    config.validate_overrides("smoke", {"seed": "0,1", "epochs": "2,3"}, grid=True)


# ------------------------------------------------------------------------------------------- B: names


def test_unknown_family_lists_valid_families():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"families": "foo"})
    msg = str(exc.value)
    assert "families" in msg and "'foo'" in msg and "resnet, vgg, mobilenet" in msg, msg


def test_unknown_trunk_lists_valid_trunks():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"resnet_trunk": "resnet999"})
    msg = str(exc.value)
    assert "resnet_trunk" in msg and "'resnet999'" in msg and "resnet18" in msg and "resnet152" in msg, msg


def test_unknown_dataset_lists_valid_datasets():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"datasets": "synth_coco,imagenet"})
    msg = str(exc.value)
    assert "datasets" in msg and "'imagenet'" in msg and "synth_flickr" in msg and "flickr8k" in msg, msg


def test_trunk_lookup_names_valid_trunks():
    from m4i_utils.models import trunks

    assert tuple(config.TRUNK_NAMES) == trunks.FAMILIES
    cfg = dataclasses.replace(config.resolve_profile("smoke"), vgg_trunk="vgg99")
    with pytest.raises(ValueError) as exc:
        trunks.trunk_name(cfg, "vgg")
    msg = str(exc.value)
    assert "vgg_trunk" in msg and "'vgg99'" in msg and "vgg11_bn" in msg, msg


def test_mobilenet_weights_are_explicit():
    from m4i_utils.models import trunks

    cfg = config.resolve_profile("smoke")
    assert trunks.weights_of(cfg, "mobilenet") == "IMAGENET1K_V1" and cfg.trunk_weights == "public_pretrain"
    assert trunks.weights_of(cfg, "resnet") == "public_pretrain"
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"mobilenet_weights": "public_pretrain"})
    assert "mobilenet_weights" in str(exc.value) and "IMAGENET1K_V1, random" in str(exc.value), exc.value


def test_missing_mobilenet_weights_advise_what_helps(monkeypatch):
    from m4i_utils.models import trunks

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(trunks.torchvision.models, "get_model", offline)
    with pytest.raises(RuntimeError) as exc:
        trunks._imagenet_model("mobilenet_v2")
    msg = str(exc.value)
    assert "mobilenet_v2-b0353104.pth" in msg and "checkpoints" in msg, msg
    assert "offline weights package" in msg and "no public pretraining" in msg and "no network" in msg, msg
    with pytest.raises(RuntimeError) as exc:
        trunks._imagenet_model("resnet18")
    assert "public_pretrain" in str(exc.value) and "resnet18" in str(exc.value)


# ------------------------------------------------------------------------------------------- C: small data


def test_small_dataset_is_an_error_without_opt_in():
    cfg = config.resolve_profile("default")
    with pytest.raises(DataError) as exc:
        config.fit_splits_to_data(cfg, 1000, "flickr8k")
    msg = str(exc.value)
    assert "'flickr8k'" in msg and "1000 pairs" in msg and "need 7500" in msg, msg
    assert "scale_splits_to_data" in msg


def test_small_dataset_is_scaled_and_noted_with_opt_in():
    cfg = config.resolve_profile("default", {"scale_splits_to_data": "true"})
    scaled, note = config.fit_splits_to_data(cfg, 1000, "flickr8k")
    assert (scaled.n_target_members, scaled.n_target_test, scaled.min_public) == (300, 100, 100)
    assert "'flickr8k'" in note and "1000 pairs" in note and "n_target_members=300" in note, note
    assert config.fit_splits_to_data(cfg, 10_000, "flickr8k") == (cfg, None)


def _tiny_corpus(n: int) -> Corpus:
    rng = np.random.default_rng(0)
    recs = tuple(
        Record(f"img{i}.jpg", rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), (f"caption {i}",))
        for i in range(n)
    )
    return Corpus("flickr8k", recs)


def test_load_bundle_applies_the_same_rule(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bundles, "load_corpus", lambda name, cfg: _tiny_corpus(100))
    bundles.load_bundle.cache_clear()
    cfg = config.resolve_profile("smoke", {"cache_dir": str(tmp_path)})
    with pytest.raises(DataError) as exc:
        bundles.load_bundle(cfg, "flickr8k")
    assert "'flickr8k'" in str(exc.value) and "100 pairs" in str(exc.value) and "840" in str(exc.value)
    opted = config.resolve_profile("smoke", {"cache_dir": str(tmp_path), "scale_splits_to_data": "true"})
    bundle = bundles.load_bundle(opted, "flickr8k")
    assert bundle.splits.sizes()["target_members"] == 30 and bundle.cfg.n_target_members == 30
    assert bundle.note and "n_target_members=30" in bundle.note
    assert "scale_splits_to_data" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- D: verdicts


@pytest.mark.parametrize(
    ("acc", "ci", "paper", "verdict"),
    [
        (0.50, (0.47, 0.53), (None, 0.81, 0.725), "at chance"),
        (0.42, (0.38, 0.46), (None, 0.81, 0.725), "below chance (inverted)"),
        (0.70, (0.66, 0.74), (None, 0.81, 0.725), "in line with the paper"),
        (0.56, (0.52, 0.60), (0.65, 0.75, None), "above chance but below the paper"),
        (0.95, (0.93, 0.97), (0.65, 0.75, None), "above the paper"),
    ],
)
def test_paper_verdict_compares_with_chance_first(acc, ci, paper, verdict):
    from m4i_utils.reporting import tables

    assert tables.paper_verdict(acc, *ci, paper) == verdict


def test_paper_verdict_without_ci_never_claims_agreement():
    from m4i_utils.reporting import tables

    out = tables.paper_verdict(0.70, float("nan"), float("nan"), (None, 0.81, 0.725))
    assert "in line" not in out and "chance" in out


def test_scenario_sentence_at_chance_is_not_in_line():
    from m4i_utils.reporting import tables

    grid = pd.DataFrame(
        {
            "setting": ["iid", "iid"],
            "scenario": ["unrestricted", "unrestricted"],
            "accuracy": [0.50, 0.52],
            "auc": [0.50, 0.51],
            "tpr_at_1pct_fpr": [0.01, 0.01],
            "tpr_at_0_1pct_fpr": [0.001, 0.001],
            "accuracy_ci_low": [0.46, 0.48],
            "accuracy_ci_high": [0.54, 0.56],
        }
    )
    (line,) = tables.scenario_sentences(tables.scenario_summary(grid, "mb"), "mb")
    assert "at chance" in line and "in line with the paper" not in line, line


# ------------------------------------------------------------------------------------------- E: names


def test_every_dataset_has_a_distinct_letter():
    letters = datasets.DATASET_LETTERS
    assert set(letters) == set(config.SYNTHETIC_DATASETS) | set(config.REAL_DATASETS)
    assert len(set(letters.values())) == len(letters), letters


def test_default_profile_model_names_are_unchanged():
    from m4i_utils.experiments.attack_grid import ModelSpec

    cfg = config.resolve_profile("default")
    names = sorted(ModelSpec(d, f, "target").name for d in cfg.datasets for f in cfg.families)
    assert names == ["CM", "CR", "FM", "FR", "IM", "IR"]
    real = {
        ModelSpec(d, "resnet", "target").name for d in (*config.SYNTHETIC_DATASETS, *config.REAL_DATASETS)
    }
    assert len(real) == 6


def test_datasets_sharing_a_letter_are_rejected(monkeypatch):
    monkeypatch.setitem(datasets.DATASET_LETTERS, "mscoco", "C")
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"datasets": "synth_coco,mscoco"})
    msg = str(exc.value)
    assert "datasets" in msg and "synth_coco, mscoco" in msg and "'C'" in msg, msg


def test_repeated_dataset_is_rejected():
    with pytest.raises(ValueError) as exc:
        config.resolve_profile("smoke", {"datasets": "synth_coco,synth_coco"})
    msg = str(exc.value)
    assert "datasets" in msg and "synth_coco" in msg and "more than once" in msg, msg
