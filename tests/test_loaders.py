"""Tests of the real-dataset loaders on tiny fixtures (and on the Flickr8k subset when it is present)."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from m4i_utils.data.loaders import (
    flickr8k_official_split,
    load_flickr8k,
    load_iapr_tc12,
    load_mscoco,
    load_real_corpus,
    resolve_dataset_root,
)
from m4i_utils.data.records import DataError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FLICKR_IDS = ["101_a.jpg", "102_b.jpg", "103_c.jpg"]


@pytest.fixture
def flickr(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "flickr8k", tmp_path / "flickr8k"))


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "mscoco", tmp_path / "mscoco"))


@pytest.fixture
def iapr(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "iapr_tc12", tmp_path / "iapr_tc12"))


def _edit_line(path: Path, lineno: int, new: str | None) -> None:
    """Replace (or, with None, delete) 1-based line ``lineno`` of a text file."""
    lines = path.read_text().splitlines()
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ Flickr8k


def test_flickr8k_token_skip_warns_and_loads() -> None:
    with pytest.warns(UserWarning, match=r"skipped 1 images \(5 caption lines\)"):
        corpus = load_flickr8k(FIXTURES / "flickr8k", caption_format="token", missing_images="skip")
    assert corpus.name == "flickr8k"
    assert corpus.ids == FLICKR_IDS
    assert all(len(r.captions) == 5 for r in corpus.records)
    assert corpus[0].captions[0] == "A child climbs stairs ."
    assert corpus[2].captions[0] == "A man , a woman and a boat ."
    assert corpus[0].image == FIXTURES / "flickr8k" / "Flicker8k_Dataset" / "101_a.jpg"
    img = corpus[1].load_image()
    assert img.size == (8, 8) and img.mode == "RGB"


def test_flickr8k_token_missing_image_error_names_line() -> None:
    with pytest.raises(DataError, match=r"Flickr8k\.token\.txt line 11: image '999_missing\.jpg' not found"):
        load_flickr8k(FIXTURES / "flickr8k")  # auto -> token, missing_images="error"


def test_flickr8k_kaggle_matches_token() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kaggle = load_flickr8k(FIXTURES / "flickr8k", caption_format="kaggle")
    with pytest.warns(UserWarning):
        token = load_flickr8k(FIXTURES / "flickr8k", caption_format="token", missing_images="skip")
    assert kaggle.ids == FLICKR_IDS
    assert [r.captions for r in kaggle.records] == [r.captions for r in token.records]
    # quoted CSV caption with a comma, and an unquoted one split on the first comma only
    assert "A man , a woman and a boat ." in kaggle[2].captions
    assert "People by a lake ,  smiling" in kaggle[2].captions


def test_flickr8k_auto_falls_back_to_kaggle(flickr: Path) -> None:
    shutil.rmtree(flickr / "Flickr8k_text")
    assert load_flickr8k(flickr).ids == FLICKR_IDS


def test_flickr8k_token_at_root_and_images_folder(flickr: Path) -> None:
    (flickr / "Flickr8k_text" / "Flickr8k.token.txt").rename(flickr / "Flickr8k.token.txt")
    (flickr / "Flicker8k_Dataset").rename(flickr / "images")
    with pytest.warns(UserWarning, match="skipped 1 images"):
        corpus = load_flickr8k(flickr, missing_images="skip")
    assert corpus.ids == FLICKR_IDS
    assert corpus[0].image == flickr / "images" / "101_a.jpg"


def test_flickr8k_no_caption_file(flickr: Path) -> None:
    shutil.rmtree(flickr / "Flickr8k_text")
    (flickr / "captions.txt").unlink()
    with pytest.raises(DataError, match="Flickr8k.token.txt") as err:
        load_flickr8k(flickr)
    msg = str(err.value)
    assert "captions.txt" in msg and "Illinois" in msg and "adityajn105/flickr8k" in msg
    with pytest.raises(DataError, match="captions.txt"):
        load_flickr8k(flickr, caption_format="kaggle")


def test_flickr8k_no_image_folder(flickr: Path) -> None:
    shutil.rmtree(flickr / "Flicker8k_Dataset")
    with pytest.raises(DataError, match="no Flickr8k image folder"):
        load_flickr8k(flickr, caption_format="kaggle")


def test_flickr8k_bad_arguments() -> None:
    with pytest.raises(DataError, match="caption_format"):
        load_flickr8k(FIXTURES / "flickr8k", caption_format="csv")
    with pytest.raises(DataError, match="missing_images"):
        load_flickr8k(FIXTURES / "flickr8k", missing_images="ignore")


@pytest.mark.parametrize(
    ("new_line", "expected"),
    [
        ("101_a.jpg#2 no tab here", "line 8: malformed"),
        ("101_a.jpg\tno caption index", "line 8: malformed"),
        ("101_a.jpg#x\tbad caption index", "line 8: malformed"),
        ("101_a.jpg#2\t   ", "line 8: empty caption"),
        (
            "101_a.jpg#0\ta repeated caption index",
            r"line 8: duplicate caption 101_a\.jpg#0 \(first on line 6\)",
        ),
    ],
)
def test_flickr8k_token_errors(flickr: Path, new_line: str, expected: str) -> None:
    path = flickr / "Flickr8k_text" / "Flickr8k.token.txt"
    _edit_line(path, 8, new_line)
    with pytest.raises(DataError, match=rf"Flickr8k\.token\.txt {expected}"):
        load_flickr8k(flickr, caption_format="token", missing_images="skip")


@pytest.mark.parametrize(
    ("lineno", "new_line", "expected"),
    [
        (4, "101_a.jpg with no comma", "line 4: malformed"),
        (4, "101_a.jpg,  ", "line 4: empty caption"),
        (1, "file,text", "line 1: header 'image,caption' missing"),
    ],
)
def test_flickr8k_kaggle_errors(flickr: Path, lineno: int, new_line: str, expected: str) -> None:
    _edit_line(flickr / "captions.txt", lineno, new_line)
    with pytest.raises(DataError, match=rf"captions\.txt {expected}"):
        load_flickr8k(flickr, caption_format="kaggle")


def test_flickr8k_kaggle_missing_image_error_and_skip(flickr: Path) -> None:
    (flickr / "Flicker8k_Dataset" / "102_b.jpg").unlink()
    with pytest.raises(DataError, match=r"captions\.txt line 2: image '102_b\.jpg' not found"):
        load_flickr8k(flickr, caption_format="kaggle")
    with pytest.warns(UserWarning, match=r"skipped 1 images \(5 caption lines\)"):
        corpus = load_flickr8k(flickr, caption_format="kaggle", missing_images="skip")
    assert corpus.ids == ["101_a.jpg", "103_c.jpg"]


def test_flickr8k_verify_images_corrupt(flickr: Path) -> None:
    (flickr / "Flicker8k_Dataset" / "103_c.jpg").write_bytes(b"this is not a jpeg at all")
    corpus = load_flickr8k(flickr, caption_format="kaggle")  # not verified: loads
    with pytest.raises(DataError, match="103_c.jpg"):
        corpus[2].load_image()
    with pytest.raises(DataError, match=r"103_c\.jpg fails to decode"):
        load_flickr8k(flickr, caption_format="kaggle", verify_images=True)


def test_flickr8k_official_split() -> None:
    assert flickr8k_official_split(FIXTURES / "flickr8k", "train") == {"101_a.jpg", "102_b.jpg"}
    assert flickr8k_official_split(FIXTURES / "flickr8k", "dev") == {"103_c.jpg"}
    with pytest.raises(DataError, match="split must be"):
        flickr8k_official_split(FIXTURES / "flickr8k", "val")
    with pytest.raises(DataError, match="Flickr_8k.testImages.txt"):
        flickr8k_official_split(FIXTURES / "mscoco", "test")


# ------------------------------------------------------------------------------------------ MSCOCO


def _coco_json(root: Path) -> tuple[Path, dict]:
    path = root / "annotations" / "captions_val2017.json"
    return path, json.loads(path.read_text())


def test_mscoco_fixture() -> None:
    corpus = load_mscoco(FIXTURES / "mscoco", split="val2017", verify_images=True)
    assert corpus.name == "mscoco"
    assert corpus.ids == ["000000000139.jpg", "000000000285.jpg"]
    assert [len(r.captions) for r in corpus.records] == [5, 6]
    assert corpus[0].captions[1] == "A woman stands in a kitchen."  # stripped
    assert corpus[0].captions[4] == "People in a house."
    assert corpus[1].captions[0] == "A big brown bear."
    assert corpus[1].load_image().size == (8, 8)


def test_mscoco_missing_annotations(coco: Path) -> None:
    with pytest.raises(DataError, match="captions_train2017.json") as err:
        load_mscoco(coco)
    assert "cocodataset.org" in str(err.value)


def test_mscoco_malformed_json(coco: Path) -> None:
    path, _ = _coco_json(coco)
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"captions_val2017\.json: malformed JSON at line 2 column"):
        load_mscoco(coco, split="val2017")


def test_mscoco_unknown_image_id(coco: Path) -> None:
    path, data = _coco_json(coco)
    data["annotations"][3]["image_id"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[3\] \(id 1003\): unknown image_id 7"):
        load_mscoco(coco, split="val2017")


def test_mscoco_empty_caption(coco: Path) -> None:
    path, data = _coco_json(coco)
    data["annotations"][0]["caption"] = "  "
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"captions_val2017\.json annotations\[0\].*empty caption"):
        load_mscoco(coco, split="val2017")


def test_mscoco_duplicate_image_id(coco: Path) -> None:
    path, data = _coco_json(coco)
    data["images"].append({"id": 139, "file_name": "000000000999.jpg"})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"images\[2\]: duplicate image id 139"):
        load_mscoco(coco, split="val2017")


def test_mscoco_missing_image_error_and_skip(coco: Path) -> None:
    (coco / "val2017" / "000000000285.jpg").unlink()
    with pytest.raises(DataError, match=r"annotations\[1\] \(id 1001\): image '000000000285\.jpg' not found"):
        load_mscoco(coco, split="val2017")
    with pytest.warns(UserWarning, match=r"skipped 1 images \(6 annotations\)"):
        corpus = load_mscoco(coco, split="val2017", missing_images="skip")
    assert corpus.ids == ["000000000139.jpg"]


def test_mscoco_image_without_captions_warns(coco: Path) -> None:
    path, data = _coco_json(coco)
    data["images"].append({"id": 5, "file_name": "000000000005.jpg"})
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"dropped 1 images without captions, e.g. '000000000005\.jpg'"):
        corpus = load_mscoco(coco, split="val2017")
    assert len(corpus) == 2


def test_mscoco_verify_images_corrupt(coco: Path) -> None:
    (coco / "val2017" / "000000000139.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError, match=r"000000000139\.jpg fails to decode"):
        load_mscoco(coco, split="val2017", verify_images=True)


# ------------------------------------------------------------------------------------------ IAPR TC-12


def test_iapr_fixture() -> None:
    corpus = load_iapr_tc12(FIXTURES / "iapr_tc12", verify_images=True)
    assert corpus.name == "iapr_tc12"
    assert corpus.ids == ["images/00/10.jpg", "images/00/11.jpg"]
    assert corpus[0].captions == (
        "a dark-skinned boy wearing a light-blue shirt and dark shorts",
        "a white wall and a window behind him",
    )
    # 11.eng is ISO-8859-1 encoded; the description spans two lines and holds an empty clause
    assert corpus[1].captions == (
        "a caf\u00e9 with red chairs on a square",
        "people walking in front of it",
        "grey sky",
    )
    assert corpus[1].image == FIXTURES / "iapr_tc12" / "images" / "00" / "11.jpg"
    assert corpus[1].load_image().size == (8, 8)


def test_iapr_missing_annotation_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="annotations_complete_eng/") as err:
        load_iapr_tc12(tmp_path)
    assert "imageclef.org/photodata" in str(err.value)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("<DESCRIPTION>", "<DESC>", r"10\.eng: no <DESCRIPTION>"),
        ("<IMAGE>images/00/10.jpg</IMAGE>", "", r"10\.eng: no <IMAGE>"),
        (
            "a dark-skinned boy wearing a light-blue shirt and dark shorts; "
            "a white wall and a window behind him;",
            " ; ",
            r"10\.eng: empty <DESCRIPTION>",
        ),
        (
            "images/00/10.jpg</IMAGE>",
            "images/00/11.jpg</IMAGE>",
            r"11\.eng: duplicate image 'images/00/11\.jpg'",
        ),
    ],
)
def test_iapr_errors(iapr: Path, old: str, new: str, expected: str) -> None:
    path = iapr / "annotations_complete_eng" / "00" / "10.eng"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(DataError, match=expected):
        load_iapr_tc12(iapr)


def test_iapr_missing_image_error_and_skip(iapr: Path) -> None:
    (iapr / "images" / "00" / "10.jpg").unlink()
    with pytest.raises(DataError, match=r"10\.eng: image 'images/00/10\.jpg' not found"):
        load_iapr_tc12(iapr)
    with pytest.warns(UserWarning, match=r"skipped 1 images \(1 annotation files\)"):
        corpus = load_iapr_tc12(iapr, missing_images="skip")
    assert corpus.ids == ["images/00/11.jpg"]


def test_iapr_verify_images_corrupt(iapr: Path) -> None:
    (iapr / "images" / "00" / "11.jpg").write_bytes(os.urandom(64))
    with pytest.raises(DataError, match=r"11\.jpg fails to decode"):
        load_iapr_tc12(iapr, verify_images=True)


# ------------------------------------------------------------------------------------------ dispatch


def test_resolve_dataset_root_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match="no data root configured: set the environment variable M4I_DATA_ROOT"
    ):
        resolve_dataset_root(None, "flickr8k")
    with pytest.raises(DataError, match="does not exist"):
        resolve_dataset_root(tmp_path / "nowhere", "mscoco")
    with pytest.raises(DataError, match="tried") as err:
        resolve_dataset_root(tmp_path, "iapr_tc12")
    assert str(tmp_path / "iaprtc12") in str(err.value) and "imageclef" in str(err.value)
    with pytest.raises(DataError, match="valid names"):
        resolve_dataset_root(tmp_path, "cifar10")


def test_resolve_dataset_root_order(tmp_path: Path) -> None:
    (tmp_path / "flickr8k_subset1000").mkdir()
    assert resolve_dataset_root(str(tmp_path), "flickr8k") == tmp_path / "flickr8k_subset1000"
    (tmp_path / "flickr8k").mkdir()
    assert resolve_dataset_root(tmp_path, "flickr8k") == tmp_path / "flickr8k"


def test_load_real_corpus_on_fixtures() -> None:
    with pytest.warns(UserWarning, match="skipped 1 images"):  # token file -> missing_images="skip"
        assert load_real_corpus("flickr8k", FIXTURES).ids == FLICKR_IDS
    assert len(load_real_corpus("mscoco", FIXTURES, split="val2017")) == 2
    assert len(load_real_corpus("iapr_tc12", FIXTURES)) == 2
    with pytest.raises(DataError, match="valid names: flickr8k, mscoco, iapr_tc12"):
        load_real_corpus("flickr30k", FIXTURES)


def test_load_real_corpus_kaggle_is_strict(tmp_path: Path) -> None:
    root = Path(shutil.copytree(FIXTURES / "flickr8k", tmp_path / "Flickr8k"))
    shutil.rmtree(root / "Flickr8k_text")
    (root / "Flicker8k_Dataset" / "101_a.jpg").unlink()
    with pytest.raises(DataError, match=r"captions\.txt line 7: image '101_a\.jpg' not found"):
        load_real_corpus("flickr8k", tmp_path)


# ------------------------------------------------------------------------------------------ real data


def _real_data_root() -> Path:
    env = os.environ.get("M4I_DATA_ROOT")
    if env and (Path(env) / "flickr8k_subset1000").is_dir():
        return Path(env)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if (shared / "flickr8k_subset1000").is_dir():
        return shared
    pytest.skip("real Flickr8k subset (flickr8k_subset1000) not available")


@pytest.fixture(scope="module")
def real_flickr() -> tuple[Path, object, object]:
    root = _real_data_root() / "flickr8k_subset1000"
    # 7092: the token file's typo '2258277193_586949ec62.jpg.1#0' is read as that image's caption #0
    with pytest.warns(UserWarning, match=r"skipped 7092 images \(35460 caption lines\)"):
        token = load_flickr8k(root, caption_format="token", missing_images="skip")
    kaggle = load_flickr8k(root, caption_format="kaggle", missing_images="error")
    return root, token, kaggle


def test_real_flickr8k_subset_both_formats(real_flickr: tuple) -> None:
    _, token, kaggle = real_flickr
    assert len(token) == len(kaggle) == 1000
    assert all(len(r.captions) == 5 for r in token.records)
    assert token.ids == kaggle.ids == sorted(token.ids)
    assert [r.captions for r in token.records] == [r.captions for r in kaggle.records]
    assert token[0].load_image().mode == "RGB"


def test_real_flickr8k_subset_splits(real_flickr: tuple) -> None:
    root, token, _ = real_flickr
    ids = set(token.ids)
    sizes = [len(flickr8k_official_split(root, s) & ids) for s in ("train", "dev", "test")]
    assert sizes == [753, 113, 125]


def test_real_load_real_corpus_flickr8k() -> None:
    data_root = _real_data_root()
    with pytest.warns(UserWarning, match="skipped"):
        corpus = load_real_corpus("flickr8k", data_root)
    assert len(corpus) == 1000 and corpus.name == "flickr8k"
