"""The identity inference attack (Hintersdorf et al.): modal vote with ties wrong, draws, rates, tau ROC."""

import numpy as np
import pytest

from m4i_utils.attacks import idia


def test_modal_vote_counts_a_tie_as_wrong():
    # one person, 4 images, 3 templates; the true name is 7
    preds = np.array([[[7, 7, 1], [7, 2, 1], [3, 7, 7], [3, 2, 7]]])
    # template 0: 7 twice, 3 twice -> tie -> wrong; template 1: 7 twice, 2 twice -> wrong;
    # template 2: 1 twice, 7 twice -> wrong
    assert idia.correct_templates(preds, np.array([7])).tolist() == [0]
    preds[0, 3, 0] = 7  # template 0: 7 three times -> right
    preds[0, 1, 2] = 5  # template 2: 7 twice, 1 once, 5 once -> right
    assert idia.correct_templates(preds, np.array([7])).tolist() == [2]
    # a unique mode that is another name is wrong; the true name with one vote of k=1 is right
    assert idia.correct_templates(np.array([[[4], [4], [7]]]), np.array([7])).tolist() == [0]
    assert idia.correct_templates(np.array([[[7]], [[3]]]), np.array([7, 7])).tolist() == [1, 0]


def test_top1_names_picks_the_matching_prompt_per_template():
    rng = np.random.default_rng(0)
    n_names, d = 5, 16
    text = rng.normal(size=(len(idia.TEMPLATES) * n_names, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    # an image equal to the prompt of name 3 under template 0 picks name 3 there
    image = text[3][None, None, :]
    top = idia.top1_names(image, text, n_names)
    assert top.shape == (1, 1, len(idia.TEMPLATES)) and top[0, 0, 0] == 3
    with pytest.raises(ValueError, match="templates x 4 names"):
        idia.top1_names(image, text, 4)


def test_draws_are_seeded_and_more_images_help_a_weak_signal():
    rng = np.random.default_rng(1)
    people, n_img, t = 40, 30, len(idia.TEMPLATES)
    truth = np.arange(people)
    # each image names its person with probability 0.3, else a random one of 1,000 names
    right = rng.random((people, n_img, t)) < 0.3
    top1 = np.where(right, truth[:, None, None], rng.integers(people, 1000, (people, n_img, t)))
    a = idia.draw_scores(top1, truth, 5, 4, np.random.default_rng(3))
    b = idia.draw_scores(top1, truth, 5, 4, np.random.default_rng(3))
    assert a.shape == (4, people) and np.array_equal(a, b)
    k1 = idia.draw_scores(top1, truth, 1, 10, np.random.default_rng(4)).mean()
    k20 = idia.draw_scores(top1, truth, 20, 10, np.random.default_rng(4)).mean()
    assert k1 == pytest.approx(0.3 * t, abs=2) and k20 > 0.95 * t
    with pytest.raises(ValueError, match="1 <= k <= 30"):
        idia.draw_scores(top1, truth, 31, 1, rng)


def test_rates_and_tau_curve():
    scores = np.array([[3, 0, 1, 0], [2, 1, 0, 0]])  # 2 draws; people 0, 1 members, 2, 3 not
    member = np.array([1, 1, 0, 0])
    r = idia.rates(scores, member, tau=1)
    assert r["tpr"] == pytest.approx(0.75) and r["fpr"] == pytest.approx(0.25)
    assert r["accuracy"] == pytest.approx(0.75) and r["tpr_sd"] == pytest.approx(0.25)
    curve = idia.tau_curve(scores, member)
    assert curve[0]["tau"] == len(idia.TEMPLATES) + 1 and curve[0]["tpr"] == 0 and curve[0]["fpr"] == 0
    assert curve[-1]["tau"] == 0 and curve[-1]["tpr"] == 1 and curve[-1]["fpr"] == 1
    tprs = [c["tpr"] for c in curve]
    assert tprs == sorted(tprs)


def test_prompts_are_template_major():
    p = idia.prompts(["Ada Abbott", "Emil Bauer"])
    assert len(p) == 2 * len(idia.TEMPLATES) and len(idia.TEMPLATES) == 21
    assert p[0] == "a photo of Ada Abbott." and p[1] == "a photo of Emil Bauer."
