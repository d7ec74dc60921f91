"""The common record type every image-caption loader returns (real and synthetic alike)."""

from __future__ import annotations

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
