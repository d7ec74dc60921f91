"""The common record type every image-caption loader returns (real and synthetic alike).

Content hashes: :meth:`Record.content_digest` is the sha256 of a record's image bytes (the file's bytes for
real data, the pixel array for synthetic data). :func:`~m4i_utils.data.datasets.corpus_fingerprint` hashes
it into the key of every artifact derived from a corpus, so a changed, swapped or corrupted image file
rebuilds those artifacts. File hashes are memoised in-process by ``(path, size, mtime_ns, inode, ctime_ns)``
(:func:`file_sha256`); :func:`prime_digest_index` also keeps them in a JSON index under the cache folder so
that a new process only re-hashes files whose stat changed. A rename-based swap of two files changes the
inode and ctime at both paths, and a rewrite in place changes mtime_ns and ctime, so either is re-hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


class DataError(ValueError):
    """Bad or missing input data; the message names the file (and line) and what to do."""


@dataclass(frozen=True)
class Record:
    """One image with its reference captions.

    Attributes:
        id: unique id within its corpus (the image file name for real datasets).
        image: a file on disk (real data) or an ``H x W x 3`` uint8 array (synthetic data).
        captions: the reference captions (5 per image in MSCOCO / Flickr8k / the synthetic worlds).
    """

    id: str
    image: Path | np.ndarray
    captions: tuple[str, ...]

    def load_image(self) -> Image.Image:
        """Return the image as an RGB PIL image; a file that fails to decode raises :class:`DataError`."""
        if isinstance(self.image, np.ndarray):
            return Image.fromarray(self.image, mode="RGB")
        try:
            with Image.open(self.image) as img:
                return img.convert("RGB")
        except (OSError, SyntaxError) as exc:
            raise DataError(f"image {self.image} (record {self.id!r}) fails to decode: {exc}") from exc

    def content_digest(self) -> str:
        """sha256 (hex) of the image content: the file's bytes, or the array's shape, dtype and pixels.

        Raises:
            DataError: the image file is missing or unreadable (the message names it and the record).
        """
        if isinstance(self.image, np.ndarray):
            arr = np.ascontiguousarray(self.image)
            h = hashlib.sha256(f"ndarray:{arr.shape}:{arr.dtype.str}:".encode())
            h.update(memoryview(arr).cast("B"))
            return h.hexdigest()
        try:
            return file_sha256(self.image)
        except OSError as exc:
            raise DataError(
                f"image {self.image} (record {self.id!r}) cannot be read to hash it: {exc}"
            ) from exc


@dataclass(frozen=True)
class Corpus:
    """A named, ordered collection of records; ``name`` is the dataset name (e.g. ``flickr8k``)."""

    name: str
    records: tuple[Record, ...]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    def subset(self, indices: list[int] | np.ndarray, name: str | None = None) -> Corpus:
        """The records at ``indices`` (in that order) as a new corpus."""
        return Corpus(name or self.name, tuple(self.records[int(i)] for i in indices))

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]


# ------------------------------------------------------------------------------------------ content hashes

_DIGESTS: dict[tuple, str] = {}
"""In-process memo: stat key (see :func:`_stat_key`) -> sha256 of the file's bytes."""


def _stat_key(path: Path) -> tuple:
    """``(absolute path, size, mtime_ns, inode, ctime_ns)``: changes whenever the file's bytes may have."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, memoised in-process by its stat key.

    A file whose stat key changes while it is hashed is hashed again (up to 3 times) so that the digest
    returned belongs to one consistent version of the file.

    Raises:
        OSError: the file is missing or unreadable.
    """
    key = _stat_key(Path(path))
    digest = _DIGESTS.get(key)
    if digest is not None:
        return digest
    for _ in range(3):
        digest = _hash_file(Path(path))
        after = _stat_key(Path(path))
        if after == key:
            _DIGESTS[key] = digest
            return digest
        key = after
    raise OSError(f"{path} keeps changing while it is hashed; wait until it is written completely")


def prime_digest_index(paths: Iterable[str | Path], index: str | Path) -> None:
    """Hash ``paths`` into the in-process memo, reusing the on-disk JSON ``index`` where its stat keys match.

    The index maps an absolute path to ``[size, mtime_ns, inode, ctime_ns, sha256]``; an entry is reused
    only when all four stat fields equal the file's current ones, otherwise the file is hashed again. The
    index is rewritten atomically (temporary file + rename), so concurrent processes never read a half
    written index (the last writer wins; every writer's entries are correct).

    Raises:
        DataError: a file is missing or unreadable (the message names it).
    """
    index = Path(index)
    try:
        stored = json.loads(index.read_text()) if index.is_file() else {}
        if not isinstance(stored, dict):
            stored = {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        stored = {}  # a damaged index only costs re-hashing
    fresh: dict[str, list] = {}
    for path in paths:
        try:
            key = _stat_key(Path(path))
        except OSError as exc:
            raise DataError(f"image {path} cannot be read to hash it: {exc}") from exc
        entry = stored.get(key[0])
        if isinstance(entry, list) and len(entry) == 5 and tuple(entry[:4]) == key[1:]:
            _DIGESTS.setdefault(key, str(entry[4]))
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise DataError(f"image {path} cannot be read to hash it: {exc}") from exc
        fresh[key[0]] = [*_stat_key(Path(path))[1:], digest]
    if fresh == {k: stored.get(k) for k in fresh}:
        return
    merged = {**stored, **fresh}
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(merged))
        os.replace(tmp, index)
    except OSError:  # a read-only cache only costs re-hashing next time
        tmp.unlink(missing_ok=True)
