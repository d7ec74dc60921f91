"""Per-sample caption similarity scores for the metric-based attack (M4I paper, section 3.1).

The metric-based (MB) attack scores the caption a captioning model generates for a query image against that
image's ground-truth references. The paper uses BLEU-1, BLEU-2, BLEU-3 and ROUGE-L (:data:`SCORE_FEATURES`);
the authors' active code uses ROUGE-1/2/L F-scores averaged over the references (:data:`AUTHORS_FEATURES`).

Conventions (chosen here; the paper does not state them):

* Tokenisation: :func:`m4i_utils.data.text.tokenize` (lower-case words, "n't"-style suffixes kept) for
  BLEU *and* ROUGE, so both metrics see the same tokens. rouge-score's default tokenizer would split
  "don't" into "don" + "t"; ours keeps it whole.
* BLEU-n: nltk ``sentence_bleu`` with uniform weights over 1..n, all references at once (clipped counts
  against every reference, closest reference length for the brevity penalty), no smoothing (paper, authors'
  commented code); ``smoothing=True`` uses ``SmoothingFunction().method1`` (epsilon 0.1). An empty hypothesis
  scores 0.
  Without smoothing a missing higher-order match gives nltk's tiny positive value (about 1e-100), not 0.
* ROUGE-N / ROUGE-L: rouge-score F-measure against each reference, then the mean over references (authors'
  code) or the max (``rouge_reduce="max"``, as ``RougeScorer.score_multi``). No stemming by default, so ROUGE
  and BLEU count the same tokens; ``use_stemmer=True`` applies rouge-score's rule (Porter stem of tokens
  longer than 3 characters) on top of our tokenizer.

:func:`caption_scores` gives results identical to the straightforward per-sample nltk / rouge-score calls (see
:func:`reference_caption_scores`, kept for tests and benchmarks) but computes each pair's n-gram counts once,
uses a bit-parallel LCS and parallelises over chunks with joblib.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from nltk.translate.bleu_score import (
    SmoothingFunction,
    closest_ref_length,
    corpus_bleu,
    modified_precision,
    sentence_bleu,
)

from m4i_utils.data.text import tokenize

Tokenize = Callable[[str], list[str]]

SCORE_FEATURES: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "rougeL")
AUTHORS_FEATURES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
ALL_FEATURES: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "rouge1", "rouge2", "rougeL")

_SMOOTH_EPSILON = 0.1  # nltk SmoothingFunction().method1 default
# One process scores ~7,000 pairs/s (all six features, 5 references); starting loky workers costs ~1 s, so
# below this many pairs a single process is faster even with n_jobs > 1.
PARALLEL_MIN_PAIRS = 10_000


def bleu_weights(n: int) -> tuple[float, ...]:
    """Uniform BLEU-n weights ``(1/n, ..., 1/n)`` as passed to nltk ``sentence_bleu``."""
    return (1.0 / n,) * n


def _parse_features(features: Sequence[str]) -> list[tuple[str, int]]:
    """``["bleu2", "rougeL"]`` -> ``[("bleu", 2), ("rougeL", 0)]``; raises ValueError on unknown names."""
    parsed = []
    for name in features:
        if name == "rougeL":
            parsed.append(("rougeL", 0))
        elif name.startswith("bleu") and name[4:].isdigit() and int(name[4:]) >= 1:
            parsed.append(("bleu", int(name[4:])))
        elif name.startswith("rouge") and name[5:].isdigit() and int(name[5:]) >= 1:
            parsed.append(("rouge", int(name[5:])))
        else:
            raise ValueError(
                f"unknown caption feature {name!r}; use bleuN, rougeN or rougeL (e.g. {ALL_FEATURES})"
            )
    return parsed


@lru_cache(maxsize=1)
def _porter():
    from nltk.stem import porter

    return porter.PorterStemmer()


@lru_cache(maxsize=200_000)
def _stem(token: str) -> str:
    """rouge-score's stemming rule: Porter stem of tokens longer than 3 characters."""
    return _porter().stem(token) if len(token) > 3 else token


