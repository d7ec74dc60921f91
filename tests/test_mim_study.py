"""The masked-image-modeling study (notebook 12): disjoint seeded roles, the configuration's checks, real
sources' errors, and the whole smoke pipeline (attack, baselines, ablations, calibrated attack, probe)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m4i_utils.attacks.baselines import data_features
from m4i_utils.core import config
from m4i_utils.data.mim_images import check_disjoint, load_mim_images, square_resize
from m4i_utils.data.records import Corpus, DataError, Record
from m4i_utils.experiments import mim_study

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def smoke(tmp_path):
    return config.resolve_profile("smoke", {"cache_dir": str(tmp_path), "executor": "inprocess"})


def test_roles_are_disjoint_seeded_and_sized(smoke):
    data = load_mim_images(smoke)
    check_disjoint(data)
    assert len(data.population) == smoke.mim_population and len(data.shadow) == smoke.mim_shadow
    assert len(data.probe) == len(data.probe_labels) == smoke.mim_probe
    assert data.population.shape[1:] == (smoke.mim_image_size, smoke.mim_image_size, 3)
    again = load_mim_images(smoke)
    assert again.population_ids == data.population_ids
    other = load_mim_images(dataclasses.replace(smoke, seed=1))
    assert other.population_ids != data.population_ids
    assert set(data.probe_labels) <= set(range(8)) and len(set(data.probe_labels)) > 1


def test_every_model_trains_on_a_seeded_random_half(smoke):
    masks = mim_study.population_masks(smoke)
    assert masks.shape == (smoke.mim_calib_models, smoke.mim_population)
    assert (masks.sum(1) == smoke.mim_population // 2).all()
    assert len({m.tobytes() for m in masks}) == len(masks)  # the references differ from the target
    assert mim_study.shadow_mask(smoke).sum() == smoke.mim_shadow // 2
    specs = mim_study.model_specs(smoke)
    assert [s.label for s in specs] == ["target", "shadow", "reference1", "reference2", "target_2ep",
                                        "target_32x1"]  # fmt: skip
    data = load_mim_images(smoke)
    train, ids = mim_study.training_images(smoke, data, specs[0])
    assert set(ids) == {data.population_ids[i] for i in np.flatnonzero(masks[0])}
    _, shadow_ids = mim_study.training_images(smoke, data, specs[1])
    assert set(shadow_ids) <= set(data.shadow_ids)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mim_patch_size": 5}, "mim_patch_size=5: must divide mim_image_size"),
        ({"mim_size_sweep": "64-2"}, "mim_size_sweep entry '64-2': write the encoder size as WIDTHxLAYERS"),
        ({"mim_calib_models": 1}, "mim_calib_models=1: must be 0"),
        ({"mim_ratio_sweep": "0.5,1.2"}, "mim_ratio_sweep=.*fractions strictly between 0 and 1"),
        ({"mim_attack_ratio": 1.0}, "mim_attack_ratio=1.0: must be a fraction strictly between 0 and 1"),
        ({"mim_population": 2}, "mim_population=2: must be >= 4"),
        ({"mim_probe": 5000}, "n_pairs=1200: the MIM study draws 5120 images"),
        (
            {"mim_source": "imagenet"},
            "unknown mim_source 'imagenet'; choose one of: synthetic, flickr8k, lfw",
        ),
    ],
)
def test_bad_settings_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        config.resolve_profile("smoke", override)


def test_real_sources_need_their_data(smoke, tmp_path):
    with pytest.raises(DataError, match="M4I_DATA_ROOT"):
        load_mim_images(dataclasses.replace(smoke, mim_source="flickr8k", data_root=None))
    with pytest.raises(DataError, match="lfw3d_frontalized not found"):
        load_mim_images(dataclasses.replace(smoke, mim_source="lfw", data_root=str(tmp_path)))


def test_square_resize_centre_crops():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 10:30] = 255  # the centre square is white, the sides black
    out = square_resize(Image.fromarray(img), 8)
    assert out.shape == (8, 8, 3) and out.min() > 200


def test_blind_features_without_captions():
    recs = tuple(Record(str(i), np.full((8, 8, 3), i, np.uint8), ()) for i in range(4))
    x = data_features(Corpus("c", recs))
    assert x.shape == (4, 4 * 4 * 3 * 0 + 8 * 8 * 3 + 6)


@pytest.mark.skipif(not (SHARED / "flickr8k_subset1000").is_dir(), reason="real Flickr8k subset not present")
def test_flickr8k_too_few_images_is_a_clear_error(smoke):
    cfg = dataclasses.replace(smoke, mim_source="flickr8k", data_root=str(SHARED), mim_population=900)
    with pytest.raises(DataError, match="holds 1000 images but the MIM study needs"):
        load_mim_images(cfg)
    data = load_mim_images(dataclasses.replace(cfg, mim_population=60))
    check_disjoint(data)
    assert data.population.shape == (60, smoke.mim_image_size, smoke.mim_image_size, 3)
    assert set(data.probe_labels) == {0, 1}


def test_smoke_pipeline(smoke):
    data = load_mim_images(smoke)
    models = mim_study.train_models(smoke)
    assert set(models) == {s.label for s in mim_study.model_specs(smoke)}
    target = models["target"]
    assert target.n_train == smoke.mim_population // 2
    assert target.signals["population/0.75/masked"].shape == (smoke.mim_attack_masks, smoke.mim_population)
    assert target.signals["population/0.5/masked"].shape[1] == smoke.mim_population
    # nested masks: a larger ratio masks a superset, so the visible-patch errors differ
    assert not np.allclose(
        target.signals["population/0.5/visible"], target.signals["population/0.75/visible"]
    )
    results, rows = mim_study.run_attacks(smoke, data, models)
    assert [r["attack"] for r in rows] == ["reconstruction_error", "visible_patch_error",
                                           "encoder_view_consistency", "blind_baseline"]  # fmt: skip
    assert sorted(results[0].ids) == sorted(data.population_ids)
    assert results[0].labels.sum() == smoke.mim_population // 2
    # the paper's attack: lower error = member, and the decision rule comes from the shadow
    err = models["target"].signals["population/0.75/masked"].mean(0)
    assert np.allclose(results[0].scores, -err)
    ab_results, ab_rows = mim_study.run_ablations(smoke, data, models)
    ablations = [(r["ablation"], str(r["value"])) for r in ab_rows]
    assert ablations == [("mask_ratio", "0.5"), ("mask_ratio", "0.75"), ("masks", "1"), ("masks", "2"),
                         ("epochs", "2"), ("epochs", "3"), ("size", "32x1"), ("size", "64x2")]  # fmt: skip
    assert all(r.threshold is None for r in ab_results[4:])
    calib = mim_study.run_calibrated(smoke, data, models)
    assert len(calib.rows) == 7 and calib.errors.shape == (smoke.mim_calib_models, smoke.mim_population)
    probe = mim_study.linear_probe(smoke, data, target)
    assert probe["n_fit"] + probe["n_scored"] == smoke.mim_probe
    assert 0 <= probe["pretrained_accuracy"] <= 1
