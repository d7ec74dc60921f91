"""The real LFW faces, in their frontalized ("LFW3D") version: 13,233 images of 5,749 named people.

Layout under the data root (``Config.data_root`` / ``M4I_DATA_ROOT``), folder :data:`LFW_FOLDER`:

* ``identities.tsv``: a header ``name<TAB>num_images``, then one line per identity: its folder name (the LFW
  name with ``_`` for spaces, e.g. ``George_W_Bush``) and its number of images.
* ``images/<folder>/<folder>_<NNNN>.jpg``: the images, 90 x 90 RGB JPEGs (LFW photos warped to a frontal
  pose, cropped and resized by the dataset's distributors; see the folder's ``SOURCE.md``).

:func:`load_lfw` checks the whole folder against ``identities.tsv`` before it returns (every identity has its
folder and exactly its listed number of images, every file is named ``<folder>_<NNNN>.jpg``, no folder or file
is unlisted), so nothing is silently dropped; :func:`load_face` decodes one image to a uint8 array.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from m4i_utils.data.records import DataError

LFW_FOLDER = "lfw3d_frontalized"
_HEADER = ("name", "num_images")
_WHERE = "set the data root with the config field data_root or the M4I_DATA_ROOT environment variable"


@dataclass(frozen=True)
class LFWPerson:
    """One LFW identity and its image files.

    Attributes:
        name: the display name, with spaces (``"George W Bush"``).
        folder: the folder name under ``images/`` (``"George_W_Bush"``).
        images: the image files, sorted by file name.
    """

    name: str
    folder: str
    images: tuple[Path, ...]


def _read_identities(tsv: Path) -> dict[str, int]:
    """``folder -> image count`` from ``identities.tsv``, in file order.

    Raises:
        DataError: unreadable file, wrong header, or a malformed or duplicate line (the message names the
            file and line).
    """
    try:
        lines = tsv.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{tsv} cannot be read as UTF-8 text ({exc}); restore the dataset's file") from exc
    if not lines or tuple(lines[0].split("\t")) != _HEADER:
        got = repr(lines[0]) if lines else "an empty file"
        raise DataError(f"{tsv} line 1: expected the header 'name<TAB>num_images', got {got}")
    counts: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        folder, count = (fields[0], fields[1]) if len(fields) == 2 else ("", "")
        if not folder or folder != folder.strip() or "/" in folder or not re.fullmatch(r"[1-9]\d*", count):
            raise DataError(
                f"{tsv} line {lineno}: malformed, expected 'name<TAB>num_images' (a folder name and an "
                f"integer >= 1), got {line!r}; fix or remove the line"
            )
        if folder in first_line:
            raise DataError(
                f"{tsv} line {lineno}: duplicate identity {folder!r} (first on line {first_line[folder]}); "
                "list each identity once"
            )
        first_line[folder] = lineno
        counts[folder] = int(count)
    if not counts:
        raise DataError(f"{tsv}: no identities listed (only the header); restore the dataset's file")
    return counts


def _scan_person(images_dir: Path, folder: str, expected: int, tsv: Path) -> tuple[Path, ...]:
    """The image files of ``folder``, sorted by name, after checking their names and count.

    Raises:
        DataError: the folder is missing, holds a file or subfolder not named ``<folder>_<NNNN>.jpg``, or
            its number of ``.jpg`` files differs from ``expected`` (the count in ``tsv``).
    """
    person_dir = images_dir / folder
    if not person_dir.is_dir():
        raise DataError(
            f"identity {folder!r} is listed in {tsv} with {expected} images but its folder {person_dir} does "
            "not exist (or is not a folder); restore the folder or remove the identity from identities.tsv"
        )
    pattern = re.compile(re.escape(folder) + r"_\d{4}\.jpg")
    names = []
    with os.scandir(person_dir) as entries:
        for entry in entries:
            if not (pattern.fullmatch(entry.name) and entry.is_file()):
                raise DataError(
                    f"{person_dir / entry.name}: unexpected entry in the folder of identity {folder!r}; "
                    f"every entry must be a file named {folder}_<NNNN>.jpg (4 digits); rename or remove it"
                )
            names.append(entry.name)
    if len(names) != expected:
        raise DataError(
            f"folder {person_dir} holds {len(names)} .jpg files but {tsv} lists {expected} for identity "
            f"{folder!r}; restore the missing files or correct the count in identities.tsv"
        )
    return tuple(person_dir / n for n in sorted(names))


def load_lfw(data_root: str | Path, min_images: int = 1) -> list[LFWPerson]:
    """Load the LFW frontalized dataset from ``<data_root>/lfw3d_frontalized`` (layout: module docstring).

    The whole folder is validated before anything is returned, whatever ``min_images`` is.

    Args:
        data_root: the folder holding the datasets (``Config.data_root`` / ``M4I_DATA_ROOT``).
        min_images: keep only the people with at least this many images.

    Returns:
        The people with at least ``min_images`` images, sorted by folder name.

    Raises:
        ValueError: ``min_images < 1``.
        DataError: the data root, the dataset folder, ``identities.tsv`` or ``images/`` is missing; a
            malformed ``identities.tsv`` line (the message names the line); a listed identity without its
            folder; a folder whose number of ``.jpg`` files differs from its listed count (both numbers are
            named); a file not named ``<folder>_<NNNN>.jpg``; a folder or file in ``images/`` that
            ``identities.tsv`` does not list.
    """
    if isinstance(min_images, bool) or not isinstance(min_images, int | np.integer) or min_images < 1:
        raise ValueError(f"min_images must be an integer >= 1, got {min_images!r}")
    root = Path(data_root)
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist (or is not a folder); the LFW data was looked for in "
            f"{root / LFW_FOLDER}; {_WHERE}"
        )
    base = root / LFW_FOLDER
    if not base.is_dir():
        raise DataError(
            f"LFW folder {base} not found (looked for {LFW_FOLDER}/ in the data root {root}); put the "
            f"dataset there or {_WHERE}"
        )
    tsv, images_dir = base / "identities.tsv", base / "images"
    if not tsv.is_file():
        raise DataError(f"{tsv} not found: the LFW folder {base} needs identities.tsv (name<TAB>num_images)")
    if not images_dir.is_dir():
        raise DataError(f"{images_dir} not found: the LFW folder {base} needs images/<folder>/*.jpg")
    counts = _read_identities(tsv)
    with os.scandir(images_dir) as entries:
        unlisted = sorted(e.name for e in entries if e.name not in counts)
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise DataError(
            f"{images_dir / unlisted[0]}{more} is not listed in {tsv}; add the identity to identities.tsv "
            "or remove it"
        )
    people = []
    for folder in sorted(counts):
        images = _scan_person(images_dir, folder, counts[folder], tsv)
        if len(images) >= min_images:
            people.append(LFWPerson(folder.replace("_", " "), folder, images))
    return people


def load_face(path: Path, size: int) -> np.ndarray:
    """The image at ``path`` as a ``size`` x ``size`` x 3 uint8 array (RGB; resized with bicubic
    interpolation when its own size differs, e.g. 90 -> 64 for LFW).

    Raises:
        ValueError: ``size < 1``.
        DataError: the file is missing or cannot be decoded as an image (the message names it).
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"image {path} cannot be decoded ({exc}); replace it with the dataset's file"
        ) from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((int(size), int(size)), Image.BICUBIC)
    return np.array(rgb, dtype=np.uint8)
