"""End to end on a planted leak: a captioner that memorises its members is caught by the metric-based attack
(shadow-trained SVM on BLEU/ROUGE, run through the one harness); a never-trained one is not.

Captions are random word sequences that the image features cannot predict, so the only way a model can
reproduce a record's captions is to have memorised them: members leak, non-members cannot.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from m4i_utils.attacks.base import Signals
from m4i_utils.core.config import resolve_profile
from m4i_utils.data.records import Corpus, Record
from m4i_utils.data.text import Vocabulary
from m4i_utils.experiments.harness import evaluate
from m4i_utils.models.captioner import EncoderDecoder, decode, encode_captions, train_model
from m4i_utils.signals.text_similarity import caption_scores

WORDS = [f"w{i}" for i in range(40)]


def _world(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, Corpus]:
    feats = torch.as_tensor(rng.normal(size=(n, 16)), dtype=torch.float32)
    recs = []
    for i in range(n):
        caps = tuple(" ".join(rng.choice(WORDS, size=6)) for _ in range(5))
        recs.append(Record(f"r{i}", np.zeros((2, 2, 3), np.uint8), caps))
    return feats, Corpus("planted", recs)


def _signals(cfg, seed: int, epochs: int) -> Signals:
    """Train a tiny captioner on the first half of a fresh world; BLEU/ROUGE signals of both halves."""
    rng = np.random.default_rng(seed)
    feats, corpus = _world(rng, 80)
    members, nonmembers = corpus.subset(range(40), "m"), corpus.subset(range(40, 80), "n")
    vocab = Vocabulary.build((c for r in corpus.records for c in r.captions), threshold=1)
    rows, tokens = encode_captions(members, vocab, 10)
    torch.manual_seed(seed)
    model = EncoderDecoder(16, len(vocab), embed_size=32, hidden_size=64)
    if epochs:
        train_model(model, feats[:40], rows, tokens, dataclasses.replace(cfg, epochs=epochs), seed=seed)
    hyps = decode(model, feats, vocab, max_len=8)
    refs = [r.captions for r in members.records + nonmembers.records]
    x = caption_scores(hyps, refs, features=("bleu1", "bleu2", "bleu3", "rougeL"), n_jobs=1)
    return Signals(x, np.r_[np.ones(40, int), np.zeros(40, int)])


def test_memorising_captioner_leaks_and_untrained_one_does_not() -> None:
    torch.set_num_threads(1)
    cfg = resolve_profile("smoke", {"batch_size": 16, "lr": 5e-3, "optimizer": "adam", "n_bootstrap": 50})
    meta = {"experiment": "planted"}
    _, leak = evaluate(cfg, "mb_svm", _signals(cfg, 1, 80), _signals(cfg, 2, 80), meta)  # shadow, target
    _, none = evaluate(cfg, "mb_svm", _signals(cfg, 3, 0), _signals(cfg, 4, 0), meta)
    print(f"memorising target: AUC {leak['auc']:.3f}; never-trained target: AUC {none['auc']:.3f}")
    assert leak["auc"] > 0.8 and leak["auc_verdict"] == "above chance", leak
    assert 0.3 < none["auc"] < 0.7, none
