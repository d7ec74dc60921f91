"""Model-free baselines that every member / non-member set must be checked with (Das et al., "blind" MIAs).

A blind classifier sees only the data (image and caption features), never the model. If it separates target
members from target non-members, the sets differ in distribution and an attack's success is not evidence of
membership leakage (docs/paper_notes.md, section 'Evaluation practice'). With i.i.d. splits it must sit at
chance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler

from m4i_utils.attacks.base import Attack
from m4i_utils.core.metrics import AttackResult
from m4i_utils.data.records import Corpus
from m4i_utils.data.text import tokenize


def data_features(corpus: Corpus, thumb: int = 8) -> sparse.csr_matrix:
    """Image thumbnail pixels, colour statistics and bag of words of the reference captions, one row each
    (pixels only when no record has a caption, e.g. the images of a masked autoencoder)."""
    pix = []
    for rec in corpus.records:
        img = np.asarray(rec.load_image().resize((thumb, thumb)), dtype=np.float32) / 255.0
        pix.append(np.concatenate([img.ravel(), img.mean((0, 1)), img.std((0, 1))]))
    if not any(rec.captions for rec in corpus.records):
        return sparse.csr_matrix(np.stack(pix))
    words = CountVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, min_df=2)
    bow = words.fit_transform([" ".join(rec.captions) for rec in corpus.records])
    return sparse.hstack([sparse.csr_matrix(np.stack(pix)), bow]).tocsr()


def blind_baseline(
    members: Corpus,
    nonmembers: Corpus,
    seed: int,
    meta: dict,
    n_folds: int = 5,
    groups: np.ndarray | None = None,
) -> AttackResult:
    """Out-of-fold logistic-regression membership scores from the data alone (no model is queried).

    Args:
        members, nonmembers: the two sets to tell apart (e.g. target members vs target non-members).
        seed: seeds the folds.
        meta: result metadata (experiment, dataset, ...); ``attack`` is set to ``blind_baseline``.
        groups: one group per record (members first, then non-members), e.g. the patient of each study:
            records of one group never fall in different folds, so that the classifier cannot recognise a
            patient rather than learn membership.
    Returns:
        An :class:`AttackResult` with out-of-fold probabilities as scores and threshold 0.5.
    """
    both = Corpus("blind", members.records + nonmembers.records)
    x = data_features(both)
    y = np.r_[np.ones(len(members), int), np.zeros(len(nonmembers), int)]
    model = make_pipeline(MaxAbsScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if groups is None:
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:
        if len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries for {len(y)} records")
        folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, groups=groups, cv=folds, method="predict_proba")[:, 1]
    return AttackResult(scores=scores, labels=y, threshold=0.5, meta={**meta, "attack": "blind_baseline"})


class BlindLogisticAttack(Attack):
    """Blind baseline as a shadow-trained attack: a logistic regression on features of the query data alone
    (e.g. text and reference-signal statistics), fitted on the shadow's members / non-members and applied
    to the target's. The model is never queried, so anything it achieves is distribution shift, not
    membership. Score: the member probability; decision rule: 0.5.
    """

    name = "blind_logreg"
    access = "none (data only)"
    threshold = 0.5

    def __init__(self, C: float = 0.1, max_iter: int = 2000) -> None:
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))

    @classmethod
    def from_config(cls, cfg, **options: Any) -> BlindLogisticAttack:
        return cls(**options)

    def fit(self, x: np.ndarray, labels: np.ndarray) -> BlindLogisticAttack:
        self.model.fit(x, labels)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)[:, 1]
