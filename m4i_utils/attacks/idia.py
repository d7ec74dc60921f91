"""The identity inference attack (IDIA) of Hintersdorf et al., "Does CLIP Know My Face?" (JAIR 2024).

The attacker holds ``k`` images of a person (never the ones the model trained on) and the person's name. It
asks the CLIP-like model, zero-shot, which of many candidate names fits each image best, once per prompt
template ("a photo of <name>", "actor <name>", ...): only the top-1 name per (image, template) is used,
so the attack is black-box (Section 3 of the paper). Per template, the person's prediction is the modal
name over the ``k`` images, and a tie counts as wrong; the person is predicted to have been in the
training data iff at least ``tau`` templates predict the right name (``tau = 1`` in the authors' code).

The paper reports TPR / FPR / accuracy against ``k`` and against the number of injected images ``N``; it
gives no ROC. Sweeping ``tau`` over 0..21 gives one (:func:`tau_curve`; beyond the paper).

The functions here work on embeddings, so the same code serves the procedural faces world and LFW
(:mod:`m4i_utils.experiments.clip_study`).
"""

from __future__ import annotations

import numpy as np

TEMPLATES: tuple[str, ...] = (
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a portrait of {}.",
    "a close-up photo of {}.",
    "a cropped photo of {}.",
    "a photo of the face of {}.",
    "a person named {}.",
    "a photo of a person named {}.",
    "{}.",
    "actor {}.",
    "actress {}.",
    "a photo of the actor {}.",
    "a photo of the actress {}.",
    "a good photo of {}.",
    "a bright photo of {}.",
    "a dark photo of {}.",
    "a blurry photo of {}.",
    "a low resolution photo of {}.",
    "a headshot of {}.",
    "a snapshot of {}.",
)
"""The 21 prompt templates of the attack, in the style of the paper's (its list is in the authors' code)."""


def prompts(names: list[str]) -> list[str]:
    """Every template filled with every name, template-major: prompt ``t * len(names) + m``."""
    return [t.format(n) for t in TEMPLATES for n in names]


def top1_names(image_emb: np.ndarray, text_emb: np.ndarray, n_names: int) -> np.ndarray:
    """The zero-shot top-1 name per image and template.

    Args:
        image_emb: ``(..., d)`` L2-normalised image embeddings.
        text_emb: ``(len(TEMPLATES) * n_names, d)`` L2-normalised embeddings of :func:`prompts`.
        n_names: the number of candidate names.
    Returns:
        ``(..., len(TEMPLATES))`` int: index of the best-matching candidate name per template.
    """
    t = len(TEMPLATES)
    if text_emb.shape[0] != t * n_names:
        raise ValueError(f"text_emb has {text_emb.shape[0]} rows; expected {t} templates x {n_names} names")
    lead = image_emb.shape[:-1]
    flat = image_emb.reshape(-1, image_emb.shape[-1])
    out = np.empty((flat.shape[0], t), np.int64)
    for j in range(t):
        out[:, j] = np.argmax(flat @ text_emb[j * n_names : (j + 1) * n_names].T, axis=1)
    return out.reshape(*lead, t)


def correct_templates(preds: np.ndarray, true_name: np.ndarray) -> np.ndarray:
    """Per person, the number of templates whose modal prediction over the person's images is their name.

    Args:
        preds: ``(people, k, templates)`` top-1 name indices of the ``k`` images used.
        true_name: ``(people,)`` index of each person's own name among the candidates.
    Returns:
        ``(people,)`` int in ``0..templates``. A template counts only if the true name is the unique mode over
        the ``k`` images: a tie between the true name and another counts as wrong, as in the paper.
    """
    hits = preds == true_name[:, None, None]  # (people, k, templates)
    n_true = hits.sum(1)  # votes for the true name per template
    votes = (preds[:, :, None, :] == preds[:, None, :, :]).sum(2)  # votes for each image's own prediction
    best_other = np.where(hits, 0, votes).max(1)  # the largest vote count of any other name
    return ((n_true > best_other) & (n_true > 0)).sum(1)


def draw_scores(
    top1: np.ndarray, true_name: np.ndarray, k: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Correct-template counts for ``draws`` random draws of ``k`` of each person's attack images.

    Args:
        top1: ``(people, n_images, templates)`` top-1 names of every attack image (:func:`top1_names`).
        true_name: ``(people,)`` each person's own name index.
        k: images per draw (at most ``n_images``), drawn without replacement, independently per person.
        draws: number of draws.
        rng: the draws' generator.
    Returns:
        ``(draws, people)`` int: correct templates per draw and person.
    """
    people, n_images, _ = top1.shape
    if not 1 <= k <= n_images:
        raise ValueError(f"k={k}: each person has {n_images} attack images; choose 1 <= k <= {n_images}")
    out = np.empty((draws, people), np.int64)
    for d in range(draws):
        idx = np.argsort(rng.random((people, n_images)), axis=1)[:, :k]
        out[d] = correct_templates(np.take_along_axis(top1, idx[:, :, None], axis=1), true_name)
    return out


def rates(scores: np.ndarray, member: np.ndarray, tau: int) -> dict[str, float]:
    """TPR, FPR and accuracy of the rule "member iff at least ``tau`` templates are correct", averaged over
    the draws of ``scores`` (``(draws, people)``), with the across-draw standard deviation of each."""
    pred = scores >= tau
    member = np.asarray(member, bool)
    tpr = pred[:, member].mean(1)
    fpr = pred[:, ~member].mean(1)
    acc = (pred == member[None, :]).mean(1)
    return {
        "tpr": float(tpr.mean()),
        "tpr_sd": float(tpr.std()),
        "fpr": float(fpr.mean()),
        "fpr_sd": float(fpr.std()),
        "accuracy": float(acc.mean()),
        "accuracy_sd": float(acc.std()),
    }


def tau_curve(scores: np.ndarray, member: np.ndarray) -> list[dict[str, float]]:
    """TPR and FPR for every ``tau`` from ``templates + 1`` (nobody is a member) down to 0 (everybody is):
    the ROC of the correct-template count (beyond the paper)."""
    return [{"tau": tau, **rates(scores, member, tau)} for tau in range(len(TEMPLATES) + 1, -1, -1)]
