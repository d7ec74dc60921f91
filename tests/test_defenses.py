"""Defenses (notebook 09): the DP captioner trains under Opacus (and its non-private control), the sweep."""

import dataclasses

import numpy as np
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


def test_make_private_calibrates_with_prv_and_train_dp_uses_the_given_privatize():
    from opacus import GradSampleModule
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    loader = DataLoader(TensorDataset(torch.randn(200, 4)), batch_size=20)
    net = torch.nn.Linear(4, 2)
    m, opt, dl, engine = dp_captioner.make_private(
        net, torch.optim.SGD(net.parameters(), lr=0.1), loader, 2.0, 1e-5, 5, 0.7
    )
    assert isinstance(m, GradSampleModule) and isinstance(opt, DPOptimizer) and isinstance(dl, DPDataLoader)
    want = get_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=0.1, epochs=5, accountant="prv"
    )
    assert opt.noise_multiplier == pytest.approx(want) and opt.max_grad_norm == 0.7
    assert engine.accountant.mechanism() == "prv"
    net = torch.nn.Linear(4, 2)
    _, opt, _, _ = dp_captioner.make_private(
        net, torch.optim.SGD(net.parameters(), lr=0.1), loader, None, 1e-5, 5, 0.7
    )
    assert opt.noise_multiplier == 0.0 and opt.max_grad_norm == 0.7

    calls = []

    def spy(*args):  # a caller's privatize (course assignment 4 passes the student's)
        calls.append(args[3:])
        return dp_captioner.make_private(*args)

    cfg = dataclasses.replace(config.resolve_profile("smoke"), def_dp_batch_size=8, def_dp_delta=1e-3)
    model = dp_captioner.DPEncoderDecoder(feat_dim=8, vocab_size=12, embed_size=8, hidden_size=8, groups=4)
    tokens = torch.randint(3, 12, (16, 2, 5))
    hist = dp_captioner.train_dp(
        model, torch.randn(16, 8), tokens, torch.full((16,), 2), cfg, 4.0, epochs=2, privatize=spy
    )
    assert calls == [(4.0, 1e-3, 2, cfg.def_dp_max_grad_norm)]
    assert 0 < hist["epsilon"] <= 4.0 + 0.05


def test_defense_sweep_and_configs():
    cfg = config.resolve_profile("smoke")
    assert defenses.defended_config(cfg, defenses.Defense("l2", 1e-3)).weight_decay == 1e-3
    assert defenses.defended_config(cfg, defenses.Defense("augment", 2)).train_augment
    assert defenses.defended_config(cfg, defenses.Defense("none")) is cfg
    with pytest.raises(ValueError, match="unknown defense 'dp'"):
        defenses.defended_config(cfg, defenses.Defense("dp", 8.0))
    assert [d.label for d in defenses.defense_sweep(cfg)] == ["none", "l2_wd0.001", "augment_4views"]


def test_public_feature_standardisation_lets_the_image_through():
    """Trunk features share a large mean across images; GroupNorm (per image) keeps it, so without the
    public standardisation every image gets nearly the same embedding (the decoder then ignores the image)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    offset = 5.0 * torch.rand(64, generator=gen)
    public = offset + 0.05 * torch.randn(200, 64, generator=gen)
    images = offset + 0.05 * torch.randn(2, 64, generator=gen)
    model = dp_captioner.DPEncoderDecoder(feat_dim=64, vocab_size=10, embed_size=16, hidden_size=8, groups=1)

    def cosine() -> float:
        with torch.no_grad():
            a, b = model.encode(images)
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    assert cosine() > 0.99  # the shared offset dominates
    model.set_feature_stats(public)
    assert torch.allclose(model.feat_mean, public.mean(0)) and torch.allclose(model.feat_std, public.std(0))
    assert cosine() < 0.8  # the image-specific part now drives the embedding
    state = model.state_dict()  # the statistics travel with the checkpoint
    assert torch.equal(state["feat_mean"], public.mean(0))


def test_defense_tables_spread_over_seeds():
    import pandas as pd

    from m4i_utils.reporting import privacy_utility

    rows = pd.DataFrame(
        {
            "defense": ["none"] * 4 + ["l2_wd0.001"] * 4,
            "defense_kind": ["none"] * 4 + ["l2"] * 4,
            "defense_strength": [0.0] * 4 + [1e-3] * 4,
            "attack": "mb_svm",
            "scenario": "unrestricted",
            "train_seed": [0, 0, 1, 1] * 2,
            # per seed, two targets: seed means none 0.8 and 0.9, l2 0.6 and 0.6
            "auc": [0.7, 0.9, 0.85, 0.95, 0.5, 0.7, 0.6, 0.6],
            "accuracy": 0.5,
            "tpr_at_1pct_fpr": 0.1,
        }
    )
    table = privacy_utility.defense_attack_table(rows).set_index("defense")
    assert table.loc["none", "auc_mean"] == pytest.approx(0.85)
    assert table.loc["none", "auc_sd"] == pytest.approx(0.0707107, rel=1e-5)
    assert table.loc["l2_wd0.001", "auc_sd"] == pytest.approx(0.0)
    assert (table.n_seeds == 2).all() and (table.n_per_seed == 2).all()


def test_defended_models_are_named_apart():
    from m4i_utils.core.metrics import AttackResult

    res = AttackResult(np.array([0.1, 0.9]), np.array([0, 1]), meta={"target": "CM", "shadow": "CR"})
    row = {"target": "CM", "shadow": "CR"}
    defenses._named(res, row, defenses.Defense("l2", 1e-3))
    assert res.meta["target"] == row["target"] == "CM:l2_wd0.001" and row["shadow"] == "CR:l2_wd0.001"
    assert row["defense"] == "l2_wd0.001" and row["defense_kind"] == "l2" and row["defense_strength"] == 1e-3


def test_augmented_population_gathers_each_members_own_views():
    """The augmentation recipe's population models train on their members' cached augmented views (one row
    per member, in member order); a record outside the population roles is an error, not a silent skip."""
    from m4i_utils.data.bundles import load_bundle
    from m4i_utils.experiments.calibrated import build_population
    from m4i_utils.models.trunks import augmented_features_for

    cfg = dataclasses.replace(config.resolve_profile("smoke"), train_augment=True)
    dataset, family = cfg.datasets[0], cfg.families[0]
    pop = build_population(cfg, dataset)
    members = pop.members(0)
    feats, keys = defenses.augmented_member_features(cfg, dataset, family, members)
    assert feats.shape[:2] == (len(members), cfg.augment_views) and len(keys) == 4
    # the first member's views are its own rows of its role's table
    role = next(r for r in ("target_members", "target_nonmembers", "shadow_members", "shadow_nonmembers")
                if members.ids[0] in load_bundle(cfg, dataset).role(r).ids)  # fmt: skip
    table = augmented_features_for(cfg, dataset, family, role)
    assert np.allclose(feats[0].numpy(), table.array[table.ids.index(members.ids[0])])
    outsider = load_bundle(cfg, dataset).role("target_test").subset([0])
    with pytest.raises(ValueError, match="outside the population roles"):
        defenses.augmented_member_features(cfg, dataset, family, outsider)
    with pytest.raises(ValueError, match="set train_augment=True"):
        defenses.augmented_captioner_on(
            dataclasses.replace(cfg, train_augment=False), dataset, family, members, "t"
        )
