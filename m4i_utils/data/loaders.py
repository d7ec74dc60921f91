"""Loaders for the real image-caption datasets of the M4I paper (appendix C.1: MSCOCO, Flickr8k, IAPR TC-12).

Every loader reads the dataset's own release format and returns a :class:`~m4i_utils.data.records.Corpus` of
:class:`~m4i_utils.data.records.Record` s: ``image`` is the path of the image file, ``captions`` the stripped
reference captions in file order, and records are sorted by id so that a corpus is deterministic. Bad input
raises :class:`~m4i_utils.data.records.DataError` naming the file (and the 1-based line where there is one);
nothing is dropped silently: ``missing_images="skip"`` drops caption entries without an image file and
emits a warning that says how many.

Accepted caption counts (anything else raises, naming the file, the line or annotation id, and the rule):

* Flickr8k, token file and Kaggle ``captions.txt`` alike: exactly 5 captions per image. In the token file
  the indices are ``#0``..``#4`` and an ``(image, index)`` pair or a whole line may not appear twice; in the
  Kaggle file a 6th line for an image is an error (a repeated line is named as such). The release itself
  has 10 images where two annotators wrote the same sentence: such a caption repeated WITHIN an image's 5
  is kept, with one warning per file. The original token file's known typo ``2258277193_586949ec62.jpg.1#0``
  (an image name with a ``.N`` suffix) is read as ``2258277193_586949ec62.jpg#0``, with a warning.
* MSCOCO: 5 to 7 captions per image and no duplicate annotation ``id``; images with no caption at all are
  dropped with a warning. Splits: ``train2017`` (default), ``val2017``, ``train2014``, ``val2014``.
* IAPR TC-12: one ``<DESCRIPTION>`` per image (an image annotated by two files is an error), split into
  captions on ``;``.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

from PIL import Image

from .records import Corpus, DataError, Record

FLICKR8K_URL = (
    "the University of Illinois Flickr8k request form (https://forms.illinois.edu/sec/1713398) "
    'or Kaggle "adityajn105/flickr8k" (https://www.kaggle.com/datasets/adityajn105/flickr8k)'
)
MSCOCO_URL = "https://cocodataset.org/#download"
IAPR_URL = "https://www.imageclef.org/photodata"

DATASET_FOLDERS: dict[str, tuple[str, ...]] = {
    "flickr8k": ("flickr8k", "Flickr8k", "flickr8k_subset1000"),
    "mscoco": ("mscoco", "coco"),
    "iapr_tc12": ("iapr_tc12", "iaprtc12"),
}
DATASET_URLS = {"flickr8k": FLICKR8K_URL, "mscoco": MSCOCO_URL, "iapr_tc12": IAPR_URL}

FLICKR8K_TOKEN_FILES = ("Flickr8k_text/Flickr8k.token.txt", "Flickr8k.token.txt")
FLICKR8K_KAGGLE_FILE = "captions.txt"
FLICKR8K_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "images", "Images")
_MISSING_MODES = ("error", "skip")

FLICKR8K_CAPTIONS = 5
FLICKR8K_RULE = "Flickr8k has exactly 5 captions per image"
COCO_SPLITS = ("train2017", "val2017", "train2014", "val2014")
COCO_MIN_CAPTIONS, COCO_MAX_CAPTIONS = 5, 7
COCO_RULE = "MSCOCO has 5 to 7 captions per image"
_FLICKR8K_TYPO = re.compile(r"^(.+\.jpg)\.\d+$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------- helpers


def _check_mode(missing_images: str) -> None:
    if missing_images not in _MISSING_MODES:
        raise DataError(f"missing_images must be one of {_MISSING_MODES}, got {missing_images!r}")


def _file_names(folder: Path) -> set[str]:
    """Names of the plain files directly in ``folder`` (empty if the folder does not exist)."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_file()}


def _verify(path: Path) -> None:
    """Fully decode ``path`` with PIL; raise :class:`DataError` naming the file if that fails."""
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"image {path} fails to decode: {exc}") from exc