class RougeTokenizer:
    """:func:`m4i_utils.data.text.tokenize` as a rouge-score tokenizer (has ``tokenize``), optional
    stemming."""

    def __init__(self, use_stemmer: bool = False) -> None:
        self.use_stemmer = use_stemmer

    def tokenize(self, text: str) -> list[str]:
        toks = tokenize(text)
        return [_stem(t) for t in toks] if self.use_stemmer else toks


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (bit-parallel, Hyyrö 2004); equals rouge-score's DP table."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _fmeasure(precision: float, recall: float) -> float:
    """rouge-score's ``scoring.fmeasure`` (same float operations)."""
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _ngram_counts(tokens: Sequence[str], max_n: int) -> Counter:
    """All n-grams of orders 1..max_n in one Counter (tuple keys; orders differ by key length)."""
    grams: list[tuple[str, ...]] = []
    for n in range(1, max_n + 1):
        grams.extend(zip(*(tokens[i:] for i in range(n)), strict=False))
    return Counter(grams)


def _bleu_from_stats(
    numerators: list[int],
    denominators: list[int],
    n: int,
    bp: float,
    smoothing: bool,
) -> float:
    """nltk ``corpus_bleu`` for one sentence from its clipped counts (same float operations as nltk)."""
    if numerators[0] == 0:
        return 0.0
    w = 1.0 / n
    logs = []
    for k in range(n):
        num, den = numerators[k], denominators[k]
        if num != 0:
            p = num / den
        elif smoothing:
            p = (num + _SMOOTH_EPSILON) / den
        else:
            p = sys.float_info.min
        if p > 0:
            logs.append(w * math.log(p))
    return float(bp * math.exp(math.fsum(logs)))


def _score_chunk(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    features: tuple[str, ...],
    smoothing: bool,
    rouge_reduce: str,
    use_stemmer: bool,
) -> np.ndarray:
    """Scores of one chunk of pairs, shape ``(len(hypotheses), len(features))``."""
    from nltk.translate.bleu_score import brevity_penalty, closest_ref_length

    parsed = _parse_features(features)
    bleu_orders = [n for kind, n in parsed if kind == "bleu"]
    rouge_orders = [n for kind, n in parsed if kind == "rouge"]
    want_lcs = any(kind == "rougeL" for kind, _ in parsed)
    max_bleu = max(bleu_orders, default=0)
    # Without stemming ROUGE and BLEU see the same tokens and share one n-gram Counter per sentence.
    shared = not use_stemmer
    max_shared = max(max_bleu, max(rouge_orders, default=0)) if shared else max_bleu
    reduce = max if rouge_reduce == "max" else (lambda vals: sum(vals) / len(vals))
    rtok = RougeTokenizer(use_stemmer)

    out = np.zeros((len(hypotheses), len(parsed)), dtype=np.float64)
    for row, (hyp_text, ref_texts) in enumerate(zip(hypotheses, references, strict=True)):
        hyp = tokenize(hyp_text)
        refs = [tokenize(r) for r in ref_texts]
        hyp_c = _ngram_counts(hyp, max_shared) if max_shared else Counter()
        ref_cs = [_ngram_counts(r, max_shared) for r in refs] if max_shared else []

        bleu: dict[int, float] = {}
        if max_bleu:
            nums = [0] * max_bleu
            for gram, cnt in hyp_c.items():
                k = len(gram)
                if k <= max_bleu:
                    best = max((rc.get(gram, 0) for rc in ref_cs), default=0)
                    nums[k - 1] += min(cnt, best)
            dens = [max(1, len(hyp) - k + 1) for k in range(1, max_bleu + 1)]
            bp = brevity_penalty(closest_ref_length(refs, len(hyp)), len(hyp))
            for n in bleu_orders:
                bleu[n] = _bleu_from_stats(nums, dens, n, bp, smoothing)

        rouge: dict[int, float] = {}
        rouge_l = 0.0
        if rouge_orders or want_lcs:
            r_hyp = hyp if shared else rtok.tokenize(hyp_text)
            r_refs = refs if shared else [rtok.tokenize(r) for r in ref_texts]
            if rouge_orders:
                if shared:
                    r_hyp_c, r_ref_cs = hyp_c, ref_cs
                else:
                    top = max(rouge_orders)
                    r_hyp_c = _ngram_counts(r_hyp, top)
                    r_ref_cs = [_ngram_counts(r, top) for r in r_refs]
                for n in rouge_orders:
                    pred_count = max(len(r_hyp) - n + 1, 0)
                    vals = []
                    for ref, rc in zip(r_refs, r_ref_cs, strict=True):
                        inter = sum(min(c, rc.get(g, 0)) for g, c in r_hyp_c.items() if len(g) == n)
                        precision = inter / max(pred_count, 1)
                        recall = inter / max(len(ref) - n + 1, 1)
                        vals.append(_fmeasure(precision, recall))
                    rouge[n] = float(reduce(vals)) if vals else 0.0
            if want_lcs:
                vals = []
                for ref in r_refs:
                    if not ref or not r_hyp:
                        vals.append(0)
                        continue
                    lcs = _lcs_length(ref, r_hyp)
                    vals.append(_fmeasure(lcs / len(r_hyp), lcs / len(ref)))
                rouge_l = float(reduce(vals)) if vals else 0.0

        for col, (kind, n) in enumerate(parsed):
            out[row, col] = bleu[n] if kind == "bleu" else rouge[n] if kind == "rouge" else rouge_l
    return out


