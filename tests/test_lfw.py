"""The LFW frontalized loader (m4i_utils.data.lfw): synthetic folders for the checks, the real data when
present."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m4i_utils.data.lfw import LFW_FOLDER, LFWPerson, load_face, load_lfw
from m4i_utils.data.records import DataError

# ------------------------------------------------------------------------------------------ synthetic data


def _make_lfw(root: Path, people: dict[str, int], listed: dict[str, int] | None = None) -> Path:
    """A tiny fake LFW folder under ``root``: ``people`` (folder -> images on disk), ``listed`` the counts
    written to identities.tsv (default: ``people``). Returns the data root."""
    base = root / LFW_FOLDER
    rng = np.random.default_rng(0)
    for folder, n in people.items():
        d = base / "images" / folder
        d.mkdir(parents=True)
        for i in range(1, n + 1):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels, mode="RGB").save(d / f"{folder}_{i:04d}.jpg", quality=90)
    lines = ["name\tnum_images", *(f"{k}\t{v}" for k, v in (listed or people).items())]
    (base / "identities.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


PEOPLE = {"Zoe_Ann_Smith": 3, "Al_Bo": 1, "Mia_Wu": 2}


def test_synthetic_loads_sorted_with_names(tmp_path: Path) -> None:
    people = load_lfw(_make_lfw(tmp_path, PEOPLE))
    assert [p.folder for p in people] == ["Al_Bo", "Mia_Wu", "Zoe_Ann_Smith"]
    assert [p.name for p in people] == ["Al Bo", "Mia Wu", "Zoe Ann Smith"]
    zoe = people[2]
    assert isinstance(zoe, LFWPerson)
    assert [f.name for f in zoe.images] == [f"Zoe_Ann_Smith_000{i}.jpg" for i in (1, 2, 3)]
    assert all(f.is_file() for f in zoe.images)


def test_min_images_filters(tmp_path: Path) -> None:
    root = _make_lfw(tmp_path, PEOPLE)
    assert [p.folder for p in load_lfw(root, min_images=2)] == ["Mia_Wu", "Zoe_Ann_Smith"]
    assert [p.folder for p in load_lfw(root, min_images=3)] == ["Zoe_Ann_Smith"]
    assert load_lfw(root, min_images=4) == []
    with pytest.raises(ValueError, match="min_images"):
        load_lfw(root, min_images=0)


def test_count_mismatch_names_folder_and_both_counts(tmp_path: Path) -> None:
    root = _make_lfw(tmp_path, PEOPLE, listed={**PEOPLE, "Mia_Wu": 5})
    with pytest.raises(DataError, match=r"Mia_Wu holds 2 \.jpg files but .*identities\.tsv lists 5"):
        load_lfw(root)


def test_malformed_line_names_line_number(tmp_path: Path) -> None:
    root = _make_lfw(tmp_path, PEOPLE)
    tsv = root / LFW_FOLDER / "identities.tsv"
    lines = tsv.read_text().splitlines()
    lines[2] = "Al_Bo one"  # line 3: no tab, no integer
    tsv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"identities\.tsv line 3: malformed"):
        load_lfw(root)


def test_missing_root_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"{re.escape(str(missing))}.*M4I_DATA_ROOT"):
        load_lfw(missing)
    with pytest.raises(DataError, match=rf"{re.escape(str(tmp_path / LFW_FOLDER))} not found.*data_root"):
        load_lfw(tmp_path)  # the root exists, the dataset folder does not


def test_listed_identity_without_folder(tmp_path: Path) -> None:
    root = _make_lfw(tmp_path, PEOPLE, listed={**PEOPLE, "Ghost_Person": 2})
    with pytest.raises(DataError, match=r"'Ghost_Person' is listed .* with 2 images but its folder"):
        load_lfw(root)


def test_unlisted_folder_and_bad_file_name(tmp_path: Path) -> None:
    root = _make_lfw(tmp_path, PEOPLE, listed={"Al_Bo": 1, "Zoe_Ann_Smith": 3})
    with pytest.raises(DataError, match=r"Mia_Wu is not listed in"):
        load_lfw(root)
    other = _make_lfw(tmp_path / "b", PEOPLE)
    person = other / LFW_FOLDER / "images" / "Mia_Wu"
    (person / "Mia_Wu_0002.jpg").rename(person / "Mia_Wu_2.jpg")
    with pytest.raises(DataError, match=r"Mia_Wu_2\.jpg: unexpected entry"):
        load_lfw(other)


def test_load_face_resizes_and_rejects_corrupt(tmp_path: Path) -> None:
    root = _make_lfw(tmp_path, {"Al_Bo": 1})
    path = load_lfw(root)[0].images[0]
    native = load_face(path, 12)
    assert native.shape == (12, 12, 3) and native.dtype == np.uint8
    assert np.array_equal(native, np.asarray(Image.open(path).convert("RGB")))
    small = load_face(path, 5)
    assert small.shape == (5, 5, 3) and small.dtype == np.uint8
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"bad\.jpg cannot be decoded"):
        load_face(bad, 12)


# ------------------------------------------------------------------------------------------ real data


def _real_data_root() -> Path:
    env = os.environ.get("M4I_DATA_ROOT")
    if env and (Path(env) / LFW_FOLDER).is_dir():
        return Path(env)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if (shared / LFW_FOLDER).is_dir():
        return shared
    pytest.skip(
        f"real LFW frontalized data ({LFW_FOLDER}) not under the data root (../shared/data or M4I_DATA_ROOT)"
    )


@pytest.fixture(scope="module")
def real_lfw() -> list[LFWPerson]:
    root = _real_data_root()
    start = time.perf_counter()
    people = load_lfw(root)
    print(f"load_lfw({root}) took {time.perf_counter() - start:.2f} s")  # informative only, not asserted
    return people


def test_real_counts(real_lfw: list[LFWPerson]) -> None:
    assert len(real_lfw) == 5749
    assert sum(len(p.images) for p in real_lfw) == 13233
    bush = next(p for p in real_lfw if p.folder == "George_W_Bush")
    assert bush.name == "George W Bush"
    assert [p.folder for p in real_lfw] == sorted(p.folder for p in real_lfw)


def test_real_min_images_10() -> None:
    people = load_lfw(_real_data_root(), min_images=10)
    assert len(people) == 158
    assert sum(len(p.images) for p in people) == 4324
    assert min(len(p.images) for p in people) >= 10


def test_real_load_face_sizes(real_lfw: list[LFWPerson]) -> None:
    path = real_lfw[0].images[0]
    small = load_face(path, 64)
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8
    native = load_face(path, 90)
    assert native.shape == (90, 90, 3) and native.dtype == np.uint8
    assert native.std() > 0  # a real picture, not a blank array