def _drop_missing(
    where: dict[str, str], n_entries: dict[str, int], present: set[str], missing_images: str, what: str
) -> set[str]:
    """Return the ids whose image is absent; raise (``"error"``) or warn (``"skip"``) about them.

    Args:
        where: id -> human-readable location of its first caption entry (``"file line 3"``).
        n_entries: id -> number of caption entries (lines / annotations) for it.
        present: ids whose image file exists.
        missing_images: ``"error"`` or ``"skip"``.
        what: how to name an entry in the warning (``"caption lines"``, ``"annotations"``).
    """
    missing = sorted(set(where) - present)
    if missing and missing_images == "error":
        first = missing[0]
        more = f" (and {len(missing) - 1} more images)" if len(missing) > 1 else ""
        raise DataError(
            f"{where[first]}: image {first!r} not found{more}; "
            'pass missing_images="skip" to drop captions whose image is absent'
        )
    if missing:
        n = sum(n_entries[m] for m in missing)
        warnings.warn(
            f"skipped {len(missing)} images ({n} {what}) whose image file is absent, "
            f"e.g. {where[missing[0]]}: {missing[0]!r}; {len(where) - len(missing)} images remain",
            stacklevel=3,
        )
    return set(missing)


def _build(
    name: str, captions: dict[str, list[str]], paths: dict[str, Path], drop: set[str], verify: bool
) -> Corpus:
    """Sort the kept ids, optionally verify their images, and wrap them as a corpus."""
    ids = sorted(set(captions) - drop)
    if not ids:
        raise DataError(f"{name}: no records left (no caption entry has an image file)")
    if verify:
        for i in ids:
            _verify(paths[i])
    return Corpus(name, tuple(Record(i, paths[i], tuple(captions[i])) for i in ids))


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (BOM and line endings removed); decode errors become DataError."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc


def _warn_repeats(path: Path, repeats: list[tuple[str, int, int]]) -> None:
    """One warning for captions repeated within an image's captions: ``(image, line, earlier line)``."""
    if repeats:
        image, line, earlier = repeats[0]
        warnings.warn(
            f"{path}: {len(repeats)} captions repeat another caption of the same image (e.g. line {line} "
            f"repeats line {earlier} for image {image!r}); kept, as in the Flickr8k release",
            stacklevel=4,
        )


def _check_flickr8k_counts(path: Path, lines: dict[str, list[int]]) -> None:
    """Every image has exactly :data:`FLICKR8K_CAPTIONS` caption lines; DataError naming the first line."""
    for image, found in lines.items():
        if len(found) != FLICKR8K_CAPTIONS:
            raise DataError(
                f"{path} line {found[0]}: image {image!r} has {len(found)} captions (lines "
                f"{', '.join(map(str, found))}); {FLICKR8K_RULE}"
            )


# --------------------------------------------------------------------------------------------- Flickr8k


def _flickr8k_token_file(root: Path) -> Path | None:
    return next((root / p for p in FLICKR8K_TOKEN_FILES if (root / p).is_file()), None)