def caption_scores(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    features: Sequence[str] = SCORE_FEATURES,
    smoothing: bool = False,
    rouge_reduce: str = "mean",
    n_jobs: int = 2,
    use_stemmer: bool = False,
) -> np.ndarray:
    """Similarity of each generated caption to its references: the MB attack's features (paper section 3.1).

    Args:
        hypotheses: generated captions, one per query image.
        references: the ground-truth captions of each image (any number >= 1 per image).
        features: names among ``bleuN`` (BLEU with uniform weights up to N), ``rougeN`` and ``rougeL``;
            default :data:`SCORE_FEATURES` (paper); :data:`AUTHORS_FEATURES` is the authors' active code.
        smoothing: BLEU smoothing ``SmoothingFunction().method1``; off by default (paper).
        rouge_reduce: ``"mean"`` (authors' code) or ``"max"`` of the per-reference ROUGE F-measures.
        n_jobs: worker processes (joblib/loky, -1 = all cores) used when there are at least
            :data:`PARALLEL_MIN_PAIRS` pairs; 1 always computes in this process.
        use_stemmer: Porter-stem ROUGE tokens as rouge-score does (default off; BLEU is never stemmed).
    Returns:
        ``float64`` array of shape ``(len(hypotheses), len(features))``, identical to per-sample nltk
        ``sentence_bleu`` / rouge-score ``RougeScorer`` results (:func:`reference_caption_scores`).
    """
    features = tuple(features)
    _parse_features(features)
    if rouge_reduce not in ("mean", "max"):
        raise ValueError(f"rouge_reduce must be 'mean' or 'max', got {rouge_reduce!r}")
    if isinstance(hypotheses, str):
        raise ValueError("hypotheses must be a sequence of captions, not one string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty sequence of captions, got {refs!r}")
    hypotheses = list(hypotheses)
    references = [list(r) for r in references]
    args = (features, smoothing, rouge_reduce, use_stemmer)
    n = len(hypotheses)
    if n_jobs == 1 or n < max(PARALLEL_MIN_PAIRS, 2):
        return _score_chunk(hypotheses, references, *args)

    from joblib import Parallel, cpu_count, delayed

    workers = cpu_count() if n_jobs < 0 else n_jobs
    n_chunks = max(1, min(workers, n))
    bounds = np.linspace(0, n, n_chunks + 1).astype(int)
    parts = Parallel(n_jobs=workers, backend="loky")(
        delayed(_score_chunk)(hypotheses[a:b], references[a:b], *args)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    )
    return np.concatenate(parts, axis=0)


