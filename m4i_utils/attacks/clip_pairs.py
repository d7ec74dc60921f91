"""Pair-level membership inference against CLIP-like models (Ko et al., "Practical Membership Inference
Attacks Against Large-Scale Multi-Modal Models: A Pilot Study", ICCV 2023).

Was the image-text pair ``(x, t)`` in the training set? A contrastively trained model pulls its training
pairs together, so the cosine similarity of their embeddings is higher than for unseen pairs:

* **CSA** (cosine similarity attack): the score is ``cos(f(x), g(t))`` (:func:`csa_scores`).
* **AEA** (augmentation-enhanced attack): the similarity averaged over the query image and augmented views
  of it, which smooths out a lucky or unlucky single view (:func:`aea_scores`; the paper does not give
  its exact aggregation: we use the mean over the original and the views).
* **WSA** (weakly supervised attack, :func:`wsa_scores`): the attacker knows some pairs that cannot be
  members (e.g. published after the model). Their CSA scores give a mean ``mu`` and standard deviation
  ``sigma``; suspect pairs with score ``>= mu + 1.5 sigma`` become pseudo-members, and a small MLP on the
  concatenated image and text embeddings learns to tell pseudo-members from the known non-members. It
  scores every suspect pair.

The CSA and AEA decision rule is WSA's threshold ``mu + 1.5 sigma`` of the known non-members (no member
label is used); WSA's is a member probability of 0.5.

Gomez (AAAI 2026) showed that such attacks look strong when the non-members come from another corpus and
fall to about chance when members and non-members are drawn from the same distribution, which is why
notebook 11 reports both settings and a blind baseline on each.
"""

from __future__ import annotations

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

WSA_SIGMAS = 1.5
"""Pseudo-members score at least ``mu + WSA_SIGMAS * sigma`` of the known non-members (Ko et al.)."""


def csa_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair's L2-normalised image and text embeddings (``(n, d)`` each)."""
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image embeddings {image_emb.shape} and text embeddings {text_emb.shape} differ")
    return np.einsum("nd,nd->n", image_emb, text_emb).astype(np.float64)


def aea_scores(view_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Mean cosine similarity over each query's views (``view_emb``: ``(n, views, d)``, view 0 the
    original image) and its text embedding (``(n, d)``)."""
    if view_emb.ndim != 3 or view_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(f"view embeddings {view_emb.shape} do not match text embeddings {text_emb.shape}")
    return np.einsum("nvd,nd->nv", view_emb, text_emb).mean(1).astype(np.float64)


def nonmember_threshold(known_scores: np.ndarray, sigmas: float = WSA_SIGMAS) -> float:
    """``mu + sigmas * sigma`` of the known non-members' scores."""
    return float(np.mean(known_scores) + sigmas * np.std(known_scores))


def wsa_scores(
    query_feats: np.ndarray,
    query_csa: np.ndarray,
    known_feats: np.ndarray,
    known_csa: np.ndarray,
    seed: int,
    min_pseudo: int = 5,
) -> tuple[np.ndarray, dict]:
    """WSA: member probabilities of the suspect pairs from an MLP trained on pseudo-labels.

    Args:
        query_feats: ``(n, 2d)`` image || text embeddings of the suspect pairs.
        query_csa: their CSA scores.
        known_feats, known_csa: the same for the known non-members (never queried).
        seed: the MLP's seed.
        min_pseudo: fewest pseudo-members to train on.
    Returns:
        The scores and diagnostics (threshold, number of pseudo-members).
    Raises:
        ValueError: fewer than ``min_pseudo`` suspect pairs pass the threshold (WSA cannot be trained; the
            message says how many did).
    """
    threshold = nonmember_threshold(known_csa)
    pseudo = query_csa >= threshold
    if pseudo.sum() < min_pseudo:
        raise ValueError(
            f"WSA: only {int(pseudo.sum())} of {len(query_csa)} suspect pairs reach the known non-members' "
            f"mu + {WSA_SIGMAS} sigma = {threshold:.4f}; it needs >= {min_pseudo} pseudo-members to train"
        )
    x = np.concatenate([query_feats[pseudo], known_feats])
    y = np.r_[np.ones(int(pseudo.sum()), int), np.zeros(len(known_feats), int)]
    clf = make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(64,), alpha=1e-3, max_iter=500, early_stopping=False, random_state=seed
        ),
    )
    clf.fit(x, y)
    diag = {
        "wsa_threshold": threshold,
        "wsa_pseudo_members": int(pseudo.sum()),
        "wsa_known": len(known_feats),
    }
    return clf.predict_proba(query_feats)[:, 1].astype(np.float64), diag
