"""Defenses (notebook 09): the DP captioner trains under Opacus, the empirical epsilon bound, cache keys."""

import dataclasses

import numpy as np
import pytest
import torch

from m4i_utils.attacks import dp_audit
from m4i_utils.core import config
from m4i_utils.core.cache import artifact_key
from m4i_utils.experiments import defenses
from m4i_utils.models import dp_captioner


def test_dp_model_uses_dplstm_and_groupnorm_and_trains_one_step():
    from opacus.layers import DPLSTM
    from opacus.validators import ModuleValidator

    torch.set_num_threads(1)
    model = dp_captioner.DPEncoderDecoder(feat_dim=8, vocab_size=12, embed_size=8, hidden_size=8, groups=4)
    assert isinstance(model.lstm, DPLSTM) and isinstance(model.enc_bn, torch.nn.GroupNorm)
    assert ModuleValidator.validate(model, strict=False) == []
    cfg = dataclasses.replace(
        config.resolve_profile("smoke"), def_dp_batch_size=8, optimizer="sgd", lr=0.1, def_dp_delta=1e-3
    )
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(16, 8, generator=gen)
    tokens = torch.randint(3, 12, (16, 2, 5), generator=gen)
    tokens[:, :, 0], tokens[:, :, -1] = 1, 2
    before = [p.detach().clone() for p in model.parameters()]
    hist = dp_captioner.train_dp(
        model, feats, tokens, torch.full((16,), 2), cfg, target_epsilon=8.0, epochs=1
    )
    assert 0 < hist["epsilon"] <= 8.0 + 0.5 and hist["noise_multiplier"] > 0
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        assert model.greedy(feats[:3], max_len=4).shape == (3, 4)


def test_epsilon_lower_bound_on_toy_rocs():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(1000), np.zeros(1000)].astype(int)
    # No leakage: the bound stays small.
    noise = rng.normal(size=2000)
    assert dp_audit.epsilon_lower_bound(labels, noise, delta=1e-5) < 0.5
    # Perfect separation with n per class: the point bound is log(n) at most (FPR >= 1/n), CP is smaller.
    perfect = labels.astype(float)
    point = dp_audit.epsilon_lower_bound(labels, perfect, delta=0.0, method="point")
    cp = dp_audit.epsilon_lower_bound(labels, perfect, delta=0.0, method="cp")
    assert point <= np.log(1000) + 1e-9 and 0 < cp < np.log(1000)
    # A known ROC point: TPR 0.5 at FPR 0.05 -> log(10) ~ 2.3 (point), CP below it.
    scores = np.r_[np.r_[np.ones(500), np.zeros(500)], np.r_[np.ones(50), np.zeros(950)]]
    p = dp_audit.epsilon_lower_bound(labels, scores, delta=0.0, method="point")
    assert p == pytest.approx(np.log(10), abs=1e-6)
    assert dp_audit.epsilon_lower_bound(labels, scores, delta=0.0) < p


def test_weight_decay_and_defense_change_the_cache_key():
    cfg = config.resolve_profile("smoke")

    def key(defense):
        return artifact_key(
            "captioner", defenses.captioner_params(cfg, "synth_coco", "resnet", "target", defense)
        )

    none, l2a, l2b = defenses.Defense("none"), defenses.Defense("l2", 1e-4), defenses.Defense("l2", 1e-3)
    assert len({key(none), key(l2a), key(l2b), key(defenses.Defense("dp", 8.0))}) == 4
    assert defenses.defended_config(cfg, l2b).weight_decay == 1e-3
    assert defenses.defended_config(cfg, defenses.Defense("augment", 2)).train_augment
    labels = [d.label for d in defenses.defense_sweep(cfg)]
    assert labels == ["none", "dp_eps8", "l2_wd0.001", "augment_4views"]
