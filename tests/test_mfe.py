"""MFE (m4i_utils.models.mfe) and FB attack model (m4i_utils.attacks.feature_attack) on tiny synthetic
problems."""

import numpy as np
import pytest
import torch

from m4i_utils.attacks import feature_attack
from m4i_utils.data.text import Vocabulary
from m4i_utils.models import mfe

WORDS = [f"w{i}" for i in range(12)]


def _toy_pairs(n_images=80, caps_per_image=3, dim=16, seed=0):
    """Images = noisy projections of a latent class; captions = words of that class (+ a random word)."""
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(4, dim))
    cls = rng.integers(0, 4, n_images)
    img = torch.tensor(proj[cls] + 0.3 * rng.normal(size=(n_images, dim)), dtype=torch.float32)
    caps, owner = [], []
    for i, c in enumerate(cls):
        for _ in range(caps_per_image):
            caps.append(f"a {WORDS[3 * c]} {WORDS[3 * c + 1]} and {WORDS[rng.integers(12)]}")
            owner.append(i)
    return img, caps, np.array(owner)


def _trained_mfe(model, vocab):
    return mfe.TrainedMFE("toy", "resnet", "k", model, vocab, {}, {})


def test_bow_identical_at_training_and_attack_time():
    vocab = Vocabulary.build(["a dog runs on grass", "a dog and a cat"] * 4, threshold=2)
    text = "A dog runs, a zebra runs!"
    train_vec = mfe.bow_vectors(vocab, [text])[0]
    model = mfe.MFE(4, len(vocab), feature_size=8, hidden=16)
    trained = _trained_mfe(model, vocab)
    assert torch.equal(train_vec, mfe.bow_vectors(vocab, [text])[0])
    assert torch.allclose(trained.text_features([text]), mfe.embed(model, bow=train_vec[None])[1])
    stoi = vocab.stoi
    assert train_vec[stoi["a"]] == 2 and train_vec[stoi["dog"]] == 1 and train_vec[stoi["runs"]] == 2
    assert train_vec[stoi["<unk>"]] == 1  # "zebra"
    assert train_vec[stoi["<start>"]] == 0 and train_vec[stoi["<end>"]] == 0 and train_vec[stoi["<pad>"]] == 0


def test_mfe_training_reduces_distance_without_collapse_and_retrieves():
    img, caps, owner = _toy_pairs()
    vocab = Vocabulary.build(caps, threshold=1)
    bow = mfe.bow_vectors(vocab, caps)
    torch.manual_seed(0)
    untrained = mfe.MFE(img.shape[1], len(vocab), feature_size=8, hidden=32)
    with torch.no_grad():  # batch statistics: eval-mode BN of an untrained model is not normalised yet
        before = mfe.mfe_loss(untrained.train(), img[owner], bow, 0.0)[1]
    model, hist = mfe.train_mfe(
        img[owner], bow, img[owner], bow, feature_size=8, hidden=32, epochs=30, batch_size=32, seed=0
    )
    after = mfe.evaluate_mfe(model, img, bow, owner)
    assert hist["train_dist"][-1] < hist["train_dist"][0]
    # Only ~3 of the 8 dimensions can carry shared (class) information; the decorrelated rest stays near 2.
    assert after["distance"] < 0.75 * before
    assert after["image_var_min"] > 0.05 and after["text_var_min"] > 0.05  # not collapsed
    assert after["recall@5"] > after["chance@5"] + 0.1


def test_pure_distance_collapses_without_batchnorm():
    """Sanity check of the failure the guard prevents: without BN the MSE drives features to a point."""
    img, caps, owner = _toy_pairs()
    vocab = Vocabulary.build(caps, threshold=1)
    model = mfe.MFE(img.shape[1], len(vocab), feature_size=8, hidden=32)
    model.image[-1], model.text[-1] = torch.nn.Identity(), torch.nn.Identity()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    bow = mfe.bow_vectors(vocab, caps)
    with mfe.torch_threads(1):
        for _ in range(300):
            loss = ((model.image(img[owner]) - model.text(bow)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert mfe.collapse_stats(model.image(img).detach())["var_median"] < 1e-2


def test_recall_chance_level():
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(20), 5)
    out = mfe.retrieval_recall(
        torch.tensor(rng.normal(size=(20, 4))), torch.tensor(rng.normal(size=(100, 4))), owner
    )
    assert out["chance@1"] == pytest.approx(0.05)
    perfect = mfe.retrieval_recall(torch.eye(20), torch.eye(20)[owner], owner)
    assert perfect["recall@1"] == 1.0


def test_fb_features_signed_and_abs():
    vocab = Vocabulary.build(["a b c"] * 4, threshold=1)
    torch.manual_seed(0)
    model = mfe.MFE(6, len(vocab), feature_size=5, hidden=8)
    model.image[-1].running_var.fill_(2.0)
    trained = _trained_mfe(model.eval(), vocab)
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    caps = ["a b", "c", "a a x"]
    signed = mfe.fb_features(trained, x, caps)
    absval = mfe.fb_features(trained, x, caps, signed=False)
    expected = (trained.image_features(x) - trained.text_features(caps)).numpy()
    assert signed.shape == (3, 5) and np.allclose(signed, expected)
    assert np.allclose(absval, np.abs(signed)) and (signed < 0).any()
    with pytest.raises(ValueError):
        mfe.fb_features(trained, x, caps[:2])


def _toy_attack(shift, n=300, d=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], n // 2)
    x = rng.normal(size=(n, d)) + shift * y[:, None]
    return x, y


def _fb(xs, ys, xt, yt, meta=None, **kw):
    from m4i_utils.attacks.base import Signals
    from m4i_utils.core.config import resolve_profile
    from m4i_utils.experiments.harness import evaluate

    attack = feature_attack.MLPAttack(**kw)
    return evaluate(resolve_profile("smoke"), attack, Signals(xs, ys), Signals(xt, yt), meta or {})[0]


def test_fb_attack_separates_separable_problem():
    xs, ys = _toy_attack(2.0, seed=0)
    xt, yt = _toy_attack(2.0, seed=1)
    res = _fb(xs, ys, xt, yt, {"experiment": "toy"}, seed=0)
    assert res.meta["attack"] == "fb_mlp" and res.meta["experiment"] == "toy"
    assert res.scores.min() >= 0.0 and res.scores.max() <= 1.0
    assert (res.predictions() == yt).mean() > 0.95


def test_fb_attack_near_chance_on_noise_and_early_stopping_stops():
    xs, ys = _toy_attack(0.0, seed=0)
    xt, yt = _toy_attack(0.0, n=1000, seed=1)
    res = _fb(xs, ys, xt, yt, seed=0, max_epochs=200, patience=5)
    assert abs((res.predictions() == yt).mean() - 0.5) < 0.08
    assert res.meta["fb_stopped_epoch"] < 200  # early stopping fired
    fitted = feature_attack.train_attack_model(xs, ys, seed=0, max_epochs=200, patience=5)
    assert fitted.stopped_epoch == len(fitted.history["val_loss"]) < 200
    assert fitted.stopped_epoch - fitted.best_epoch == 5 or fitted.best_epoch == 0


def test_fb_attack_is_seeded():
    xs, ys = _toy_attack(1.0, seed=0)
    a = _fb(xs, ys, xs, ys, seed=3)
    b = _fb(xs, ys, xs, ys, seed=3)
    assert np.array_equal(a.scores, b.scores)
