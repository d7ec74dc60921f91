"""Random augmented views of images: the input of the attacks that measure how stable a model is across
augmentations of a query (AEA on CLIP-like models, notebook 11; the encoder-only baseline against masked
autoencoders, notebook 12)."""

from __future__ import annotations

import numpy as np
import torch


def augmented_views(images: np.ndarray, views: int, seed: int) -> np.ndarray:
    """``(n, 1 + views, s, s, 3)``: each image and ``views`` random views of it (resized crop of 70-100% of
    the area, rotation up to 10 degrees, colour jitter 0.3), seeded."""
    from torchvision.transforms import v2

    size = images.shape[1]
    aug = v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
        v2.RandomRotation(10),
        v2.ColorJitter(0.3, 0.3, 0.3),
    ])  # fmt: skip
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    out = [images]
    for _ in range(views):
        out.append(np.stack([aug(im).numpy().transpose(1, 2, 0) for im in x]))
    return np.stack(out, axis=1)