def reference_caption_scores(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    features: Sequence[str] = SCORE_FEATURES,
    smoothing: bool = False,
    rouge_reduce: str = "mean",
    use_stemmer: bool = False,
) -> np.ndarray:
    """The straightforward per-sample nltk ``sentence_bleu`` / rouge-score computation (tests, benchmarks).

    Args and returns as :func:`caption_scores` (single process).
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_score.rouge_scorer import RougeScorer

    parsed = _parse_features(features)
    rouge_types = [f for f, (kind, _) in zip(features, parsed, strict=True) if kind != "bleu"]
    scorer = RougeScorer(rouge_types, tokenizer=RougeTokenizer(use_stemmer)) if rouge_types else None
    smooth = SmoothingFunction().method1 if smoothing else None
    out = np.zeros((len(hypotheses), len(parsed)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nltk's "0 counts of n-gram overlaps" warning
        for i, (hyp, refs) in enumerate(zip(hypotheses, references, strict=True)):
            hyp_t = tokenize(hyp)
            refs_t = [tokenize(r) for r in refs]
            per_ref = [scorer.score(r, hyp) for r in refs] if scorer else []
            for j, (name, (kind, n)) in enumerate(zip(features, parsed, strict=True)):
                if kind == "bleu":
                    out[i, j] = sentence_bleu(
                        refs_t, hyp_t, weights=bleu_weights(n), smoothing_function=smooth
                    )
                else:
                    vals = [s[name].fmeasure for s in per_ref]
                    out[i, j] = max(vals) if rouge_reduce == "max" else float(np.mean(vals))
    return out


# ------------------------------------------------------------------------------------------- utility
# Corpus-level utility of a generator (captioner, report generator) and per-sample scores used for it;
# ``tokenize`` is the tokenizer of BLEU (ROUGE-L uses rouge-score's own on the given strings).


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(hyps: list[str], refs: list[tuple[str, ...]]) -> np.ndarray:
    """Per-sample ROUGE-L F1, max over the references (rouge-score, no stemming)."""
    scorer = _rouge()
    return np.array(
        [max(scorer.score(r, h)["rougeL"].fmeasure for r in rs) for h, rs in zip(hyps, refs, strict=True)]
    )


def bleu1(hyps: list[str], refs: list[tuple[str, ...]], tokenize: Tokenize = tokenize) -> np.ndarray:
    """Per-sample BLEU-1 (nltk ``sentence_bleu``, smoothing method 1, all references)."""
    sm = SmoothingFunction().method1
    return np.array(
        [
            sentence_bleu([tokenize(r) for r in rs], tokenize(h), weights=(1, 0, 0, 0), smoothing_function=sm)
            for h, rs in zip(hyps, refs, strict=True)
        ]
    )


def utility_metrics(
    hyps: list[str], refs: list[tuple[str, ...]], tokenize: Tokenize = tokenize
) -> dict[str, float]:
    """Corpus BLEU-1..4 (nltk ``corpus_bleu``) and mean per-sample ROUGE-L (max over references)."""
    r_tok = [[tokenize(r) for r in rs] for rs in refs]
    h_tok = [tokenize(h) for h in hyps]
    out = {}
    for n in range(1, 5):
        out[f"bleu{n}"] = float(corpus_bleu(r_tok, h_tok, weights=tuple([1.0 / n] * n)))
    out["rougeL"] = float(rouge_l(hyps, refs).mean())
    return out


def bleu1_parts(hyps: list[str], refs: list[tuple[str, ...]], tokenize: Tokenize = tokenize) -> np.ndarray:
    """Per-sample (clipped unigram matches, hypothesis length, closest reference length): corpus BLEU-1 is
    ``BP * sum(matches) / sum(hyp_len)`` with ``BP = min(1, exp(1 - sum(ref_len) / sum(hyp_len)))``."""
    rows = []
    for h, rs in zip(hyps, refs, strict=True):
        h_tok, r_tok = tokenize(h), [tokenize(r) for r in rs]
        p = modified_precision(r_tok, h_tok, 1)
        rows.append((p.numerator, len(h_tok), closest_ref_length(r_tok, len(h_tok))))
    return np.asarray(rows, dtype=np.float64)


def corpus_bleu1(parts: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1 of ``parts`` (..., samples, 3) summed over the samples axis."""
    m, h, r = (parts[..., k].sum(-1) for k in range(3))
    bp = np.where(h > r, 1.0, np.exp(1 - r / np.maximum(h, 1e-9)))
    return bp * m / np.maximum(h, 1e-9)


def paired_difference(
    hyps: list[str],
    other: list[str],
    refs: list[tuple[str, ...]],
    n_bootstrap: int = 1000,
    seed: int = 0,
    tokenize: Tokenize = tokenize,
) -> dict[str, float]:
    """Captioner minus baseline in corpus BLEU-1 and mean ROUGE-L, with 95% paired bootstrap intervals.

    Test images are resampled with replacement and both systems are scored on the same resample, so the
    interval reflects which images happened to be in the test split (not the training seed).
    """
    a, b = bleu1_parts(hyps, refs, tokenize), bleu1_parts(other, refs, tokenize)
    ra, rb = rouge_l(hyps, refs), rouge_l(other, refs)
    idx = np.random.default_rng(seed).integers(0, len(refs), (n_bootstrap, len(refs)))
    d_bleu = corpus_bleu1(a[idx]) - corpus_bleu1(b[idx])
    d_rouge = ra[idx].mean(1) - rb[idx].mean(1)
    out = {
        "bleu1_diff": float(corpus_bleu1(a) - corpus_bleu1(b)),
        "rougeL_diff": float(ra.mean() - rb.mean()),
    }
    for name, d in (("bleu1_diff", d_bleu), ("rougeL_diff", d_rouge)):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = (float(x) for x in np.quantile(d, [0.025, 0.975]))
    return out
