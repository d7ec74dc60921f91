"""The masked autoencoder (m4i_utils.models.mae): timm blocks, MAE's masking and loss, fixed attack masks,
a cache key that covers the images and the recipe, and the memorisation the attack of notebook 12 reads."""

import dataclasses

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Block

from m4i_utils.core import config
from m4i_utils.models import mae
from m4i_utils.models.clip import pairs_digest


@pytest.fixture
def tiny(tmp_path):
    cfg = config.resolve_profile("smoke", {"cache_dir": str(tmp_path)})
    return dataclasses.replace(cfg, mim_image_size=16, mim_patch_size=4, mim_width=32, mim_layers=1,
                               mim_decoder_width=32, mim_decoder_layers=1, mim_epochs=2, mim_batch_size=8,
                               mim_lr=2e-3, mim_weight_decay=0.0)  # fmt: skip


def _images(n, seed, size=16, patch=4):
    """Random images made of flat patches (a random colour per 4 px patch)."""
    grid = np.random.default_rng(seed).integers(0, 256, (n, size // patch, size // patch, 3), dtype=np.uint8)
    return grid.repeat(patch, axis=1).repeat(patch, axis=2)


def test_built_from_timm_blocks_and_patchify_round_trips(tiny):
    torch.manual_seed(0)
    model = mae.build_mae(tiny)
    assert all(isinstance(b, Block) for b in [*model.blocks, *model.decoder_blocks])
    assert model.num_patches == 16
    x = torch.randn(2, 3, 16, 16)
    patches = model.patchify(x)
    assert patches.shape == (2, 16, 4 * 4 * 3)
    assert torch.equal(model.unpatchify(patches), x)
    # patch (row 0, col 1) holds pixels x[:, :, 0:4, 4:8]
    assert torch.equal(patches[0, 1].reshape(4, 4, 3), x[0, :, 0:4, 4:8].permute(1, 2, 0))


def test_masking_keeps_the_lowest_noise_patches(tiny):
    torch.manual_seed(0)
    model = mae.build_mae(tiny).eval()
    noise = torch.rand(3, 16)
    err, mask = model(mae.to_tensor(_images(3, 0)), noise, 0.75)
    assert err.shape == mask.shape == (3, 16)
    assert (mask.sum(1) == 12).all()  # round(16 * 0.25) = 4 visible
    visible = torch.argsort(noise, dim=1)[:, :4]
    assert (torch.gather(mask, 1, visible) == 0).all()
    _, mask90 = model(mae.to_tensor(_images(3, 0)), noise, 0.99)
    assert (mask90.sum(1) == 15).all()  # at least one patch stays visible


def test_loss_counts_masked_patches_only():
    err = torch.tensor([[1.0, 5.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert mae.masked_loss(err, mask).item() == pytest.approx(2.0)


def test_norm_pix_targets_are_standardised_per_patch(tiny):
    model = mae.build_mae(dataclasses.replace(tiny, mim_norm_pix=True))
    t = model.targets(torch.randn(2, 3, 16, 16) * 3 + 1)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 16), atol=1e-3)
    raw = mae.build_mae(dataclasses.replace(tiny, mim_norm_pix=False))
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(raw.targets(x), raw.patchify(x))


def test_attack_masks_are_fixed_per_seed_repeat_and_image():
    a = mae.mask_noise(5, 16, 3, seed=7)
    assert a.shape == (3, 5, 16)
    assert torch.equal(a[:, :3], mae.mask_noise(3, 16, 3, seed=7))  # image i's mask does not depend on n
    assert torch.equal(a[:2], mae.mask_noise(5, 16, 2, seed=7))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a, mae.mask_noise(5, 16, 3, seed=8))


def test_it_memorises_its_training_images(tiny):
    """Many passes over 8 random images: their masked-patch error falls far below that of 8 fresh images of
    the same distribution (the signal of the attack)."""
    torch.set_num_threads(1)
    cfg = dataclasses.replace(tiny, mim_norm_pix=False, mim_width=64, mim_lr=3e-3)
    train, fresh = _images(8, 0), _images(8, 1)
    model, history = mae.fit_mae(cfg, train, seed=0, epochs=1000)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    noise = mae.mask_noise(8, model.num_patches, 4, seed=3)
    (e_in, m_in), (e_out, m_out) = (mae.patch_errors(model, x, noise, 0.75) for x in (train, fresh))
    masked_in = (e_in * m_in).sum(-1) / m_in.sum(-1)
    masked_out = (e_out * m_out).sum(-1) / m_out.sum(-1)
    assert masked_in.mean() < 0.6 * masked_out.mean()
    assert masked_in.mean(0).max() < masked_out.mean(0).min()  # every member below every non-member
    f = mae.features(model, train)
    assert f.shape == (8, 64) and np.isfinite(f).all()


def test_cache_key_covers_images_and_recipe(tiny):
    images = _images(4, 0)
    digest = pairs_digest(images, ["a", "b", "c", "d"])
    a = mae.train_mae(tiny, images, digest, 0, "t")
    assert mae.train_mae(tiny, images, digest, 0, "t").key == a.key
    assert not mae.train_mae(tiny, images, digest, 0, "t").rebuilt
    other = pairs_digest(images[::-1], ["d", "c", "b", "a"])
    half = dataclasses.replace(tiny, mim_mask_ratio=0.5)
    keys = {a.key, mae.train_mae(tiny, images[::-1], other, 0, "t").key,
            mae.train_mae(tiny, images, digest, 0, "t", epochs=1).key,
            mae.train_mae(tiny, images, digest, 0, "t", width=64, layers=1).key,
            mae.train_mae(half, images, digest, 0, "t").key}  # fmt: skip
    assert len(keys) == 5
    wide = mae.load_mae(tiny, mae.train_mae(tiny, images, digest, 0, "t", width=64, layers=1))
    assert wide.cls_token.shape[-1] == 64 and len(wide.blocks) == 1
    assert mae.encoder_parameters(tiny, 64, 1) > mae.encoder_parameters(tiny, 32, 1)


def test_patch_size_must_divide_the_image():
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        mae.MAE(16, 5, 32, 1, 1, 32, 1, 1, False)
