"""Tests of the caption similarity scores: the fast path must equal per-sample nltk / rouge-score exactly."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_score.rouge_scorer import RougeScorer, _lcs_table

from m4i_utils.data.text import tokenize
from m4i_utils.signals import text_similarity
from m4i_utils.signals.text_similarity import (
    ALL_FEATURES,
    AUTHORS_FEATURES,
    SCORE_FEATURES,
    RougeTokenizer,
    _lcs_length,
    caption_scores,
    reference_caption_scores,
)

_VOCAB = "a the man dog cat is on in with red ball grass running sitting park two people don't near"
WORDS = tuple(_VOCAB.split())


def _samples(n: int = 50, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)

    def sent(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    hyps = [sent(1, 12) for _ in range(n)]
    refs = [[sent(0 if k == 4 else 3, 14) for k in range(rng.randint(1, 5))] for _ in range(n)]
    hyps[0] = ""  # empty hypothesis
    hyps[1] = "a"  # shorter than every n-gram order but one
    hyps[2] = "The man, with the dog!"  # punctuation and case
    refs[2] = ["the man with the dog", "A man walks a dog."]
    hyps[3] = refs[3][0]  # exact match
    return hyps, refs


def _nltk_rouge(hyps, refs, features, smoothing=False, reduce="mean") -> np.ndarray:
    """Independent straightforward computation written against the libraries' public APIs."""
    smooth = SmoothingFunction().method1 if smoothing else None
    rouge_types = [f for f in features if f.startswith("rouge")]
    scorer = RougeScorer(rouge_types, tokenizer=RougeTokenizer())
    out = np.zeros((len(hyps), len(features)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (h, rs) in enumerate(zip(hyps, refs, strict=True)):
            per_ref = [scorer.score(r, h) for r in rs]
            for j, f in enumerate(features):
                if f.startswith("bleu"):
                    n = int(f[4:])
                    out[i, j] = sentence_bleu(
                        [tokenize(r) for r in rs],
                        tokenize(h),
                        weights=(1.0 / n,) * n,
                        smoothing_function=smooth,
                    )
                else:
                    vals = [s[f].fmeasure for s in per_ref]
                    out[i, j] = np.mean(vals) if reduce == "mean" else max(vals)
    return out


@pytest.mark.parametrize("smoothing", [False, True])
@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_fast_scores_identical_to_libraries(smoothing: bool, reduce: str) -> None:
    hyps, refs = _samples()
    fast = caption_scores(hyps, refs, ALL_FEATURES, smoothing=smoothing, rouge_reduce=reduce, n_jobs=1)
    slow = _nltk_rouge(hyps, refs, ALL_FEATURES, smoothing=smoothing, reduce=reduce)
    assert fast.shape == (50, 6)
    np.testing.assert_array_equal(fast, slow)
    assert np.all(fast[0] == 0.0)  # empty hypothesis
    np.testing.assert_array_equal(fast[3, [0, 1, 2]], 1.0)  # exact match: BLEU 1 (when long enough)
    ref = reference_caption_scores(hyps, refs, ALL_FEATURES, smoothing=smoothing, rouge_reduce=reduce)
    np.testing.assert_array_equal(fast, ref)


def test_feature_subsets_and_stemming() -> None:
    hyps, refs = _samples(seed=1)
    full = caption_scores(hyps, refs, ALL_FEATURES, n_jobs=1)
    paper = caption_scores(hyps, refs, n_jobs=1)
    authors = caption_scores(hyps, refs, AUTHORS_FEATURES, n_jobs=1)
    np.testing.assert_array_equal(paper, full[:, [0, 1, 2, 5]])
    np.testing.assert_array_equal(authors, full[:, [3, 4, 5]])
    assert paper.shape[1] == len(SCORE_FEATURES)
    single = caption_scores(hyps, refs, ("bleu2",), n_jobs=1)
    np.testing.assert_array_equal(single[:, 0], full[:, 1])
    stem = caption_scores(hyps, refs, ALL_FEATURES, n_jobs=1, use_stemmer=True)
    stem_ref = reference_caption_scores(hyps, refs, ALL_FEATURES, use_stemmer=True)
    np.testing.assert_array_equal(stem, stem_ref)
    np.testing.assert_array_equal(stem[:, :3], full[:, :3])  # BLEU is never stemmed


def test_unsmoothed_bleu_matches_nltk_tiny_values() -> None:
    # no trigram match: nltk returns a tiny positive number (log of float min), not 0; we reproduce it
    hyps, refs = ["a man on a red dog"], [["a man sits on the grass"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sentence_bleu([tokenize(r) for r in refs[0]], tokenize(hyps[0]), weights=(1 / 3,) * 3)
    got = caption_scores(hyps, refs, ("bleu3",), n_jobs=1)[0, 0]
    assert got == expected and 0 < got < 1e-50


def test_parallel_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    hyps, refs = _samples(n=40, seed=2)
    serial = caption_scores(hyps, refs, ALL_FEATURES, n_jobs=1)
    monkeypatch.setattr(text_similarity, "PARALLEL_MIN_PAIRS", 0)
    parallel = caption_scores(hyps, refs, ALL_FEATURES, n_jobs=2)
    np.testing.assert_array_equal(serial, parallel)


def test_bit_parallel_lcs_matches_dp() -> None:
    rng = random.Random(4)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        expected = _lcs_table(a, b)[-1][-1] if a and b else 0
        assert _lcs_length(a, b) == expected


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="unknown caption feature"):
        caption_scores(["a"], [["a"]], ("meteor",))
    with pytest.raises(ValueError, match="hypotheses but"):
        caption_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty sequence"):
        caption_scores(["a"], ["a dog"])
    with pytest.raises(ValueError, match="rouge_reduce"):
        caption_scores(["a"], [["a"]], rouge_reduce="median")
