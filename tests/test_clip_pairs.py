"""Pair-level attacks on CLIP-like models (Ko et al.): CSA, AEA, WSA's pseudo-labels."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from m4i_utils.attacks import clip_pairs


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_csa_and_aea():
    a = _unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    b = _unit(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert clip_pairs.csa_scores(a, b).tolist() == [1.0, 0.0]
    views = np.stack([a, _unit(np.array([[0.0, 1.0], [1.0, 0.0]]))], axis=1)  # (2, 2 views, 2)
    assert clip_pairs.aea_scores(views, b).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="differ"):
        clip_pairs.csa_scores(a, b[:1])


def test_wsa_learns_from_pseudo_members():
    rng = np.random.default_rng(0)
    d, n = 8, 200
    direction = np.r_[1.0, np.zeros(2 * d - 1)]
    members = rng.normal(size=(n, 2 * d)) + 1.5 * direction
    nonmembers = rng.normal(size=(n, 2 * d))
    known = rng.normal(size=(n, 2 * d))
    # CSA correlates with the member direction (as a model's similarity would)
    csa = lambda f: 0.1 * f[:, 0] + rng.normal(0, 0.05, len(f))  # noqa: E731
    query = np.concatenate([members, nonmembers])
    scores, diag = clip_pairs.wsa_scores(query, csa(query), known, csa(known), seed=0)
    labels = np.r_[np.ones(n), np.zeros(n)]
    assert roc_auc_score(labels, scores) > 0.8
    assert diag["wsa_pseudo_members"] > 10 and diag["wsa_known"] == n
    with pytest.raises(ValueError, match="pseudo-members"):
        clip_pairs.wsa_scores(nonmembers, np.zeros(n), known, np.ones(n), seed=0)


def test_threshold_is_mu_plus_one_and_a_half_sigma():
    assert clip_pairs.nonmember_threshold(np.array([0.0, 2.0])) == pytest.approx(1.0 + 1.5 * 1.0)
