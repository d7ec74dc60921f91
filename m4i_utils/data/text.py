"""Offline tokenizer and the captioning vocabulary (authors' code: count >= 4 plus four special tokens)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nltk.tokenize import RegexpTokenizer

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)  # ids 0, 1, 2, 3 as in the authors' code

_TOKENIZER = RegexpTokenizer(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters/digits, keeps "n't"-style suffixes); needs no nltk data download."""
    return _TOKENIZER.tokenize(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id map with ``<pad>``=0, ``<start>``=1, ``<end>``=2, ``<unk>``=3 (authors' code)."""

    itos: tuple[str, ...]

    @classmethod
    def build(cls, captions: Iterable[str], threshold: int = 4) -> Vocabulary:
        """Tokens occurring at least ``threshold`` times (paper: 4), sorted by (-count, token)."""
        counts = Counter(tok for cap in captions for tok in tokenize(cap))
        kept = sorted((t for t, c in counts.items() if c >= threshold), key=lambda t: (-counts[t], t))
        return cls(SPECIALS + tuple(kept))

    @property
    def stoi(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """``<start> tokens <end>`` as ids; unknown tokens -> ``<unk>``; at most ``max_len`` tokens."""
        stoi = self.stoi
        toks = tokenize(text)
        if max_len is not None:
            toks = toks[:max_len]
        return [1] + [stoi.get(t, 3) for t in toks] + [2]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at ``<end>`` and dropping special tokens."""
        words = []
        for i in ids:
            i = int(i)
            if i == 2:
                break
            if i > 3:
                words.append(self.itos[i])
        return " ".join(words)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(list(self.itos)))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(tuple(json.loads(path.read_text())))