def _parse_flickr8k_token(path: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Parse ``IMAGE.jpg#K<TAB>caption`` lines into image -> captions and image -> first line number.

    Enforces the Flickr8k rule (module docstring): indices #0..#4, no repeated line, no duplicate
    ``(image, index)``, exactly 5 captions per image.
    """
    captions: dict[str, list[str]] = {}
    lines: dict[str, list[int]] = {}
    seen: dict[tuple[str, int], int] = {}
    seen_line: dict[str, int] = {}
    by_text: dict[tuple[str, str], int] = {}
    repeats: list[tuple[str, int, int]] = []
    typos: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image, hash_, k = key.strip().rpartition("#")
        if not tab or not hash_ or not image or not k.isdigit():
            raise DataError(f"{path} line {lineno}: malformed, expected 'IMAGE.jpg#K<TAB>caption': {line!r}")
        if not caption.strip():
            raise DataError(f"{path} line {lineno}: empty caption for image {image!r}")
        if line.strip() in seen_line:
            raise DataError(
                f"{path} line {lineno}: repeated line (same as line {seen_line[line.strip()]}): {line!r}; "
                f"remove it ({FLICKR8K_RULE})"
            )
        seen_line[line.strip()] = lineno
        if int(k) >= FLICKR8K_CAPTIONS:
            raise DataError(
                f"{path} line {lineno}: caption index #{k} of image {image!r} is outside #0-#4; "
                f"{FLICKR8K_RULE}, indexed #0..#4"
            )
        typo = _FLICKR8K_TYPO.match(image)
        if typo:
            typos.append((lineno, image, typo.group(1)))
            image = typo.group(1)
        if (image, int(k)) in seen:
            raise DataError(
                f"{path} line {lineno}: duplicate caption {image}#{k} (first on line {seen[image, int(k)]}); "
                f"{FLICKR8K_RULE}"
            )
        seen[image, int(k)] = lineno
        text = caption.strip()
        if (image, text) in by_text:
            repeats.append((image, lineno, by_text[image, text]))
        by_text.setdefault((image, text), lineno)
        captions.setdefault(image, []).append(text)
        lines.setdefault(image, []).append(lineno)
    for lineno, image, fixed in typos:
        warnings.warn(
            f"{path} line {lineno}: image name {image!r} read as {fixed!r} "
            "(known typo of the original Flickr8k token file)",
            stacklevel=3,
        )
    _check_flickr8k_counts(path, lines)
    _warn_repeats(path, repeats)
    return captions, {i: n[0] for i, n in lines.items()}


def _parse_flickr8k_kaggle(path: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Parse the Kaggle ``image,caption`` CSV (split on the first comma; quoted captions are unquoted)."""
    lines = _read_lines(path)
    if not lines or [c.strip().lower() for c in lines[0].split(",")] != ["image", "caption"]:
        got = repr(lines[0]) if lines else "an empty file"
        raise DataError(f"{path} line 1: header 'image,caption' missing, got {got}")
    captions: dict[str, list[str]] = {}
    where: dict[str, list[int]] = {}
    by_text: dict[tuple[str, str], int] = {}
    repeats: list[tuple[str, int, int]] = []
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        row = next(csv.reader([line]))
        if len(row) < 2 or not row[0].strip():
            raise DataError(f"{path} line {lineno}: malformed, expected 'IMAGE.jpg,caption': {line!r}")
        image, caption = row[0].strip(), ",".join(row[1:]).strip()
        if not caption:
            raise DataError(f"{path} line {lineno}: empty caption for image {image!r}")
        earlier = by_text.get((image, caption))
        if earlier:
            repeats.append((image, lineno, earlier))
        if len(where.get(image, ())) >= FLICKR8K_CAPTIONS:
            found = ", ".join(map(str, [*where[image], lineno]))
            first = next(((n, m) for i, n, m in repeats if i == image), None)
            if first:
                raise DataError(
                    f"{path} line {first[0]}: repeated line (same as line {first[1]}) gives image "
                    f"{image!r} a 6th caption (lines {found}); {FLICKR8K_RULE}; remove the repeated line"
                )
            raise DataError(
                f"{path} line {lineno}: a 6th caption for image {image!r} (lines {found}); {FLICKR8K_RULE}; "
                "remove the extra line"
            )
        by_text.setdefault((image, caption), lineno)
        captions.setdefault(image, []).append(caption)
        where.setdefault(image, []).append(lineno)
    _check_flickr8k_counts(path, where)
    _warn_repeats(path, repeats)
    return captions, {i: n[0] for i, n in where.items()}


def load_flickr8k(
    root: Path, caption_format: str = "auto", missing_images: str = "error", verify_images: bool = False
) -> Corpus:
    """Load Flickr8k (one of the three real datasets of M4I appendix C.1) as a corpus named ``flickr8k``.

    Both formats must give exactly 5 captions per image (see the module docstring for the full rule).
    Two caption formats are read:

    * ``"token"``: the original release, ``root/Flickr8k_text/Flickr8k.token.txt`` (or
      ``root/Flickr8k.token.txt``), lines ``IMAGE.jpg#K<TAB>caption``;
    * ``"kaggle"``: ``root/captions.txt`` with header ``image,caption`` and lines ``IMAGE.jpg,caption``
      (split on the first comma; CSV-quoted captions are unquoted).

    Images are read from the first existing folder of ``root/Flicker8k_Dataset`` (sic, the original name),
    ``root/Flickr8k_Dataset``, ``root/images``, ``root/Images``.

    Args:
        root: the Flickr8k folder.
        caption_format: ``"token"``, ``"kaggle"`` or ``"auto"`` (token file if present, else Kaggle file).
        missing_images: ``"error"`` (a caption line whose image file is absent raises, naming the caption
            file, line and image) or ``"skip"`` (such images are dropped with a warning saying how many).
            The official token file covers all 8,091 images, so a local subset needs ``"skip"``.
        verify_images: decode every image with PIL and raise :class:`DataError` naming a file that fails.

    Returns:
        The corpus; record id = image file name, captions in file order, records sorted by id.
    """
    root = Path(root)
    _check_mode(missing_images)
    token, kaggle = _flickr8k_token_file(root), root / FLICKR8K_KAGGLE_FILE
    expected_token = " or ".join(str(root / p) for p in FLICKR8K_TOKEN_FILES)
    if caption_format == "auto":
        caption_format = "token" if token else "kaggle" if kaggle.is_file() else ""
        if not caption_format:
            raise DataError(
                f"no Flickr8k caption file under {root}: expected {expected_token} (original format) "
                f"or {kaggle} (Kaggle format); obtain Flickr8k from {FLICKR8K_URL}"
            )
    if caption_format == "token":
        if token is None:
            raise DataError(
                f"Flickr8k token file not found: expected {expected_token}; "
                f"obtain Flickr8k from {FLICKR8K_URL}"
            )
        path, (captions, first_line) = token, _parse_flickr8k_token(token)
    elif caption_format == "kaggle":
        if not kaggle.is_file():
            raise DataError(
                f"Flickr8k Kaggle captions not found: expected {kaggle}; obtain it from {FLICKR8K_URL}"
            )
        path, (captions, first_line) = kaggle, _parse_flickr8k_kaggle(kaggle)
    else:
        raise DataError(f"caption_format must be 'token', 'kaggle' or 'auto', got {caption_format!r}")

    image_dir = next((root / d for d in FLICKR8K_IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise DataError(
            f"no Flickr8k image folder under {root}: expected one of {', '.join(FLICKR8K_IMAGE_DIRS)}; "
            f"obtain Flickr8k from {FLICKR8K_URL}"
        )
    where = {i: f"{path} line {n}" for i, n in first_line.items()}
    drop = _drop_missing(
        where,
        {i: len(c) for i, c in captions.items()},
        _file_names(image_dir),
        missing_images,
        "caption lines",
    )
    return _build("flickr8k", captions, {i: image_dir / i for i in captions}, drop, verify_images)


def flickr8k_official_split(root: Path, split: str) -> set[str]:
    """The image names of the official Flickr8k ``train`` / ``dev`` / ``test`` split (6,000 / 1,000 / 1,000).

    Reads ``Flickr_8k.{split}Images.txt`` from ``root/Flickr8k_text/`` or ``root/``.
    """
    if split not in ("train", "dev", "test"):
        raise DataError(f"split must be 'train', 'dev' or 'test', got {split!r}")
    name = f"Flickr_8k.{split}Images.txt"
    candidates = (Path(root) / "Flickr8k_text" / name, Path(root) / name)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"Flickr8k split file not found: expected {' or '.join(map(str, candidates))}")
    return {line.strip() for line in _read_lines(path) if line.strip()}


# --------------------------------------------------------------------------------------------- MSCOCO


def mscoco_available_splits(root: Path) -> list[str]:
    """The splits of :data:`COCO_SPLITS` present under ``root``: ``annotations/captions_<split>.json`` and
    the ``<split>/`` image folder both exist."""
    root = Path(root)
    return [
        s
        for s in COCO_SPLITS
        if (root / "annotations" / f"captions_{s}.json").is_file() and (root / s).is_dir()
    ]


def _coco_split_hint(root: Path) -> str:
    available = mscoco_available_splits(root)
    return (
        f"available splits under {root}: {', '.join(available) if available else 'none'} (a split needs "
        "annotations/captions_<split>.json and the <split>/ image folder); choose one with split=... "
        "(Config.coco_split)"
    )


def load_mscoco(
    root: Path, split: str = "train2017", missing_images: str = "error", verify_images: bool = False
) -> Corpus:
    """Load MSCOCO captions (one of the three real datasets of M4I appendix C.1) as a corpus named ``mscoco``.

    Reads the standard captions JSON ``root/annotations/captions_{split}.json`` (``"images"``: ``id``,
    ``file_name``; ``"annotations"``: ``image_id``, ``id``, ``caption``) with images in ``root/{split}/``.
    Every captioned image must have 5 to 7 captions and annotation ids must be unique (DataError naming the
    file, the annotation and the rule otherwise). Images without any caption are dropped with a warning.

    Args:
        root: the COCO folder.
        split: one of :data:`COCO_SPLITS`: ``"train2017"`` (default), ``"val2017"``, ``"train2014"``,
            ``"val2014"``. A split whose annotation file (or, with ``missing_images="error"``, image folder)
            is absent raises a DataError listing the splits that are present.
        missing_images: ``"error"`` or ``"skip"`` (drop images whose file is absent, with a warning).
        verify_images: decode every image with PIL and raise :class:`DataError` naming a file that fails.

    Returns:
        The corpus; record id = ``file_name``, captions in annotation order, records sorted by id.
    """
    root = Path(root)
    _check_mode(missing_images)
    if split not in COCO_SPLITS:
        raise DataError(f"MSCOCO split must be one of {', '.join(COCO_SPLITS)}, got {split!r}")
    path = root / "annotations" / f"captions_{split}.json"
    if not path.is_file():
        raise DataError(
            f"MSCOCO caption annotations not found: expected {path}; {_coco_split_hint(root)}; "
            f"obtain them from {MSCOCO_URL}"
        )
    image_dir = root / split
    if not image_dir.is_dir() and missing_images == "error":
        raise DataError(
            f"MSCOCO image folder not found: expected {image_dir}; {_coco_split_hint(root)}; "
            f"obtain it from {MSCOCO_URL}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: expected a JSON object with lists 'images' and 'annotations'")
    if not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected a JSON object with lists 'images' and 'annotations'")

    names: dict[object, str] = {}
    for k, image in enumerate(data["images"]):
        try:
            image_id, file_name = image["id"], str(image["file_name"])
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: images[{k}] lacks 'id' or 'file_name': {image!r}") from exc
        if image_id in names or file_name in names.values():
            raise DataError(f"{path}: images[{k}]: duplicate image id {image_id!r} / file_name {file_name!r}")
        names[image_id] = file_name

    captions: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    ann_ids: dict[object, int] = {}
    for k, ann in enumerate(data["annotations"]):
        try:
            image_id, caption, ann_id = ann["image_id"], ann["caption"], ann["id"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: annotations[{k}] lacks 'image_id', 'id' or 'caption': {ann!r}") from exc
        label = f"{path} annotations[{k}] (id {ann_id!r})"
        if not isinstance(ann_id, (int, str)) or isinstance(ann_id, bool):
            raise DataError(f"{label}: annotation id must be an integer or a string")
        if ann_id in ann_ids:
            raise DataError(
                f"{label}: duplicate annotation id {ann_id!r} (also annotations[{ann_ids[ann_id]}]); "
                "annotation ids must be unique: remove the repeated annotation"
            )
        ann_ids[ann_id] = k
        if image_id not in names:
            raise DataError(f"{label}: unknown image_id {image_id!r}")
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{label}: empty caption for image {names[image_id]!r}")
        name = names[image_id]
        if len(captions.get(name, ())) >= COCO_MAX_CAPTIONS:
            raise DataError(
                f"{label}: caption {COCO_MAX_CAPTIONS + 1} of image {name!r} (first at {where[name]}); "
                f"{COCO_RULE}"
            )
        captions.setdefault(name, []).append(caption.strip())
        where.setdefault(name, label)
    for name, caps in captions.items():
        if len(caps) < COCO_MIN_CAPTIONS:
            raise DataError(f"{where[name]}: image {name!r} has only {len(caps)} captions; {COCO_RULE}")

    uncaptioned = sorted(set(names.values()) - set(captions))
    if uncaptioned:
        warnings.warn(
            f"{path}: dropped {len(uncaptioned)} images without captions, e.g. {uncaptioned[0]!r}",
            stacklevel=2,
        )
    drop = _drop_missing(
        where, {i: len(c) for i, c in captions.items()}, _file_names(image_dir), missing_images, "annotations"
    )
    return _build("mscoco", captions, {i: image_dir / i for i in captions}, drop, verify_images)


# --------------------------------------------------------------------------------------------- IAPR TC-12


def _tag(text: str, tag: str) -> str | None:
    """The stripped content of the first ``<tag>...</tag>`` element of ``text`` (None if absent)."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL | re.IGNORECASE)
    return match.group(1).strip() if match else None


def _read_latin(path: Path) -> str:
    """Decode a file as UTF-8, falling back to ISO-8859-1 (the encoding of many IAPR TC-12 files)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def load_iapr_tc12(root: Path, missing_images: str = "error", verify_images: bool = False) -> Corpus:
    """Load IAPR TC-12 (one of the three real datasets of M4I appendix C.1) as a corpus named ``iapr_tc12``.

    Reads the English annotations ``root/annotations_complete_eng/<dir>/<id>.eng``: SGML-like documents with
    ``<DESCRIPTION>`` and ``<IMAGE>`` tags (UTF-8, or ISO-8859-1 as many files are). The image is
    ``root/<IMAGE>``. IAPR has one free-text description per image made of several ``;``-separated clauses;
    following the common practice for captioning on IAPR TC-12, the description is split on ``;`` and each
    non-empty clause (stripped, inner whitespace collapsed) is one caption, so images have a varying number
    of captions.

    Args:
        root: the IAPR TC-12 folder (holding ``annotations_complete_eng/`` and ``images/``).
        missing_images: ``"error"`` or ``"skip"`` (drop images whose file is absent, with a warning).
        verify_images: decode every image with PIL and raise :class:`DataError` naming a file that fails.

    Returns:
        The corpus; record id = the ``<IMAGE>`` path as written (e.g. ``images/01/1000.jpg``), records
        sorted by id.
    """
    root = Path(root)
    _check_mode(missing_images)
    ann_dir = root / "annotations_complete_eng"
    if not ann_dir.is_dir():
        raise DataError(
            f"IAPR TC-12 annotations not found: expected annotations_complete_eng/ under {root}; "
            f"obtain the IAPR TC-12 benchmark from {IAPR_URL}"
        )
    files = sorted(ann_dir.rglob("*.eng"))
    if not files:
        raise DataError(f"no .eng annotation files under {ann_dir}; obtain IAPR TC-12 from {IAPR_URL}")

    captions: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for path in files:
        text = _read_latin(path)
        description, image = _tag(text, "DESCRIPTION"), _tag(text, "IMAGE")
        if description is None or image is None:
            tag = "DESCRIPTION" if description is None else "IMAGE"
            raise DataError(f"{path}: no <{tag}>...</{tag}> tag")
        if not image:
            raise DataError(f"{path}: empty <IMAGE> tag")
        parts = [" ".join(p.split()) for p in description.split(";")]
        parts = [p for p in parts if p]
        if not parts:
            raise DataError(f"{path}: empty <DESCRIPTION> for image {image!r}")
        if image in captions:
            raise DataError(f"{path}: duplicate image {image!r} (also annotated in {where[image]})")
        captions[image], where[image] = parts, str(path)

    present = {i for i in captions if (root / i).is_file()}
    drop = _drop_missing(where, dict.fromkeys(captions, 1), present, missing_images, "annotation files")
    return _build("iapr_tc12", captions, {i: root / i for i in captions}, drop, verify_images)


# --------------------------------------------------------------------------------------------- dispatch


def resolve_dataset_root(data_root: str | Path | None, dataset: str) -> Path:
    """Find ``dataset``'s folder under the data root by trying its conventional folder names in order.

    Args:
        data_root: the folder holding the datasets (``Config.data_root`` / ``M4I_DATA_ROOT``), or None.
        dataset: ``"flickr8k"`` (tries ``flickr8k``, ``Flickr8k``, ``flickr8k_subset1000``), ``"mscoco"``
            (``mscoco``, ``coco``) or ``"iapr_tc12"`` (``iapr_tc12``, ``iaprtc12``).

    Returns:
        The first of those folders that exists.
    """
    if dataset not in DATASET_FOLDERS:
        raise DataError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASET_FOLDERS)}")
    return find_data_folder(data_root, dataset, DATASET_FOLDERS[dataset], DATASET_URLS[dataset])


def find_data_folder(data_root: str | Path | None, name: str, names: tuple[str, ...], url: str) -> Path:
    """The first of ``names`` that is a folder under the data root; a clear error naming what to set, the
    paths tried and where to obtain ``name`` otherwise (shared by image and speech datasets)."""
    if data_root is None:
        raise DataError(
            "no data root configured: set the environment variable M4I_DATA_ROOT (or the data_root override) "
            f"to the folder that holds {' or '.join(names)}; obtain the data from {url}"
        )
    base = Path(data_root).expanduser()
    if not base.is_dir():
        raise DataError(f"data root {base} does not exist (or is not a folder); set M4I_DATA_ROOT correctly")
    tried = [base / n for n in names]
    found = next((p for p in tried if p.is_dir()), None)
    if found is None:
        raise DataError(
            f"no {name} folder in data root {base}: tried {', '.join(map(str, tried))}; "
            f"obtain the data from {url}"
        )
    return found


def load_real_corpus(name: str, data_root: str | Path | None, **kwargs: object) -> Corpus:
    """Load the real dataset ``name`` (M4I appendix C.1: ``mscoco``, ``flickr8k``, ``iapr_tc12``).

    The dataset folder is found with :func:`resolve_dataset_root`. For Flickr8k the caption format is
    picked automatically; with the original token file (which covers the full 8k set while a local copy may
    hold a subset) images without a file are skipped with a warning, with the Kaggle file they are an error.

    Args:
        name: the dataset name.
        data_root: the folder holding the datasets.
        **kwargs: passed on to the loader, overriding the defaults above (e.g. ``split="val2017"``).

    Returns:
        The loaded corpus.
    """
    if name not in DATASET_FOLDERS:
        raise DataError(f"unknown real dataset {name!r}; valid names: {', '.join(DATASET_FOLDERS)}")
    root = resolve_dataset_root(data_root, name)
    if name == "flickr8k":
        use_token = kwargs.get("caption_format", "auto") in ("auto", "token") and _flickr8k_token_file(root)
        kwargs = {"missing_images": "skip" if use_token else "error", **kwargs}
        return load_flickr8k(root, **kwargs)  # type: ignore[arg-type]
    if name == "mscoco":
        return load_mscoco(root, **kwargs)  # type: ignore[arg-type]
    return load_iapr_tc12(root, **kwargs)  # type: ignore[arg-type]
