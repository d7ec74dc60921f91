"""The CLIP-like model (open_clip, from scratch): it learns matching pairs, embeds to unit vectors, and its
cache key covers the training pairs."""

import dataclasses

import numpy as np
import pytest
import torch

from m4i_utils.core import config
from m4i_utils.models import clip


@pytest.fixture
def tiny(tmp_path):
    cfg = config.resolve_profile("smoke", {"cache_dir": str(tmp_path)})
    return dataclasses.replace(cfg, clip_image_size=16, clip_patch_size=8, clip_width=32, clip_layers=1,
                               clip_heads=2, clip_embed_dim=16, clip_context=8, clip_epochs=100,
                               clip_batch_size=8, clip_lr=3e-3, clip_weight_decay=0.0)  # fmt: skip


def _pairs(n=8):
    """Each image a different flat colour, each caption a different colour word."""
    colours = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"][:n]
    rng = np.random.default_rng(0)
    images = np.stack([np.full((16, 16, 3), rng.integers(0, 256, 3), np.uint8) for _ in colours])
    return images, [f"a {c} square" for c in colours]


def test_it_learns_to_match_its_pairs(tiny):
    torch.set_num_threads(1)
    images, captions = _pairs()
    model, history = clip.fit_clip(tiny, images, captions, seed=0)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    img = clip.embed_images(model, images)
    txt = clip.embed_texts(model, captions, tiny.clip_context)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert (np.argmax(img @ txt.T, axis=1) == np.arange(len(images))).mean() >= 0.75


def test_cache_key_covers_the_pairs(tiny):
    tiny = dataclasses.replace(tiny, clip_epochs=1)
    images, captions = _pairs(4)
    a = clip.train_clip(tiny, images, captions, 0, "t")
    b = clip.train_clip(tiny, images, captions[::-1], 0, "t")
    assert a.key != b.key and clip.train_clip(tiny, images, captions, 0, "t").key == a.key
    with pytest.raises(ValueError, match="4 images but 3 captions"):
        clip.fit_clip(tiny, images, captions[:3], seed=0)
