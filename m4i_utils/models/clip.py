"""A CLIP-like dual encoder trained from scratch (notebook 11): open_clip's model code, tokenizer and
contrastive loss, at a size a CPU can train.

The seed paper ("Does CLIP Know My Face?", Hintersdorf et al., JAIR 2024) trains ResNet-50 and ViT-B/32
CLIP models from scratch on CC3M with injected person images. Here both towers are small transformers
(``open_clip.CLIP`` with a ViT image tower of ``clip_layers`` blocks of width ``clip_width`` on
``clip_patch_size`` px patches, and a causal text transformer of the same depth and width over open_clip's
BPE vocabulary, truncated to ``clip_context`` tokens), trained with open_clip's symmetric InfoNCE loss
(``ClipLoss``) and AdamW with a linear warm-up and cosine decay, through the project's one training loop
(:func:`m4i_utils.models.training.fit`). No pretrained weights are used or downloaded.

:func:`train_clip` caches the weights under a key of every parameter and the content hash of the training
pairs; :func:`embed_images` and :func:`embed_texts` return L2-normalised embeddings.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from m4i_utils.core.cache import Artifact, cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import get_device
from m4i_utils.models.training import fit

MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.25, 0.25, 0.25], np.float32)
"""Pixel standardisation of the image tower (fixed, not learnt from any data)."""

_TOKENIZERS: dict[int, open_clip.SimpleTokenizer] = {}


def tokenizer(context: int) -> open_clip.SimpleTokenizer:
    """open_clip's BPE tokenizer (the vocabulary file ships with the package) at ``context`` tokens."""
    if context not in _TOKENIZERS:
        _TOKENIZERS[context] = open_clip.SimpleTokenizer(context_length=context)
    return _TOKENIZERS[context]


def build_clip(cfg: Config) -> open_clip.CLIP:
    """An untrained ``open_clip.CLIP`` of the configured size (seed the global RNG first)."""
    vision = CLIPVisionCfg(
        layers=cfg.clip_layers,
        width=cfg.clip_width,
        head_width=cfg.clip_width // cfg.clip_heads,
        mlp_ratio=2.0,
        patch_size=cfg.clip_patch_size,
        image_size=cfg.clip_image_size,
    )
    text = CLIPTextCfg(
        context_length=cfg.clip_context,
        vocab_size=tokenizer(cfg.clip_context).vocab_size,
        width=cfg.clip_width,
        heads=cfg.clip_heads,
        layers=cfg.clip_layers,
        mlp_ratio=2.0,
    )
    return open_clip.CLIP(embed_dim=cfg.clip_embed_dim, vision_cfg=vision, text_cfg=text)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, h, w, 3)`` images -> standardised float ``(n, 3, h, w)``."""
    x = (np.asarray(images, np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def pairs_digest(images: np.ndarray, captions: list[str]) -> str:
    """sha256 of the training pairs (pixels and captions, in order): part of the model's cache key."""
    h = hashlib.sha256(f"{images.shape}:{images.dtype.str}:".encode())
    h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    h.update(json.dumps(captions).encode())
    return h.hexdigest()


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """CLIP's recipe: no weight decay on gains, biases, embeddings and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit_clip(
    cfg: Config, images: np.ndarray, captions: list[str], seed: int, checkpoint: Path | None = None
) -> tuple[open_clip.CLIP, dict]:
    """Train a fresh model on the pairs ``(images[i], captions[i])``; returns it (eval mode) and its history.

    Shuffled batches of ``clip_batch_size`` pairs (the last, smaller one kept), ``clip_epochs`` epochs,
    AdamW at ``clip_lr`` with 5% linear warm-up then cosine decay, open_clip's ``ClipLoss`` with the
    learnt temperature (its scale clamped at 100, as in CLIP, after every epoch rather than every step).
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    device = get_device()
    torch.manual_seed(seed)
    model = build_clip(cfg).to(device)
    x = to_tensor(images)
    tokens = tokenizer(cfg.clip_context)(captions)
    opt = torch.optim.AdamW(_param_groups(model, cfg.clip_weight_decay), lr=cfg.clip_lr, betas=(0.9, 0.98))
    steps = cfg.clip_epochs * math.ceil(len(x) / cfg.clip_batch_size)
    warm = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    loss_fn = open_clip.ClipLoss()

    def batches(_epoch: int, gen: torch.Generator):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.clip_batch_size):
            idx = order[i : i + cfg.clip_batch_size]
            yield x[idx].to(device), tokens[idx].to(device)

    def step_loss(m: open_clip.CLIP, batch):
        img, txt = batch
        image_features, text_features, logit_scale = m(img, txt)
        return loss_fn(image_features, text_features, logit_scale), len(img)

    def clamp(_epoch: int, _history: dict) -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    result = fit(model, opt, batches, step_loss, cfg.clip_epochs, generator=gen, scheduler=sched,
                 checkpoint=checkpoint, on_epoch_end=clamp, desc="clip")  # fmt: skip
    model.eval()
    history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    history["seconds"] = time.time() - start
    return model, history


def train_clip(cfg: Config, images: np.ndarray, captions: list[str], seed: int, label: str) -> Artifact:
    """The cached model trained on these pairs (``model.pt``, ``history.json``); built on first use."""

    def build(out: Path, checkpoints: Path) -> None:
        model, history = fit_clip(cfg, images, captions, seed, checkpoints)
        torch.save(model.state_dict(), out / "model.pt")
        (out / "history.json").write_text(json.dumps(history))

    params = {"label": label, "seed": seed, "pairs": pairs_digest(images, captions), "n": len(captions)}
    params |= {k: getattr(cfg, k) for k in CLIP_FIELDS}
    return cached(cfg.cache_dir, "clip_model", params, build, code_modules=["m4i_utils.models.training"])


CLIP_FIELDS = (
    *("clip_image_size", "clip_patch_size", "clip_width", "clip_layers", "clip_heads", "clip_embed_dim"),
    *("clip_context", "clip_epochs", "clip_batch_size", "clip_lr", "clip_weight_decay"),
)
"""The config fields that shape the model and its training (all in the cache key)."""


def load_clip(cfg: Config, art: Artifact) -> open_clip.CLIP:
    """The trained model of ``art`` in eval mode on the run's device."""
    model = build_clip(cfg)
    model.load_state_dict(torch.load(art.file("model.pt"), map_location="cpu", weights_only=True))
    return model.to(get_device()).eval()


@torch.no_grad()
def embed_images(model: open_clip.CLIP, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """L2-normalised image embeddings, ``(n, embed_dim)`` float32."""
    device = next(model.parameters()).device
    out = [
        model.encode_image(to_tensor(images[i : i + batch]).to(device), normalize=True).cpu().numpy()
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.text_projection.shape[1]), np.float32)


@torch.no_grad()
def embed_texts(model: open_clip.CLIP, texts: list[str], context: int, batch: int = 1024) -> np.ndarray:
    """L2-normalised text embeddings, ``(n, embed_dim)`` float32."""
    device = next(model.parameters()).device
    tok = tokenizer(context)
    out = [
        model.encode_text(tok(texts[i : i + batch]).to(device), normalize=True).cpu().numpy()
        for i in range(0, len(texts), batch)
    ]
    return np.concatenate(out)
