"""Medical report generation (notebook 07): R2Gen annotations, tokenisation, parser, world, model shapes."""

import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from m4i_utils.data import medical
from m4i_utils.data.records import DataError
from m4i_utils.experiments import report_generation
from m4i_utils.models import r2gen

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "r2gen" / "annotation.json"


def _shared_data_root() -> Path:
    env = os.environ.get("M4I_DATA_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def test_annotation_fixture_with_nonstandard_key_warns():
    with pytest.warns(UserWarning, match="non-standard split key"):
        studies = medical.load_r2gen_annotation(FIXTURE)
    assert [s.id for s in studies] == ["CXR1_IM-0001", "CXR2_IM-0002", "CXR4_IM-0004", "CXR3_IM-0003"]
    assert [s.split for s in studies] == ["train", "train", "val", "test"]
    assert len(studies[0].image_path) == 2


@pytest.mark.parametrize(
    "data, match",
    [
        ([1, 2], "JSON object"),
        ({"train": {"id": "x"}}, "must be a list"),
        ({"train": [{"report": "a", "image_path": ["a.png"]}]}, "entry 0 of split 'train'.*'id'"),
        ({"train": [{"id": "a", "image_path": ["a.png"]}]}, "id 'a'.*'report'"),
        ({"train": [{"id": "a", "report": "r", "image_path": []}]}, "image_path"),
        ({"odd": [{"id": "a", "report": "r", "image_path": ["a.png"]}]}, "not one of"),
        ({"train": [{"id": "a", "report": "r", "image_path": ["a.png"]}] * 2}, "duplicate id"),
    ],
)
def test_annotation_malformed(tmp_path, data, match):
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(DataError, match=match) as exc:
            medical.load_r2gen_annotation(path)
    assert str(path) in str(exc.value)


def test_annotation_missing_and_bad_json(tmp_path):
    with pytest.raises(DataError, match="not found"):
        medical.load_r2gen_annotation(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        medical.load_r2gen_annotation(bad)


def test_clean_report_and_tokenizer():
    assert (
        medical.clean_report("1. No effusion.  2. Heart size normal.") == "no effusion . heart size normal ."
    )
    assert medical.clean_report("Lungs are clear, XXXX (stable)..") == "lungs are clear xxxx stable ."
    tok = medical.ReportTokenizer.build(["No effusion.", "No effusion.", "No effusion. Rare."], threshold=3)
    assert tok.itos[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert set(tok.itos[4:]) == {"no", "effusion", "."}
    ids = tok.encode("No effusion. Rare words here.", max_len=4)
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 6 and 3 in ids
    assert tok.decode(tok.encode("no effusion.")) == "no effusion ."


@pytest.mark.parametrize(
    "report, expected",
    [
        ("The heart is normal in size. No pleural effusion or pneumothorax.", {}),
        ("Cardiomegaly. Small left pleural effusion.", {"cardiomegaly": True, "effusion_left": True}),
        (
            "The heart is enlarged. Bilateral pleural effusions.",
            {"cardiomegaly": True, "effusion_right": True, "effusion_left": True},
        ),
        ("Lungs are free of focal airspace disease. No pneumothorax.", {}),
        (
            "Right upper lobe opacity. Left lower lobe calcified granuloma.",
            {"opacity": "right upper", "granuloma": "left lower"},
        ),
        ("Left-sided pacemaker in place. Negative for pneumothorax.", {"device": "pacemaker"}),
        ("Small right apical pneumothorax.", {"pneumothorax": "right"}),
    ],
)
def test_parse_findings(report, expected):
    got = medical.parse_findings(report).as_dict()
    default = medical.Findings().as_dict()
    assert {k: v for k, v in got.items() if v != default[k]} == expected


def test_synthetic_world_is_deterministic(tmp_path):
    a = medical.synthetic_world(tmp_path / "a", 40, 32, seed=3)
    b = medical.synthetic_world(tmp_path / "b", 40, 32, seed=3)
    c = medical.synthetic_world(tmp_path / "c", 40, 32, seed=4)
    assert a.reports == b.reports and np.array_equal(a.images, b.images)
    assert a.reports != c.reports
    assert a.images.shape == (40, 32, 32) and a.images.dtype == np.uint8
    assert len(set(a.patients)) < len(a), "some patients must have several studies"
    assert len({r.split(". ")[1] for r in a.reports}) > 3  # several phrasings


def test_patient_splits_disjoint(tmp_path):
    corpus = medical.synthetic_world(tmp_path, 120, 16, seed=0)
    sizes = {"target_members": 10, "target_nonmembers": 10, "target_test": 5}
    roles = medical.patient_splits(corpus, sizes, 5, seed=0)
    seen = np.concatenate(list(roles.values()))
    assert len(seen) == len(set(seen.tolist())) == len(corpus)
    pats = {r: {corpus.patients[i] for i in idx} for r, idx in roles.items()}
    assert not pats["target_members"] & pats["target_nonmembers"]


def test_model_forward_and_decoding_shapes():
    torch.manual_seed(0)
    model = r2gen.R2GenCMN(
        20, image_size=32, d_model=32, layers=1, heads=2, d_ff=32, memory_size=16, topk=4, max_len=7
    )
    imgs = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    tokens = torch.randint(3, 20, (3, 6))
    tokens[:, 0] = 1
    assert model(imgs, tokens).shape == (3, 5, 20)
    assert model.encode(imgs).shape == (3, 16, 32)
    g = model.greedy(imgs)
    b = model.beam(imgs, width=3)
    assert g.shape[0] == b.shape[0] == 3 and g.shape[1] <= 8 and b.shape[1] <= 8
    assert torch.equal(b, model.beam_reference(imgs, width=3)), (
        "cached beam search differs from full recompute"
    )
    assert torch.equal(g, model.beam_reference(imgs, width=1))
    mem = r2gen.CrossModalMemory(32, 16, 2, 4)
    assert mem(torch.randn(2, 5, 32)).shape == (2, 5, 32)


def test_patient_level_aggregation():
    s, y, n = report_generation.patient_level(
        np.array([0.1, 0.3, 0.9, 0.5]), np.array([0, 0, 1, 1]), ["a", "a", "b", "c"]
    )
    assert np.allclose(s, [0.2, 0.9, 0.5]) and y.tolist() == [0, 1, 1] and n.tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match="split by patient"):
        report_generation.patient_level(np.zeros(2), np.array([0, 1]), ["a", "a"])


def test_real_iu_annotation():
    path = medical.find_iu_annotation(_shared_data_root())
    if path is None:
        pytest.skip("real IU X-Ray reports not under the data root (../shared/data or M4I_DATA_ROOT)")
    with pytest.warns(UserWarning, match="non-standard split key"):
        studies = medical.load_r2gen_annotation(path)
    counts = {s: sum(x.split == s for x in studies) for s in medical.STANDARD_SPLITS}
    assert counts == {"train": 2069, "val": 296, "test": 590}
    assert all(len(s.image_path) == 2 for s in studies)
    found = [medical.parse_findings(s.report) for s in studies[:300]]
    rate = np.mean([f.cardiomegaly for f in found])
    assert 0.01 < rate < 0.4, rate


def test_study_blind_baseline_sees_shift_and_keeps_a_patient_in_one_fold():
    """The model-free baseline of notebooks 07 and 10: high on sets that differ in the data alone (members'
    radiographs brighter), and its folds keep a patient's studies together (here a patient's two studies share
    one radiograph: folds that split them let the classifier recognise the patient, as the ungrouped baseline
    does)."""
    from sklearn.metrics import roc_auc_score

    from m4i_utils.attacks.baselines import blind_baseline

    rng = np.random.default_rng(0)
    n = 240
    member = np.arange(n) < n // 2
    patients = [f"p{i // 2}" for i in range(n)]  # two studies per patient, both on one side
    images = np.repeat(rng.integers(0, 256, (n // 2, 12, 12)), 2, axis=0).astype(np.uint8)
    reports = ["no acute findings ."] * n
    ids = [f"s{i}" for i in range(n)]
    cfg = SimpleNamespace(seed=0)
    res = report_generation.study_blind_baseline(cfg, images, reports, ids, patients, member, {})
    assert res.ids.tolist() == ids and res.labels.tolist() == [1] * 120 + [0] * 120
    assert res.meta["attack"] == "blind_baseline"
    grouped = roc_auc_score(res.labels, res.scores)
    assert grouped < 0.7, grouped  # 0.615 here (0.50-0.64 over six draws of the images)
    res_ids = res.ids  # the ungrouped classifier, for contrast: it recognises the patients
    corpus_res = blind_baseline(*_study_corpora(images, reports, ids, member), seed=0, meta={})
    ungrouped = roc_auc_score(corpus_res.labels, corpus_res.scores)
    assert ungrouped > 0.8 and ungrouped > grouped + 0.15, (ungrouped, grouped)  # 0.881 here
    shifted = images.copy()
    shifted[member] = np.clip(shifted[member].astype(int) + 60, 0, 255).astype(np.uint8)
    res = report_generation.study_blind_baseline(cfg, shifted, reports, ids, patients, member, {})
    assert roc_auc_score(res.labels, res.scores) > 0.9 and res.ids.tolist() == res_ids.tolist()
    with pytest.raises(
        ValueError, match="one image, report, id, patient and member flag per study, got 240, 239"
    ):
        report_generation.study_blind_baseline(cfg, images, reports[:-1], ids, patients, member, {})


def _study_corpora(images, reports, ids, member):
    from m4i_utils.data.records import Corpus, Record

    rgb = np.repeat(images[..., None], 3, axis=-1)
    recs = [Record(id=i, image=x, captions=(r,)) for i, x, r in zip(ids, rgb, reports, strict=True)]
    return (Corpus("m", tuple(r for r, m in zip(recs, member, strict=True) if m)),
            Corpus("n", tuple(r for r, m in zip(recs, member, strict=True) if not m)))  # fmt: skip
