"""Timing of :func:`m4i_utils.signals.text_similarity.caption_scores` on 6,000 synthetic caption /
5-reference sets.

Run: ``python benchmarks/bench_scoring.py`` (the environment has m4i_utils installed). Prints figures only
(no asserts).
"""

from __future__ import annotations

import random
import time

from m4i_utils.signals import text_similarity
from m4i_utils.signals.text_similarity import (
    ALL_FEATURES,
    AUTHORS_FEATURES,
    SCORE_FEATURES,
    caption_scores,
    reference_caption_scores,
)

_VOCAB = (
    "a an the man woman dog cat child boy girl two people group red blue green white black small large "
    "is are sitting standing running playing walking holding riding on in at with near next to of "
    "street park beach grass water table field snow ball bike horse frisbee car tree building wall"
)
WORDS = tuple(_VOCAB.split())


def synthetic(n: int, n_refs: int = 5, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """``n`` random hypotheses (4-15 words) with ``n_refs`` random references each (6-18 words)."""
    rng = random.Random(seed)

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    hyps = [sentence(4, 15) for _ in range(n)]
    refs = [[sentence(6, 18) for _ in range(n_refs)] for _ in range(n)]
    return hyps, refs


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def forced_parallel(hyps: list[str], refs: list[list[str]], feats: tuple[str, ...]) -> None:
    """``caption_scores`` with n_jobs=2 even below ``PARALLEL_MIN_PAIRS`` (to show the worker overhead)."""
    saved = text_similarity.PARALLEL_MIN_PAIRS
    text_similarity.PARALLEL_MIN_PAIRS = 0
    try:
        caption_scores(hyps, refs, feats, n_jobs=2)
    finally:
        text_similarity.PARALLEL_MIN_PAIRS = saved


def main(n: int = 6000) -> None:
    hyps, refs = synthetic(n)
    print(
        f"{n} synthetic hypotheses x 5 references (PARALLEL_MIN_PAIRS={text_similarity.PARALLEL_MIN_PAIRS})"
    )
    print(f"{'features':<40} {'mode':<34} {'seconds':>8} {'captions/s':>11}")
    for feats in (SCORE_FEATURES, AUTHORS_FEATURES, ALL_FEATURES):
        runs = [
            ("fast, default (n_jobs=2)", lambda f=feats: caption_scores(hyps, refs, f)),
            ("fast, 2 loky workers forced", lambda f=feats: forced_parallel(hyps, refs, f)),
            ("straightforward nltk/rouge-score", lambda f=feats: reference_caption_scores(hyps, refs, f)),
        ]
        for mode, fn in runs:
            sec = timed(fn)
            print(f"{','.join(feats):<40} {mode:<34} {sec:8.2f} {n / sec:11.0f}")
    for mode, fn in (
        ("fast, default, use_stemmer", lambda: caption_scores(hyps, refs, ALL_FEATURES, use_stemmer=True)),
        (
            "straightforward, use_stemmer",
            lambda: reference_caption_scores(hyps, refs, ALL_FEATURES, use_stemmer=True),
        ),
    ):
        sec = timed(fn)
        print(f"{','.join(ALL_FEATURES):<40} {mode:<34} {sec:8.2f} {n / sec:11.0f}")


if __name__ == "__main__":
    main()
