"""Defenses (notebook 09): the DP captioner trains under Opacus (and its non-private control), the sweep."""

import dataclasses

import pytest
import torch

from m4i_utils.core import config
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
        config.resolve_profile("smoke"),
        def_dp_batch_size=8,
        def_dp_optimizer="sgd",
        def_dp_lr=0.1,
        def_dp_delta=1e-3,
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
    # the non-private control: same sampling and clipping, noise 0, no epsilon
    control = dp_captioner.DPEncoderDecoder(feat_dim=8, vocab_size=12, embed_size=8, hidden_size=8, groups=4)
    hist = dp_captioner.train_dp(control, feats, tokens, torch.full((16,), 2), cfg, None, epochs=1)
    assert hist["noise_multiplier"] == 0.0 and hist["epsilon"] == float("inf")


def test_defense_sweep_and_configs():
    cfg = config.resolve_profile("smoke")
    assert defenses.defended_config(cfg, defenses.Defense("l2", 1e-3)).weight_decay == 1e-3
    assert defenses.defended_config(cfg, defenses.Defense("augment", 2)).train_augment
    assert defenses.defended_config(cfg, defenses.Defense("none")) is cfg
    with pytest.raises(ValueError, match="unknown defense 'dp'"):
        defenses.defended_config(cfg, defenses.Defense("dp", 8.0))
    assert [d.label for d in defenses.defense_sweep(cfg)] == ["none", "l2_wd0.001", "augment_4views"]
