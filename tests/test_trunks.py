"""Augmented views of the frozen-trunk pipeline: flip + crop, and colour jitter for notebook 10's views."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF

from m4i_utils.models.trunks import IMAGENET_MEAN, IMAGENET_STD, augment_batch


def _images(n: int = 16, size: int = 12) -> torch.Tensor:
    """ImageNet-normalised images whose pixels lie in [0.2, 0.6] (no clipping under brightness <= 1.4)."""
    pixels = 0.2 + 0.4 * torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    return TF.normalize(pixels, IMAGENET_MEAN, IMAGENET_STD)


def _luminance(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return TF.rgb_to_grayscale(x * std + mean).mean(dim=(1, 2, 3))


def test_without_jitter_the_views_draw_only_the_flip_and_crop_numbers() -> None:
    """jitter=0 keeps the random stream of trunk pretraining and the augmentation defense unchanged."""
    x = _images()
    g, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    augment_batch(x, g)
    torch.rand(len(x), 4, generator=ref)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=ref))


def test_colour_jitter_scales_brightness_within_its_range_and_keeps_the_geometry() -> None:
    x, jitter = _images(), 0.4
    plain = augment_batch(x, torch.Generator().manual_seed(7))
    jittered = augment_batch(x, torch.Generator().manual_seed(7), jitter)
    assert not torch.allclose(plain, jittered)
    # contrast and saturation keep the mean luminance; brightness scales it by its factor
    ratio = _luminance(jittered) / _luminance(plain)
    assert ((ratio > 1 - jitter - 1e-3) & (ratio < 1 + jitter + 1e-3)).all(), ratio
    assert ratio.std() > 0.05  # each image draws its own factors
    # the same flips and crops: the jittered view is still far closer to its own plain view than to others
    d = torch.cdist(_luminance_maps(jittered), _luminance_maps(plain))
    assert (d.argmin(dim=1) == torch.arange(len(x))).all()


def _luminance_maps(x: torch.Tensor) -> torch.Tensor:
    """Per image, its luminance map standardised (brightness and contrast removed), flattened."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    lum = TF.rgb_to_grayscale(x * std + mean).flatten(1)
    return (lum - lum.mean(1, keepdim=True)) / lum.std(1, keepdim=True)
