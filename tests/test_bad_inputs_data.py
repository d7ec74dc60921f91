"""Bad input to the data layer: each case must fail early with a DataError (or be rebuilt, for the cache)
that names the file and the line / annotation / key and says what to do; nothing silently merged or dropped.

Covers: image bytes in the corpus fingerprint (cache keys), caption-count rules of the Flickr8k and MSCOCO
loaders, required splits of R2Gen annotations, the MSCOCO split parameter, stale ``.tmp-*`` cache folders
and corrupt wav files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile

from m4i_utils.core import cache, config
from m4i_utils.data import datasets, medical, records
from m4i_utils.data.loaders import COCO_SPLITS, load_flickr8k, load_mscoco
from m4i_utils.data.records import Corpus, DataError, Record
from m4i_utils.data.speech import load_libritts, load_ljspeech

FIXTURES = Path(__file__).resolve().parent / "fixtures"
R2GEN_FIXTURE = FIXTURES / "r2gen" / "annotation.json"


def _copy(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / (as_name or name)))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------ 1. image bytes in cache keys


@pytest.fixture
def kaggle_root(tmp_path: Path) -> Path:
    """A data root holding a Flickr8k copy with the Kaggle caption file only (every image present)."""
    root = tmp_path / "data"
    flickr = _copy("flickr8k", root)
    shutil.rmtree(flickr / "Flickr8k_text")
    return root


def _cfg(tmp_path: Path, data_root: Path) -> config.Config:
    return config.resolve_profile(
        "smoke", {"cache_dir": str(tmp_path / "cache"), "data_root": str(data_root)}
    )


def _features(cfg: config.Config, corpus: Corpus) -> cache.Artifact:
    """A stand-in for an image-derived artifact (trunk features): mean pixel of every image."""

    def build(out: Path) -> None:
        np.save(out / "mean.npy", np.array([np.asarray(r.load_image()).mean() for r in corpus.records]))

    params = {"dataset": corpus.name}
    return cache.cached(cfg.cache_dir, "features", params, build, [datasets.corpus_fingerprint(corpus)])


def test_swapped_image_bytes_rebuild_image_artifacts(tmp_path: Path, kaggle_root: Path) -> None:
    cfg = _cfg(tmp_path, kaggle_root)
    corpus = datasets.load_corpus("flickr8k", cfg)
    first = _features(cfg, corpus)
    assert (Path(cfg.cache_dir) / datasets.DIGEST_INDEX_DIR / "flickr8k.json").is_file()
    assert not _features(cfg, datasets.load_corpus("flickr8k", cfg)).rebuilt  # warm cache, same bytes
    images = kaggle_root / "flickr8k" / "Flicker8k_Dataset"
    a, b = (images / "101_a.jpg").read_bytes(), (images / "102_b.jpg").read_bytes()
    (images / "101_a.jpg").write_bytes(b)
    (images / "102_b.jpg").write_bytes(a)
    again = _features(cfg, datasets.load_corpus("flickr8k", cfg))
    assert again.rebuilt and again.key != first.key
    old, new = np.load(first.file("mean.npy")), np.load(again.file("mean.npy"))
    assert np.allclose(new[:2], old[1::-1])  # the features follow the swapped bytes


def test_images_swapped_by_rename_with_equal_size_and_mtime(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"AAAA" * 16)
    b.write_bytes(b"BBBB" * 16)
    for p in (a, b):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    corpus = Corpus("c", (Record("a.jpg", a, ("x",)), Record("b.jpg", b, ("y",))))
    before = datasets.corpus_fingerprint(corpus)
    a.rename(tmp_path / "tmp.jpg")
    b.rename(a)
    (tmp_path / "tmp.jpg").rename(b)  # same sizes, same mtimes: only the inode / ctime tell them apart
    assert datasets.corpus_fingerprint(corpus) != before
    assert corpus[0].content_digest() == records._hash_file(a)


def test_image_replaced_by_corrupt_file_is_not_served_from_cache(tmp_path: Path, kaggle_root: Path) -> None:
    cfg = _cfg(tmp_path, kaggle_root)
    _features(cfg, datasets.load_corpus("flickr8k", cfg))
    bad = kaggle_root / "flickr8k" / "Flicker8k_Dataset" / "103_c.jpg"
    bad.write_bytes(b"not a jpeg any more")
    with pytest.raises(DataError, match=r"image .*103_c\.jpg \(record '103_c\.jpg'\) fails to decode"):
        _features(cfg, datasets.load_corpus("flickr8k", cfg))


def test_missing_image_file_in_fingerprint_names_it(tmp_path: Path) -> None:
    corpus = Corpus("c", (Record("gone.jpg", tmp_path / "gone.jpg", ("x",)),))
    with pytest.raises(DataError, match=r"gone\.jpg \(record 'gone\.jpg'\) cannot be read"):
        datasets.corpus_fingerprint(corpus)


def test_synthetic_pixels_are_in_fingerprint() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    changed = img.copy()
    changed[0, 0, 0] = 1
    one = Corpus("synth_coco", (Record("synth_coco_000000", img, ("a cat",)),))
    two = Corpus("synth_coco", (Record("synth_coco_000000", changed, ("a cat",)),))
    bigger = Corpus("synth_coco", (Record("synth_coco_000000", np.zeros((8, 2, 3), np.uint8), ("a cat",)),))
    prints = {datasets.corpus_fingerprint(c) for c in (one, two, bigger)}
    assert len(prints) == 3


def test_digest_index_is_reused_only_for_unchanged_files(tmp_path: Path) -> None:
    f = tmp_path / "img.jpg"
    f.write_bytes(b"one")
    index = tmp_path / "cache" / "index.json"
    records.prime_digest_index([f], index)
    stored = json.loads(index.read_text())
    assert stored[str(f)][-1] == records._hash_file(f)
    f.write_bytes(b"two")
    records.prime_digest_index([f], index)
    assert json.loads(index.read_text())[str(f)][-1] == records._hash_file(f) != stored[str(f)][-1]
    index.write_text("{damaged")  # a damaged index only costs re-hashing
    records.prime_digest_index([f], index)
    with pytest.raises(DataError, match=r"absent\.jpg cannot be read to hash it"):
        records.prime_digest_index([tmp_path / "absent.jpg"], index)


# ------------------------------------------------------------------------ 2. caption counts


@pytest.fixture
def flickr(tmp_path: Path) -> Path:
    return _copy("flickr8k", tmp_path)


def test_flickr8k_kaggle_repeated_line_gives_a_6th_caption(flickr: Path) -> None:
    path = flickr / "captions.txt"
    lines = _lines(path)
    _write_lines(path, [*lines[:3], lines[2], *lines[3:]])  # line 4 repeats line 3
    with pytest.raises(DataError) as err:
        load_flickr8k(flickr, caption_format="kaggle")
    msg = str(err.value)
    assert "captions.txt line 4: repeated line (same as line 3) gives image '102_b.jpg' a 6th caption" in msg
    assert "(lines 2, 3, 4, 5, 6, 7)" in msg and "exactly 5 captions per image" in msg


def test_flickr8k_kaggle_extra_distinct_caption(flickr: Path) -> None:
    path = flickr / "captions.txt"
    _write_lines(path, [*_lines(path), "101_a.jpg,A sixth and different caption ."])
    with pytest.raises(DataError, match=r"captions\.txt line 17: a 6th caption for image '101_a\.jpg'"):
        load_flickr8k(flickr, caption_format="kaggle")


def test_flickr8k_kaggle_too_few_captions(flickr: Path) -> None:
    path = flickr / "captions.txt"
    lines = _lines(path)
    _write_lines(path, lines[:7] + lines[8:])  # 101_a.jpg loses one caption
    with pytest.raises(DataError, match=r"captions\.txt line 7: image '101_a\.jpg' has 4 captions"):
        load_flickr8k(flickr, caption_format="kaggle")


def test_flickr8k_kaggle_same_sentence_twice_within_five_warns(flickr: Path) -> None:
    path = flickr / "captions.txt"
    lines = _lines(path)
    lines[3] = lines[2]  # two annotators wrote the same sentence: kept (as in the release), with a warning
    _write_lines(path, lines)
    with pytest.warns(UserWarning, match=r"captions\.txt: 1 captions repeat .* line 4 repeats line 3"):
        corpus = load_flickr8k(flickr, caption_format="kaggle")
    assert all(len(r.captions) == 5 for r in corpus.records)


def test_flickr8k_token_index_outside_0_to_4(flickr: Path) -> None:
    path = flickr / "Flickr8k_text" / "Flickr8k.token.txt"
    _write_lines(path, [*_lines(path), "101_a.jpg#7\tA sixth caption ."])
    with pytest.raises(DataError) as err:
        load_flickr8k(flickr, caption_format="token", missing_images="skip")
    msg = str(err.value)
    assert "Flickr8k.token.txt line 21: caption index #7 of image '101_a.jpg' is outside #0-#4" in msg


def test_flickr8k_token_repeated_line(flickr: Path) -> None:
    path = flickr / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = _lines(path)
    _write_lines(path, [*lines, lines[0]])
    with pytest.raises(DataError, match=r"Flickr8k\.token\.txt line 21: repeated line \(same as line 1\)"):
        load_flickr8k(flickr, caption_format="token", missing_images="skip")


def test_flickr8k_token_missing_caption(flickr: Path) -> None:
    path = flickr / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = _lines(path)
    _write_lines(path, lines[:-1])  # 103_c.jpg#4 gone
    with pytest.raises(DataError, match=r"token\.txt line 16: image '103_c\.jpg' has 4 captions .*exactly 5"):
        load_flickr8k(flickr, caption_format="token", missing_images="skip")


def test_flickr8k_token_known_typo_is_read_with_a_warning(flickr: Path) -> None:
    path = flickr / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = _lines(path)
    lines[5] = lines[5].replace("101_a.jpg#0", "101_a.jpg.1#0")
    _write_lines(path, lines)
    with pytest.warns(UserWarning, match=r"line 6: image name '101_a\.jpg\.1' read as '101_a\.jpg'"):
        corpus = load_flickr8k(flickr, caption_format="token", missing_images="skip")
    assert corpus[0].captions[0] == "A child climbs stairs ."


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return _copy("mscoco", tmp_path)


def _edit_coco(root: Path, edit) -> None:
    path = root / "annotations" / "captions_val2017.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_mscoco_repeated_annotation_id(coco: Path) -> None:
    _edit_coco(coco, lambda d: d["annotations"].append(dict(d["annotations"][0])))
    with pytest.raises(DataError) as err:
        load_mscoco(coco, split="val2017")
    msg = str(err.value)
    assert "captions_val2017.json annotations[11] (id 1000): duplicate annotation id 1000" in msg
    assert "annotations[0]" in msg


def test_mscoco_more_than_7_captions(coco: Path) -> None:
    def edit(d: dict) -> None:
        d["annotations"] += [{"image_id": 285, "id": 2000 + i, "caption": f"bear {i}"} for i in range(2)]

    _edit_coco(coco, edit)  # image 285 had 6 captions
    with pytest.raises(
        DataError, match=r"annotations\[12\] \(id 2001\): caption 8 of image '000000000285\.jpg'"
    ):
        load_mscoco(coco, split="val2017")


def test_mscoco_fewer_than_5_captions(coco: Path) -> None:
    _edit_coco(coco, lambda d: d.update(annotations=[a for a in d["annotations"] if a["id"] != 1004]))
    with pytest.raises(DataError) as err:
        load_mscoco(coco, split="val2017")
    msg = str(err.value)
    assert "(id 1000): image '000000000139.jpg' has only 4 captions" in msg and "5 to 7" in msg


def test_mscoco_annotation_without_id(coco: Path) -> None:
    _edit_coco(coco, lambda d: d["annotations"][2].pop("id"))
    with pytest.raises(DataError, match=r"captions_val2017\.json: annotations\[2\] lacks 'image_id', 'id'"):
        load_mscoco(coco, split="val2017")


# ------------------------------------------------------------------------ 3. R2Gen annotation splits


def _entry(sid: str, split: str | None = None) -> dict:
    e = {"id": sid, "report": "The lungs are clear.", "image_path": [f"{sid}/0.png"]}
    return e | ({"split": split} if split else {})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"val": [_entry("a")], "test": [_entry("b")]}, "train"),
        ({"train": [], "val": [_entry("a")], "test": [_entry("b")]}, "train"),
        ({"train": [_entry("a")], "val": [_entry("b")]}, "test"),
        ({"train": [_entry("a")], "    ": [_entry("b", "val")]}, "test"),
        ({"train": [_entry("a")], "test": [_entry("b")]}, "val"),
    ],
)
def test_r2gen_annotation_without_a_required_split(tmp_path: Path, data: dict, key: str) -> None:
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(DataError, match=rf"no '{key}' split: key '{key}' is absent or empty") as err:
            medical.load_r2gen_annotation(path)
    assert str(path) in str(err.value)


def test_r2gen_public_iu_odd_test_key_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps({"train": [_entry("a")], "val": [_entry("b")], "    ": [_entry("c", "test")]}))
    with pytest.warns(UserWarning, match="non-standard split key"):
        studies = medical.load_r2gen_annotation(path)
    assert [s.split for s in studies] == ["train", "val", "test"]


def test_iu_rendered_corpus_shows_the_loader_warnings(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="non-standard split key"):
        corpus = medical.iu_rendered_corpus(tmp_path / "cache", R2GEN_FIXTURE, 16, 0)
    assert len(corpus) == 4


# ------------------------------------------------------------------------ 4. MSCOCO split


def test_mscoco_unknown_split_lists_valid_ones(coco: Path) -> None:
    with pytest.raises(DataError) as err:
        load_mscoco(coco, split="test2017")
    assert "must be one of train2017, val2017, train2014, val2014, got 'test2017'" in str(err.value)


def test_mscoco_missing_split_lists_available(coco: Path) -> None:
    for split in ("train2017", "train2014"):
        with pytest.raises(DataError) as err:
            load_mscoco(coco, split=split)
        msg = str(err.value)
        assert f"captions_{split}.json" in msg and f"available splits under {coco}: val2017" in msg


def test_mscoco_missing_image_folder_lists_available(coco: Path) -> None:
    (coco / "annotations" / "captions_val2017.json").rename(coco / "annotations" / "captions_val2014.json")
    with pytest.raises(DataError) as err:
        load_mscoco(coco, split="val2014")
    msg = str(err.value)
    assert f"image folder not found: expected {coco / 'val2014'}" in msg and "available splits" in msg
    assert "none" in msg


def test_load_corpus_mscoco_default_split_is_train2017(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _copy("mscoco", root)
    cfg = _cfg(tmp_path, root)
    assert getattr(cfg, "coco_split", "train2017") in COCO_SPLITS
    if getattr(cfg, "coco_split", "train2017") != "train2017":
        pytest.skip("a coco_split other than train2017 is configured")
    with pytest.raises(DataError, match=r"captions_train2017\.json; available splits under .*: val2017"):
        datasets.load_corpus("mscoco", cfg)


# ------------------------------------------------------------------------ 5. stale .tmp-* folders


def _builder(out: Path) -> None:
    np.save(out / "x.npy", np.arange(3))


def _make_tmp(kind_dir: Path, name: str, age_s: float) -> Path:
    folder = kind_dir / name
    folder.mkdir(parents=True)
    (folder / "partial.npy").write_bytes(b"half written")
    then = time.time() - age_s
    for p in (folder / "partial.npy", folder):
        os.utime(p, (then, then))
    return folder


def test_stale_tmp_folders_of_killed_builds_are_removed(tmp_path: Path) -> None:
    kind = tmp_path / "demo"
    stale = _make_tmp(kind, ".tmp-aaaa-11111111", cache.STALE_TMP_SECONDS + 3600)
    recent = _make_tmp(kind, ".tmp-bbbb-22222222", 60)
    other_kind = _make_tmp(tmp_path / "other", ".tmp-cccc-33333333", cache.STALE_TMP_SECONDS + 3600)
    old_but_locked = _make_tmp(kind, ".tmp-dddd-44444444", cache.STALE_TMP_SECONDS + 3600)
    lock = cache._lock(old_but_locked)  # a build in progress holds its folder's lock
    assert lock is not None
    try:
        art = cache.cached(tmp_path, "demo", {"n": 1}, _builder)
    finally:
        os.close(lock)
    assert art.rebuilt
    assert not stale.exists()
    assert recent.is_dir() and other_kind.is_dir() and old_but_locked.is_dir()
    assert cache.remove_stale_tmp(kind) == [old_but_locked]  # lock released: now it goes


def test_recently_touched_file_keeps_an_old_tmp_folder(tmp_path: Path) -> None:
    folder = _make_tmp(tmp_path / "demo", ".tmp-eeee-55555555", cache.STALE_TMP_SECONDS + 3600)
    (folder / "partial.npy").touch()  # a build still writing into it
    assert cache.remove_stale_tmp(tmp_path / "demo") == []
    assert folder.is_dir()


# ------------------------------------------------------------------------ 6. corrupt wav


@pytest.fixture
def lj(tmp_path: Path) -> Path:
    return _copy("ljspeech_tiny", tmp_path, "ljspeech")


def test_ljspeech_corrupt_wav_names_file_and_metadata_line(lj: Path) -> None:
    (lj / "wavs" / "LJ001-0002.wav").write_bytes(b"RIFF\x00\x00\x00\x00not a wave file")
    with pytest.raises(DataError) as err:
        load_ljspeech(lj)
    msg = str(err.value)
    assert f"{lj / 'metadata.csv'} line 2: audio file {lj / 'wavs' / 'LJ001-0002.wav'} is corrupt" in msg


def test_ljspeech_truncated_wav(lj: Path) -> None:
    wav = lj / "wavs" / "LJ001-0003.wav"
    wav.write_bytes(wav.read_bytes()[:40])  # header cut before the data chunk
    with pytest.raises(DataError, match=r"metadata\.csv line 3: audio file .*LJ001-0003\.wav is corrupt"):
        load_ljspeech(lj, missing="error")


def test_ljspeech_empty_wav(lj: Path) -> None:
    soundfile.write(lj / "wavs" / "LJ001-0001.wav", np.zeros(0, np.float32), 22_050)
    with pytest.raises(DataError, match=r"metadata\.csv line 1: audio file .*LJ001-0001\.wav has no audio"):
        load_ljspeech(lj)


def test_libritts_corrupt_wav_names_transcript(tmp_path: Path) -> None:
    root = _copy("libritts_tiny", tmp_path)
    wav = next(root.rglob("84_121123_000007_000001.wav"))
    wav.write_bytes(b"garbage")
    with pytest.raises(
        DataError, match=r"84_121123_000007_000001\.normalized\.txt: audio file .* is corrupt"
    ):
        load_libritts(root)
