"""Unit tests of the Show and Tell captioner and the trunk feature cache (tiny tensors, seconds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from m4i_utils.core import config
from m4i_utils.data.text import Vocabulary
from m4i_utils.models import captioner as C
from m4i_utils.models import trunks

V, D = 12, 16


def tiny_model(seed: int = 0) -> C.EncoderDecoder:
    torch.manual_seed(seed)
    return C.EncoderDecoder(D, V, embed_size=8, hidden_size=10).eval()


def test_encoder_decoder_shapes():
    model = tiny_model()
    feats = torch.randn(3, D)
    tokens = torch.tensor([[1, 5, 6, 2, 0], [1, 4, 2, 0, 0], [1, 7, 8, 9, 2]])
    assert model.encode(feats).shape == (3, 8)
    assert model(feats, tokens).shape == (3, 5, V)


def test_greedy_batched_equals_one_by_one_and_respects_max_len():
    model = tiny_model()
    feats = torch.randn(7, D)
    batched = model.greedy(feats, max_len=6)
    assert batched.shape == (7, 6)
    assert torch.equal(batched, C.greedy_one_by_one(model, feats, max_len=6))


def test_beam_width_one_equals_greedy():
    model = tiny_model(1)
    feats = torch.randn(4, D)
    greedy = model.greedy(feats, max_len=8)
    for i in range(4):
        seq = model.beam(feats[i], width=1, max_len=8)
        assert seq == greedy[i, : len(seq)].tolist()
        assert len(seq) <= 8


def test_training_reduces_loss():
    cfg = config.resolve_profile("smoke", {"epochs": 15, "optimizer": "adam", "lr": 0.01, "batch_size": 8})
    model = tiny_model()
    feats = torch.randn(4, D)
    rows = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    tokens = torch.randint(4, V, (8, 6))
    tokens[:, 0], tokens[:, -1] = 1, 2
    before = C.evaluate_loss(model, feats, rows, tokens)
    hist = C.train_model(model, feats, rows, tokens, cfg, seed=0)
    assert C.evaluate_loss(model, feats, rows, tokens) < before
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_unknown_family_and_weights_raise():
    cfg = config.resolve_profile("smoke")
    with pytest.raises(ValueError, match="valid families"):
        trunks.trunk_name(cfg, "alexnet")
    with pytest.raises(ValueError, match="valid"):
        trunks.build_trunk(cfg, "resnet", weights="IMAGENET22K")
    with pytest.raises(ValueError, match="valid"):
        C.make_optimizer(dataclasses.replace(cfg, optimizer="rmsprop"), tiny_model().parameters())


def test_random_trunk_dims():
    cfg = config.resolve_profile("smoke")
    trunk = trunks.build_trunk(cfg, "vgg", weights="random")
    out = trunk(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, trunk.dim) == (2, 512 * cfg.vgg_pool**2)
    assert not any(p.requires_grad for p in trunk.parameters())


def test_vocab_checkpoint_mismatch_raises(tmp_path):
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>") + tuple(f"w{i}" for i in range(V - 4)))
    model = tiny_model()
    C.save_checkpoint(model, vocab, tmp_path / "model.pt")
    loaded = C.load_checkpoint(tmp_path / "model.pt", vocab)
    feats = torch.randn(2, D)
    assert torch.equal(loaded.greedy(feats, 5), model.greedy(feats, 5))
    other = Vocabulary(vocab.itos[:-1] + ("zzz",))
    with pytest.raises(C.VocabularyMismatchError, match="vocabulary"):
        C.load_checkpoint(tmp_path / "model.pt", other)


def test_feature_cache_key_changes_with_trunk_and_input_size():
    cfg = config.resolve_profile("smoke", {"trunk_weights": "random"})
    base = trunks.feature_params(cfg, "resnet", "synth_coco", "t")
    other_trunk = trunks.feature_params(
        dataclasses.replace(cfg, resnet_trunk="resnet34"), "resnet", "synth_coco", "t"
    )
    other_size = trunks.feature_params(
        dataclasses.replace(cfg, trunk_input_size=48), "resnet", "synth_coco", "t"
    )
    assert base != other_trunk and base != other_size
    from m4i_utils.core.cache import artifact_key

    keys = {artifact_key("features", p) for p in (base, other_trunk, other_size)}
    assert len(keys) == 3


def test_imagenet_weights_missing_error_names_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def fail(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(trunks.torchvision.models, "get_model", fail)
    cfg = config.resolve_profile("smoke", {"trunk_weights": "IMAGENET1K_V1"})
    with pytest.raises(RuntimeError, match=r"resnet18-.*\.pth.*public_pretrain"):
        trunks.build_trunk(cfg, "resnet")


def test_paired_difference_matches_nltk_and_is_zero_for_identical_systems():
    from nltk.translate.bleu_score import corpus_bleu

    from m4i_utils.data.text import tokenize
    from m4i_utils.signals.text_similarity import bleu1_parts, corpus_bleu1, paired_difference

    refs = [("a red ball on a table", "a ball"), ("two dogs play in the park",), ("a man rides a bike",)]
    hyps = ["a red ball", "dogs in a park", "a man on a bike near a house"]
    expected = corpus_bleu(
        [[tokenize(r) for r in rs] for rs in refs], [tokenize(h) for h in hyps], (1, 0, 0, 0)
    )
    assert float(corpus_bleu1(bleu1_parts(hyps, refs))) == pytest.approx(expected)
    same = paired_difference(hyps, hyps, refs, n_bootstrap=50)
    assert same["bleu1_diff"] == 0 and same["bleu1_diff_ci_low"] == 0 and same["rougeL_diff_ci_high"] == 0
    const = paired_difference(hyps, ["a"] * 3, refs, n_bootstrap=50)
    assert const["rougeL_diff"] > 0 and const["rougeL_diff_ci_low"] <= const["rougeL_diff"]
