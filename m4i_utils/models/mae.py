"""A masked autoencoder (MAE, He et al., CVPR 2022) trained from scratch at CPU size (notebook 12).

The seed paper (Li, He, Yu and Zhang 2024, "Membership Inference Attack Against Masked Image Modeling")
attacks image encoders pre-trained by masked image modeling: the attacker masks a query image, lets the
encoder-decoder reconstruct it and reads membership from the reconstruction error. This module is the target
and the shadow of that attack:

* :class:`MAE`: a ViT encoder (``mim_layers`` timm ``Block`` s of width ``mim_width``) over ``mim_patch_size``
  px patches (timm's ``PatchEmbed``) with fixed 2-D sin-cos position embeddings and a class token, and a
  light decoder (``mim_decoder_layers`` blocks of width ``mim_decoder_width``) that predicts the pixels of
  every patch from the visible tokens and a shared mask token. Masking keeps a random ``1 - ratio`` share of
  the patches per image (MAE's per-sample noise + argsort); the loss is the mean squared error on the masked
  patches only, against per-patch normalised pixels when ``mim_norm_pix`` (MAE's ``norm_pix_loss``).
* :func:`train_mae`: AdamW (betas 0.9 / 0.95, weight decay 0.05 on weights only) with a linear warm-up and
  cosine decay, masking ratio ``mim_mask_ratio``, through the project's one training loop
  (:func:`m4i_utils.models.training.fit`); cached under every parameter and the content hash of the images.
  MAE's random-resized-crop augmentation is left out (see ``data/README.md``), no pretrained weights are
  used or downloaded.
* :func:`patch_errors`: the per-patch reconstruction error of images under given masks (the attack signal);
  :func:`features`: the mean-pooled encoder output of the unmasked image (linear probe, encoder-only attack).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from timm.layers import PatchEmbed, build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from m4i_utils.core.cache import Artifact, cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import get_device
from m4i_utils.models.clip import MEAN, STD, to_tensor
from m4i_utils.models.training import fit

__all__ = [
    "MEAN",
    "STD",
    "MAE",
    "build_mae",
    "train_mae",
    "load_mae",
    "patch_errors",
    "features",
    "mask_noise",
]


def _sincos(grid: int, dim: int) -> torch.Tensor:
    """``(1, 1 + grid**2, dim)`` fixed position embedding: zeros for the class token, then timm's 2-D sin-cos
    embedding of the patch grid (MAE's choice of fixed embeddings)."""
    pos = build_sincos2d_pos_embed([grid, grid], dim=dim, reverse_coord=True).float()
    return torch.cat([torch.zeros(1, dim), pos.reshape(grid * grid, dim)])[None]


class MAE(nn.Module):
    """ViT encoder + light decoder, pre-trained by masking and reconstruction (MAE).

    Args:
        image_size, patch_size: square images of ``image_size`` px cut into ``(image_size / patch_size)**2``
            patches.
        width, layers, heads: the encoder.
        decoder_width, decoder_layers, decoder_heads: the decoder.
        norm_pix: reconstruction targets are per-patch normalised pixels (MAE's ``norm_pix_loss``).
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        decoder_width: int,
        decoder_layers: int,
        decoder_heads: int,
        norm_pix: bool,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.norm_pix = norm_pix
        self.patch_embed = PatchEmbed(image_size, patch_size, 3, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", _sincos(self.grid, width), persistent=False)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.decoder_embed = nn.Linear(width, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.register_buffer("decoder_pos_embed", _sincos(self.grid, decoder_width), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_width, decoder_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.decoder_pred = nn.Linear(decoder_width, patch_size * patch_size * 3)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: xavier-uniform linear layers (and patch projection), N(0, 0.02) tokens."""
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` -> ``(n, L, p * p * 3)`` (row-major patches, pixels in ``(p, p, 3)`` order)."""
        n, p, g = imgs.shape[0], self.patch_size, self.grid
        x = imgs.reshape(n, 3, g, p, g, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, g * g, p * p * 3)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`."""
        n, p, g = x.shape[0], self.patch_size, self.grid
        x = x.reshape(n, g, g, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, 3, g * p, g * p)

    def targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """The reconstruction targets: patches, per-patch normalised when ``norm_pix`` (MAE's eps 1e-6)."""
        target = self.patchify(imgs)
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def encode(self, imgs: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output ``(n, 1 + visible, width)``; ``keep`` ``(n, visible)`` indexes the visible patches
        (all patches when ``None``)."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Predicted patches ``(n, L, p * p * 3)`` from the encoder output and the order-restoring
        permutation."""
        x = self.decoder_embed(latent)
        n, visible = x.shape[0], x.shape[1] - 1
        masked = self.mask_token.expand(n, self.num_patches - visible, -1)
        tokens = torch.cat([x[:, 1:], masked], dim=1)
        tokens = torch.gather(tokens, 1, restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward(
        self, imgs: torch.Tensor, noise: torch.Tensor, ratio: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask, encode, decode: per-patch squared error ``(n, L)`` (mean over a patch's pixels) and the mask
        ``(n, L)`` (1 = masked). The ``round(L * (1 - ratio))`` patches of lowest ``noise`` stay visible (at
        least one)."""
        n, length = noise.shape
        visible = max(1, int(round(length * (1 - ratio))))
        order = torch.argsort(noise, dim=1)
        restore = torch.argsort(order, dim=1)
        keep = order[:, :visible]
        mask = torch.ones(n, length, device=imgs.device)
        mask[:, :visible] = 0
        mask = torch.gather(mask, 1, restore)
        pred = self.decode(self.encode(imgs, keep), restore)
        err = ((pred - self.targets(imgs)) ** 2).mean(dim=-1)
        return err, mask


def build_mae(cfg: Config, width: int | None = None, layers: int | None = None) -> MAE:
    """An untrained MAE of the configured size (``width`` / ``layers`` override the encoder's for the model
    size ablation; heads follow the width at 32 dimensions per head)."""
    width = width or cfg.mim_width
    return MAE(cfg.mim_image_size, cfg.mim_patch_size, width, layers or cfg.mim_layers, max(1, width // 32),
               cfg.mim_decoder_width, cfg.mim_decoder_layers, max(1, cfg.mim_decoder_width // 32),
               cfg.mim_norm_pix)  # fmt: skip


def encoder_parameters(cfg: Config, width: int, layers: int) -> int:
    """Trainable parameters of the encoder (patch embedding, class token, blocks, norm) at this size."""
    model = build_mae(cfg, width, layers)
    parts = (model.patch_embed, model.blocks, model.norm)
    return sum(p.numel() for part in parts for p in part.parameters()) + model.cls_token.numel()


def masked_loss(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's loss: the mean error over the masked patches of the batch."""
    return (err * mask).sum() / mask.sum()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and tokens (MAE's ``param_groups_weight_decay``)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit_mae(cfg: Config, images: np.ndarray, seed: int, epochs: int, width: int | None = None,
            layers: int | None = None, checkpoint: Path | None = None) -> tuple[MAE, dict]:  # fmt: skip
    """Pre-train a fresh MAE on ``images`` (uint8 ``(n, h, w, 3)``); returns it (eval mode) and its history.

    Shuffled batches of ``mim_batch_size`` (the last, smaller one kept), a fresh random mask at
    ``mim_mask_ratio`` per image and step, AdamW at ``mim_lr`` with 5% linear warm-up then cosine decay.
    """
    device = get_device()
    torch.manual_seed(seed)
    model = build_mae(cfg, width, layers).to(device)
    x = to_tensor(images)
    opt = torch.optim.AdamW(_param_groups(model, cfg.mim_weight_decay), lr=cfg.mim_lr, betas=(0.9, 0.95))
    steps = epochs * math.ceil(len(x) / cfg.mim_batch_size)
    warm = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    def batches(_epoch: int, gen: torch.Generator):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.mim_batch_size):
            idx = order[i : i + cfg.mim_batch_size]
            yield x[idx].to(device), torch.rand(len(idx), model.num_patches, generator=gen).to(device)

    def step_loss(m: MAE, batch):
        imgs, noise = batch
        err, mask = m(imgs, noise, cfg.mim_mask_ratio)
        return masked_loss(err, mask), len(imgs)

    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    result = fit(model, opt, batches, step_loss, epochs, generator=gen, scheduler=sched,
                 checkpoint=checkpoint, desc="mae")  # fmt: skip
    model.eval()
    history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    history["seconds"] = time.time() - start
    return model, history


MAE_FIELDS = (
    *("mim_image_size", "mim_patch_size", "mim_decoder_width", "mim_decoder_layers", "mim_norm_pix"),
    *("mim_mask_ratio", "mim_batch_size", "mim_lr", "mim_weight_decay"),
)
"""The config fields that shape every model and its training (all in the cache key; the encoder's width,
depth and the epochs are keyed by their values in :func:`train_mae`)."""


def train_mae(
    cfg: Config,
    images: np.ndarray,
    image_digest: str,
    seed: int,
    label: str,
    epochs: int | None = None,
    width: int | None = None,
    layers: int | None = None,
) -> Artifact:
    """The cached MAE pre-trained on ``images`` (``model.pt``, ``history.json``); built on first use.

    Args:
        image_digest: the content hash of ``images`` (:func:`m4i_utils.models.clip.pairs_digest` of the
            images and their ids), part of the cache key.
        epochs, width, layers: override ``mim_epochs`` / ``mim_width`` / ``mim_layers`` (ablations).
    """
    epochs = epochs or cfg.mim_epochs
    size = {"width": width or cfg.mim_width, "layers": layers or cfg.mim_layers}

    def build(out: Path, checkpoints: Path) -> None:
        model, history = fit_mae(cfg, images, seed, epochs, size["width"], size["layers"], checkpoints)
        torch.save(model.state_dict(), out / "model.pt")
        (out / "history.json").write_text(json.dumps(history))

    params = {"label": label, "seed": seed, "images": image_digest, "n": len(images), "epochs": epochs}
    params |= size | {k: getattr(cfg, k) for k in MAE_FIELDS}
    code = ["m4i_utils.models.training", "m4i_utils.models.clip"]  # clip: the pixel standardisation
    return cached(cfg.cache_dir, "mae_model", params, build, code_modules=code)


def load_mae(cfg: Config, art: Artifact) -> MAE:
    """The trained model of ``art`` (its width and depth read from the cache key) in eval mode."""
    params = art.manifest["params"]
    model = build_mae(cfg, params["width"], params["layers"])
    model.load_state_dict(torch.load(art.file("model.pt"), map_location="cpu", weights_only=True))
    return model.to(get_device()).eval()


def mask_noise(n_images: int, num_patches: int, repeats: int, seed: int) -> torch.Tensor:
    """``(repeats, n_images, num_patches)`` fixed masking noise: mask ``r`` of image ``i`` depends only on
    ``(seed, r, i)``, so every model (target, shadow, references) is queried with the same masks."""
    out = torch.empty(repeats, n_images, num_patches)
    for r in range(repeats):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + r)
        out[r] = torch.rand(n_images, num_patches, generator=gen)
    return out


@torch.no_grad()
def patch_errors(model: MAE, images: np.ndarray, noise: torch.Tensor, ratio: float,
                 batch: int = 256) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per-patch reconstruction errors and masks of ``images`` under each of the masks in ``noise``.

    Returns:
        ``(errors, masks)``, both ``(repeats, n, L)`` float32 (masks: 1 = masked).
    """
    device = next(model.parameters()).device
    x = to_tensor(images)
    errs, masks = [], []
    for r in range(noise.shape[0]):
        e_r, m_r = [], []
        for i in range(0, len(x), batch):
            e, m = model(x[i : i + batch].to(device), noise[r, i : i + batch].to(device), ratio)
            e_r.append(e.cpu())
            m_r.append(m.cpu())
        errs.append(torch.cat(e_r))
        masks.append(torch.cat(m_r))
    return torch.stack(errs).numpy(), torch.stack(masks).numpy()


@torch.no_grad()
def features(model: MAE, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Mean-pooled encoder output of the unmasked images (MAE's linear-probe feature), ``(n, width)``."""
    device = next(model.parameters()).device
    out = [model.encode(to_tensor(images[i : i + batch]).to(device))[:, 1:].mean(dim=1).cpu().numpy()
           for i in range(0, len(images), batch)]  # fmt: skip
    return np.concatenate(out)
