"""Multimodal feature extractor (MFE) of the feature-based attack (M4I section 3.2, eq. 2, appendix C.3).

Two branches map an image and a text into one 256-d space (``cfg.mfe_feature_size``):

- **image branch**: the frozen trunk features of ``cfg.mfe_family`` (default ``resnet``: the paper's MFE image
  encoder is ResNet-152 + a new layer; here the same frozen trunk as the captioners, see
  :mod:`m4i_utils.models.trunks`) -> trainable head Linear(D, 512) -> ReLU -> Linear(512, 256) -> BatchNorm1d.
  The paper's "new FC layer" is a single Linear; we use a 2-layer MLP head because the frozen trunk here is
  small and not ImageNet-trained (a linear head gave lower retrieval in our trials).
- **text branch** (authors' code): bag-of-words COUNT vector over a combined vocabulary (public captions of
  every configured dataset, count >= ``cfg.vocab_threshold``; ``<unk>`` counts unknown words, ``<pad>``,
  ``<start>``, ``<end>`` are never counted) -> Linear(V, 512) -> ReLU -> Linear(512, 256) -> BatchNorm1d.
  :func:`bow_vectors` is the ONLY text -> vector function, used at training and at attack time alike (the
  authors counted ``<start>``/``<end>`` at training time only; we do not repeat that).

Training (eq. 2): minimise the mean squared Euclidean distance ``||F_img(x) - F_txt(t)||^2 / d`` over the
attacker's ``public`` image-caption pairs (each of the ~5 captions is a pair), never a target or shadow set.
Both branches are trained jointly with Adam (``cfg.mfe_lr``, authors: 1e-3; the authors alternated image and
text epochs, joint training reaches the same objective with half the epochs).

**Collapse guard.** The pure distance objective is minimised trivially by mapping everything to one point.
Two measures prevent that: (1) both outputs end in ``BatchNorm1d(affine=False)``, so every dimension has zero
mean and unit variance per batch (the constant map is impossible); (2) a decorrelation penalty
(``cfg.mfe_cov_weight`` x the mean squared off-diagonal covariance of each branch's batch features, as in
VICReg / deep CCA) stops "dimensional collapse" (all 256 dimensions copying one direction). With both, eq. 2
becomes a deep-CCA-like objective whose minimum aligns matching pairs only. The report measures per-dimension
variance, the effective rank and image -> text retrieval recall@k on held-out public pairs.

One MFE per dataset (:func:`get_mfe`): it is trained on that dataset's public split, i.e. on the distribution
the attacker knows: the target's dataset in the unrestricted / data-only scenarios, the shadow's dataset in
the constrained one. The first ``ceil(cfg.mfe_holdout x n_public)`` public images (with all their captions;
this slice starts with the trunk's never-pretrained ``val`` slice) are held out for validation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import rng_for
from m4i_utils.data import bundles
from m4i_utils.data.datasets import corpus_fingerprint
from m4i_utils.data.records import Corpus
from m4i_utils.data.text import UNK, Vocabulary, tokenize
from m4i_utils.models import trunks

# Config fields that change a trained MFE (enter its cache key).
MFE_FIELDS = (
    "seed",
    "vocab_threshold",
    "mfe_family",
    "mfe_feature_size",
    "mfe_hidden",
    "mfe_epochs",
    "mfe_batch_size",
    "mfe_lr",
    "mfe_holdout",
    "mfe_cov_weight",
)
RECALL_KS = (1, 5, 10)


# ------------------------------------------------------------------------------------------- text


def bow_vectors(vocab: Vocabulary, texts: list[str]) -> torch.Tensor:
    """Bag-of-words COUNT vectors (N x V, float32) of ``texts`` (authors' MFE text input).

    Identical at training and attack time: tokens of :func:`m4i_utils.data.text.tokenize` are counted at their
    vocabulary id, unknown tokens at ``<unk>``; ``<pad>``/``<start>``/``<end>`` are never counted.
    """
    stoi = vocab.stoi
    unk = stoi[UNK]
    out = torch.zeros(len(texts), len(vocab))
    for i, text in enumerate(texts):
        for tok in tokenize(text):
            out[i, stoi.get(tok, unk)] += 1.0
    return out


def mfe_vocabulary(cfg: Config) -> Vocabulary:
    """Combined vocabulary of the public captions of every configured dataset (count >= vocab_threshold)."""
    caps = []
    for name in cfg.datasets:
        caps.extend(c for r in bundles.load_bundle(cfg, name).role("public").records for c in r.captions)
    return Vocabulary.build(caps, cfg.vocab_threshold)


# ------------------------------------------------------------------------------------------- model


class MFE(nn.Module):
    """Image branch (trunk features -> MLP -> BN) and text branch (BoW -> MLP -> BN); no affine BN shift."""

    def __init__(self, image_dim: int, vocab_size: int, feature_size: int = 256, hidden: int = 512) -> None:
        super().__init__()
        self.image = nn.Sequential(
            nn.Linear(image_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, feature_size),
            nn.BatchNorm1d(feature_size, affine=False),
        )
        self.text = nn.Sequential(
            nn.Linear(vocab_size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, feature_size),
            nn.BatchNorm1d(feature_size, affine=False),
        )


def decorrelation(z: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal covariance of batch features ``z`` (B x d) (VICReg covariance term)."""
    z = z - z.mean(0)
    cov = (z.T @ z) / max(len(z) - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return (off**2).sum() / z.shape[1]


def mfe_loss(
    model: MFE, img: torch.Tensor, bow: torch.Tensor, cov_weight: float
) -> tuple[torch.Tensor, float]:
    """Eq. 2 (mean squared Euclidean distance per dimension) + ``cov_weight`` x decorrelation of each branch.

    Returns:
        (total loss, the eq. 2 distance term as a float).
    """
    fi, ft = model.image(img), model.text(bow)
    dist = ((fi - ft) ** 2).mean()
    total = dist + cov_weight * (decorrelation(fi) + decorrelation(ft)) if cov_weight else dist
    return total, float(dist.detach())


# ------------------------------------------------------------------------------------------- training


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily run torch on ``n`` intra-op threads (small MLPs: 1 thread is ~10x faster on a busy CPU)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_kwargs(cfg: Config) -> dict:
    """:func:`train_mfe` sizes and optimisation options from the ``mfe_*`` fields of ``cfg``."""
    return {
        "feature_size": cfg.mfe_feature_size,
        "hidden": cfg.mfe_hidden,
        "epochs": cfg.mfe_epochs,
        "batch_size": cfg.mfe_batch_size,
        "lr": cfg.mfe_lr,
        "cov_weight": cfg.mfe_cov_weight,
    }


def train_mfe(
    img: torch.Tensor,
    bow: torch.Tensor,
    val_img: torch.Tensor | None = None,
    val_bow: torch.Tensor | None = None,
    *,
    feature_size: int = 256,
    hidden: int = 512,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    cov_weight: float = 1.0,
    seed: int = 0,
    desc: str = "mfe",
    checkpoint: str | Path | None = None,
) -> tuple[MFE, dict[str, list[float]]]:
    """Train an :class:`MFE` on pairs (``img[i]``, ``bow[i]``) jointly with Adam (eq. 2 + collapse guard).

    The loop is :func:`m4i_utils.models.training.fit`; ``checkpoint``: its per-epoch checkpoint folder.

    Returns:
        The model (eval mode) and the history: per-epoch ``train_loss`` (total), ``train_dist`` (eq. 2 term,
        mean over the epoch's batches) and, with validation pairs, ``heldout_dist`` (eval mode).
    """
    with torch_threads(1):
        return _train_mfe(
            img, bow, val_img, val_bow, feature_size, hidden, epochs, batch_size, lr, cov_weight, seed, desc,
            checkpoint,
        )  # fmt: skip


def _train_mfe(
    img, bow, val_img, val_bow, feature_size, hidden, epochs, batch_size, lr, cov_weight, seed, desc,
    checkpoint=None,
):  # fmt: skip
    from m4i_utils.models.training import fit

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = MFE(img.shape[1], bow.shape[1], feature_size, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(img)

    def batches(_epoch: int, gen: torch.Generator):
        perm = torch.randperm(n, generator=gen)
        steps = 0
        for start in range(0, n, batch_size):
            b = perm[start : start + batch_size]
            if len(b) < 2 or (len(b) < batch_size // 4 and steps):  # BN needs a real batch
                continue
            steps += 1
            yield b

    def step_loss(model: MFE, b: torch.Tensor):
        loss, d = mfe_loss(model, img[b], bow[b], cov_weight)
        return loss, 1, {"train_dist": d}

    validate = None
    if val_img is not None and val_bow is not None and len(val_img):
        validate = lambda m, _epoch: pair_distance(m, val_img, val_bow)  # noqa: E731
    fitted = fit(model, opt, batches, step_loss, epochs, generator=gen, validate=validate,
                 checkpoint=checkpoint, desc=desc).history  # fmt: skip
    hist: dict[str, list[float]] = {
        "train_loss": fitted["train_loss"],
        "train_dist": fitted.get("train_dist", [0.0] * len(fitted["train_loss"])),
        "heldout_dist": fitted.get("val_loss", []),
    }
    model.eval()
    return model, hist


@torch.no_grad()
def embed(model: MFE, img: torch.Tensor | None = None, bow: torch.Tensor | None = None):
    """Eval-mode features of the image and/or text branch (None for a branch not given)."""
    model.eval()
    fi = model.image(img) if img is not None else None
    ft = model.text(bow) if bow is not None else None
    return fi, ft


def pair_distance(model: MFE, img: torch.Tensor, bow: torch.Tensor) -> float:
    """Eq. 2 distance (mean squared difference per dimension) of matching pairs, eval mode."""
    fi, ft = embed(model, img, bow)
    return float(((fi - ft) ** 2).mean())


def retrieval_recall(
    img_feats: torch.Tensor, txt_feats: torch.Tensor, owner: np.ndarray, ks: tuple[int, ...] = RECALL_KS
) -> dict[str, float]:
    """Image -> text retrieval recall@k by Euclidean distance, and the chance level of each k.

    Args:
        img_feats: M x d features of M distinct images.
        txt_feats: P x d features of P captions; ``owner[p]`` is the image row of caption p.
    Returns:
        ``recall@k`` (fraction of images with one of their own captions among the k nearest captions) and
        ``chance@k`` (the same for a random ranking: ``1 - C(P - c, k) / C(P, k)`` averaged over images).
    """
    d = torch.cdist(img_feats, txt_feats)
    order = d.argsort(dim=1).numpy()
    owner = np.asarray(owner)
    hits = owner[order] == np.arange(len(img_feats))[:, None]
    counts = np.bincount(owner, minlength=len(img_feats))
    p = len(owner)
    out = {}
    for k in ks:
        k_eff = min(k, p)
        out[f"recall@{k}"] = float(hits[:, :k_eff].any(axis=1).mean())
        chance = [1.0 - math.comb(p - c, k_eff) / math.comb(p, k_eff) for c in counts]
        out[f"chance@{k}"] = float(np.mean(chance))
    return out


def collapse_stats(feats: torch.Tensor) -> dict[str, float]:
    """Per-dimension variance (min / median) and effective rank (participation ratio of the covariance)."""
    f = feats.double()
    var = f.var(dim=0)
    eig = torch.linalg.eigvalsh(torch.cov(f.T)).clamp(min=0)
    eff_rank = float(eig.sum() ** 2 / (eig**2).sum()) if float(eig.sum()) > 0 else 0.0
    return {"var_min": float(var.min()), "var_median": float(var.median()), "effective_rank": eff_rank}


def evaluate_mfe(model: MFE, img: torch.Tensor, bow: torch.Tensor, owner: np.ndarray) -> dict[str, float]:
    """Distance, retrieval recall@k vs chance and collapse statistics on pairs (``img`` one row per image)."""
    fi, ft = embed(model, img, bow)
    out = {"distance": float(((fi[owner] - ft) ** 2).mean())}
    out.update(retrieval_recall(fi, ft, owner))
    out.update({f"image_{k}": v for k, v in collapse_stats(fi).items()})
    out.update({f"text_{k}": v for k, v in collapse_stats(ft).items()})
    return out


# ------------------------------------------------------------------------------------------- public data


def public_features(cfg: Config, dataset: str, family: str) -> trunks.FeatureTable:
    """Cached attack-time trunk features (resize, no crop) of ``dataset``'s ``public`` split.

    :func:`m4i_utils.models.trunks.features_for` covers the captioner roles only; the MFE needs the public
    images,
    featurised by the same frozen trunk and the same preprocessing.
    """
    records = bundles.load_bundle(cfg, dataset).role("public")
    params = {**trunks.feature_params(cfg, family, dataset, "resize-nocrop-imagenet-norm"), "role": "public"}

    def build(out: Path) -> None:
        trunk = trunks.build_trunk(cfg, family)
        np.save(
            out / "features.npy", trunks.extract_features(trunk, records, cfg.trunk_input_size, 0, cfg.seed)
        )
        (out / "ids.json").write_text(json.dumps(records.ids))

    art = cached(
        cfg.cache_dir,
        "features_public",
        params,
        build,
        upstream=[corpus_fingerprint(records)],
        code_modules=["m4i_utils.models.trunks"],
    )
    ids = tuple(json.loads(art.file("ids.json").read_text()))
    return trunks.FeatureTable(art.key, ids, np.load(art.file("features.npy")))


def heldout_split(n_public: int, frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) row indices of the public split: the first ``ceil(frac x n)`` images are held out."""
    n_hold = min(max(1, math.ceil(frac * n_public)), n_public - 1)
    return np.arange(n_hold, n_public), np.arange(n_hold)


def pairs(corpus: Corpus, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Every (image row, caption) pair of ``corpus.records[rows]``: captions and their image position."""
    caps, owner = [], []
    for k, i in enumerate(rows):
        for c in corpus.records[int(i)].captions:
            caps.append(c)
            owner.append(k)
    return caps, np.asarray(owner, dtype=np.int64)


# ------------------------------------------------------------------------------------------- artifact


@dataclass(frozen=True)
class TrainedMFE:
    """A trained MFE of one dataset's public split with its vocabulary, history and held-out report."""

    dataset: str
    family: str
    key: str
    model: MFE
    vocab: Vocabulary
    history: dict
    report: dict

    def image_features(self, image_feats: torch.Tensor | np.ndarray) -> torch.Tensor:
        """F_img of frozen-trunk features (N x D) -> N x d."""
        x = torch.as_tensor(np.asarray(image_feats, dtype=np.float32))
        return embed(self.model, img=x)[0]

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """F_txt of texts (generated or reference captions) -> N x d."""
        return embed(self.model, bow=bow_vectors(self.vocab, list(texts)))[1]


def mfe_params(cfg: Config, dataset: str) -> dict:
    """Every parameter that affects the MFE of ``dataset`` (the cache key's params)."""
    return {
        "dataset": dataset,
        "vocab_datasets": list(cfg.datasets),
        **{f: getattr(cfg, f) for f in MFE_FIELDS},
        "schedule": "joint",
        "guard": "bn-noaffine+decorrelation",
    }


@functools.lru_cache(maxsize=8)
def get_mfe(cfg: Config, dataset: str) -> TrainedMFE:
    """Load or train (cached, kind ``"mfe"``) the MFE on ``dataset``'s public split (M4I section 3.2).

    Args:
        cfg: profile; ``mfe_*`` fields set the architecture and training.
        dataset: whose public split trains it (the distribution the attacker knows).
    Returns:
        The :class:`TrainedMFE` (model in eval mode), with ``history`` (per-epoch train loss, train and
        held-out distance) and ``report`` (train / held-out distance, recall@k vs chance, collapse stats,
        sizes, training seconds).
    """
    bundle = bundles.load_bundle(cfg, dataset)
    public = bundle.role("public")
    table = public_features(cfg, dataset, cfg.mfe_family)
    upstream = [table.key] + [bundles.load_bundle(cfg, d).splits.key for d in cfg.datasets]

    def build(out: Path, checkpoints: Path) -> None:
        vocab = mfe_vocabulary(cfg)
        feats = table.take(public)
        tr_rows, ho_rows = heldout_split(len(public), cfg.mfe_holdout)
        tr_caps, tr_owner = pairs(public, tr_rows)
        ho_caps, ho_owner = pairs(public, ho_rows)
        tr_img, ho_img = feats[tr_rows], feats[ho_rows]
        tr_bow, ho_bow = bow_vectors(vocab, tr_caps), bow_vectors(vocab, ho_caps)
        seed = int(rng_for(cfg.seed, "mfe", dataset).integers(2**31))
        start = time.time()
        model, hist = train_mfe(
            tr_img[tr_owner],
            tr_bow,
            ho_img[ho_owner],
            ho_bow,
            **train_kwargs(cfg),
            seed=seed,
            desc=f"mfe {dataset}",
            checkpoint=checkpoints,
        )
        seconds = time.time() - start
        # Recall on train: a same-size sample of train images, so chance levels match the held-out ones.
        sample = np.sort(rng_for(cfg.seed, "mfe_eval", dataset).permutation(len(tr_rows))[: len(ho_rows)])
        s_caps, s_owner = pairs(public, tr_rows[sample])
        report = {
            "dataset": dataset,
            "family": cfg.mfe_family,
            "n_train_images": len(tr_rows),
            "n_train_pairs": len(tr_caps),
            "n_heldout_images": len(ho_rows),
            "n_heldout_pairs": len(ho_caps),
            "vocab_size": len(vocab),
            "image_dim": int(feats.shape[1]),
            "train_seconds": round(seconds, 2),
            "train": evaluate_mfe(model, tr_img[sample], bow_vectors(vocab, s_caps), s_owner),
            "heldout": evaluate_mfe(model, ho_img, ho_bow, ho_owner),
        }
        torch.save(model.state_dict(), out / "mfe.pt")
        vocab.save(out / "vocab.json")
        (out / "history.json").write_text(json.dumps(hist))
        (out / "report.json").write_text(json.dumps(report, indent=1))

    art = cached(cfg.cache_dir, "mfe", mfe_params(cfg, dataset), build, upstream=upstream)
    vocab = Vocabulary.load(art.file("vocab.json"))
    model = MFE(table.array.shape[1], len(vocab), cfg.mfe_feature_size, cfg.mfe_hidden)
    model.load_state_dict(torch.load(art.file("mfe.pt"), map_location="cpu", weights_only=True))
    model.eval()
    return TrainedMFE(
        dataset,
        cfg.mfe_family,
        art.key,
        model,
        vocab,
        json.loads(art.file("history.json").read_text()),
        json.loads(art.file("report.json").read_text()),
    )


def _train_job(cfg: Config, dataset: str) -> str:
    """Executor job: train (or find) the MFE of ``dataset`` in the cache; returns its key."""
    return get_mfe(cfg, dataset).key


def train_mfes(cfg: Config, datasets: tuple[str, ...]) -> dict[str, TrainedMFE]:
    """``{dataset: TrainedMFE}``; the MFEs train as independent jobs on the executor
    (:func:`m4i_utils.core.executor.run_jobs`) and are then loaded from the cache."""
    from m4i_utils.core.executor import run_jobs

    run_jobs(cfg, _train_job, [(cfg, d) for d in datasets], desc="MFEs")
    return {d: get_mfe(cfg, d) for d in datasets}


# ------------------------------------------------------------------------------------------- FB features


def fb_features(
    mfe: TrainedMFE, image_feats: torch.Tensor | np.ndarray, captions: list[str], signed: bool = True
) -> np.ndarray:
    """FB attack features ``z = F_img(image) - F_txt(generated caption)`` (M4I section 3.2), N x d float32.

    Args:
        mfe: the trained extractor.
        image_feats: frozen-trunk features (family ``mfe.family``) of the queried images, N x D.
        captions: the caption the captioner generated for each image.
        signed: True = the paper's signed difference; False = the authors' code ``|F_img - F_txt|``.
    """
    if len(captions) != len(image_feats):
        raise ValueError(f"{len(image_feats)} images but {len(captions)} captions")
    z = mfe.image_features(image_feats) - mfe.text_features(captions)
    z = z if signed else z.abs()
    return z.numpy().astype(np.float32)


def fb_features_for(
    cfg: Config,
    mfe: TrainedMFE,
    dataset: str,
    family_for_images: str | None,
    corpus: Corpus,
    captions: list[str],
    signed: bool = True,
) -> np.ndarray:
    """:func:`fb_features` of ``corpus`` (records of a captioner role of ``dataset``), cached trunk features.

    The image branch reads the frozen-trunk features its head was trained on (``mfe.family``: the attacker's
    own encoder), whatever the captioner's architecture; ``family_for_images`` (None = ``mfe.family``) must
    match it.
    """
    family = family_for_images or mfe.family
    if family != mfe.family:
        raise ValueError(f"the MFE's image branch takes {mfe.family!r} trunk features, not {family!r}")
    table = trunks.features_for(cfg, dataset, family)
    return fb_features(mfe, table.take(corpus), captions, signed=signed)
