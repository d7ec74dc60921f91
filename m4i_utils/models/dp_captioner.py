"""The DP-SGD captioner of the defenses (M4I section 5, notebook 09): an Opacus-compatible Show-and-Tell
captioner and its DP training.

DP-SGD (Opacus) trains the trainable part on the frozen cached trunk features: ``nn.LSTM`` ->
``opacus.layers.DPLSTM``, the trainable ``BatchNorm1d`` -> ``GroupNorm`` (:class:`DPEncoderDecoder`), Poisson
sampling, flat clipping, noise calibrated by ``make_private_with_epsilon`` (:func:`make_private`,
:func:`train_dp`). **Privacy unit: the image** (all of its captions): one DP sample is an image; each time it
is sampled one of its captions is drawn at random (data-independent), so a per-sample gradient depends on that
image's data only (:func:`per_image_loss`). The attack's membership unit is the image, so the accountant's
epsilon is directly comparable with the one-run audit of :func:`m4i_utils.attacks.dp_audit.one_run_audit`.
Before DP fine-tuning, :func:`pretrain_public` trains the model without noise on public images (outside the
accounting: they never touch the members). The cached builder is
:func:`m4i_utils.experiments.dp_study.study_model`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from m4i_utils.core.config import Config
from m4i_utils.data.text import Vocabulary
from m4i_utils.models.captioner import EncoderDecoder, make_optimizer
from m4i_utils.models.training import fit


class DPEncoderDecoder(EncoderDecoder):
    """:class:`EncoderDecoder` with Opacus-compatible layers: ``DPLSTM`` and ``GroupNorm``.

    See docs/paper_notes.md, section 'M4I: defenses'.
    """

    def __init__(
        self, feat_dim: int, vocab_size: int, embed_size: int = 256, hidden_size: int = 512, groups: int = 32
    ) -> None:
        from opacus.layers import DPLSTM

        super().__init__(feat_dim, vocab_size, embed_size, hidden_size)
        self.enc_bn = nn.GroupNorm(math.gcd(groups, embed_size), embed_size)
        self.lstm = DPLSTM(embed_size, hidden_size, num_layers=1, batch_first=True)
        # fixed standardisation of the trunk features, from public images (set_feature_stats)
        self.register_buffer("feat_mean", torch.zeros(feat_dim))
        self.register_buffer("feat_std", torch.ones(feat_dim))

    def set_feature_stats(self, public_feats: torch.Tensor) -> DPEncoderDecoder:
        """Standardise the trunk features by the per-dimension mean and std of ``public_feats`` (features of
        public images: outside the accounting, they never touch the members).

        BatchNorm, which GroupNorm replaces, removed the feature mean shared by all images of a batch;
        GroupNorm normalises within one image and keeps it, so without this the image-specific part of the
        embedding is small beside the shared part and the decoder learns to ignore the image (every image
        got the same caption).
        """
        self.feat_mean.copy_(public_feats.mean(0))
        self.feat_std.copy_(public_feats.std(0).clamp(min=1e-6))
        return self

    def encode(self, feats: torch.Tensor) -> torch.Tensor:
        """Trunk features (B x D) -> standardised -> image embedding (B x embed)."""
        return self.enc_bn(self.enc_linear((feats - self.feat_mean) / self.feat_std))


def caption_tensor(corpus, vocab: Vocabulary, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: padded token ids (N x C x L, C = most captions of an image) and caption counts (N)."""
    seqs = [[vocab.encode(c, max_len=max_len) for c in rec.captions] for rec in corpus.records]
    n_caps = torch.tensor([len(s) for s in seqs])
    length = max(len(t) for s in seqs for t in s)
    tokens = torch.zeros(len(seqs), int(n_caps.max()), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        for j, t in enumerate(s):
            tokens[i, j, : len(t)] = torch.tensor(t)
    return tokens, n_caps


def per_image_loss(model: nn.Module, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each sample's own mean token cross-entropy (no cross-sample normalisation, so
    a per-sample gradient depends on that sample only)."""
    length = int((tokens != 0).sum(1).max())
    tokens = tokens[:, :length]
    logits = model(feats, tokens)
    ce = nn.functional.cross_entropy(logits.transpose(1, 2), tokens, ignore_index=0, reduction="none")
    mask = (tokens != 0).float()
    return ((ce * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def _dp_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The DP study's optimizer (``def_dp_optimizer`` at ``def_dp_lr``, no weight decay) for ``model``."""
    return make_optimizer(
        dataclasses.replace(cfg, optimizer=cfg.def_dp_optimizer, lr=cfg.def_dp_lr, weight_decay=0.0),
        model.parameters(),
    )


def pretrain_public(
    model: DPEncoderDecoder,
    feats: torch.Tensor,
    tokens: torch.Tensor,
    n_caps: torch.Tensor,
    cfg: Config,
    passes: int,
    seed: int = 0,
    desc: str = "public init",
) -> dict[str, Any]:
    """Non-private training of ``model`` on **public** images (the standard public-pretraining step before
    DP fine-tuning, e.g. Li et al. 2022, De et al. 2022): shuffled batches of ``cfg.def_dp_batch_size``
    images, one random caption per image and step, the DP optimizer and learning rate, ``passes`` passes.
    Public images never touch the members, so this step is outside the accounting by construction.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = _dp_optimizer(cfg, model)
    size = cfg.def_dp_batch_size

    def batches(_epoch: int, gen: torch.Generator):
        order = torch.randperm(len(feats), generator=gen)
        for start in range(0, len(order), size):
            i = order[start : start + size]
            pick = (torch.rand(len(i), generator=gen) * n_caps[i]).long()
            yield feats[i], tokens[i, pick]

    def step_loss(m: nn.Module, batch):
        return per_image_loss(m, *batch), len(batch[0])

    hist = fit(model, opt, batches, step_loss, passes, generator=gen, desc=desc).history
    return {"public_train_loss": hist["train_loss"], "public_passes": int(passes)}


def make_private(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader,
    target_epsilon: float | None,
    delta: float,
    epochs: int,
    max_grad_norm: float,
) -> tuple[nn.Module, torch.optim.Optimizer, Any, Any]:
    """Wrap a model, its optimizer and its data loader for DP-SGD with Opacus (Abadi et al. 2016).

    Returns ``(module, optimizer, data_loader, engine)``:

    * the module computes per-sample gradients (``GradSampleModule``);
    * the optimizer clips each sample's gradient to ``max_grad_norm`` (one norm over all parameters) and adds
      Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` to their sum
      (``DPOptimizer``);
    * the loader draws Poisson-sampled batches (``DPDataLoader``), the sampling the accountant assumes;
    * the engine's PRV accountant gives the epsilon spent at ``delta``.

    ``make_private_with_epsilon`` searches the noise multiplier that keeps the accountant's epsilon after
    ``epochs`` passes within ``target_epsilon`` (to the search's tolerance). With ``target_epsilon=None``
    the noise is 0: the **non-private control**, with the same sampling, clipping and optimizer.
    """
    from opacus import PrivacyEngine

    engine = PrivacyEngine(accountant="prv")
    common = {"module": module, "optimizer": optimizer, "data_loader": data_loader,
              "max_grad_norm": max_grad_norm}  # fmt: skip
    if target_epsilon is None:
        return (*engine.make_private(noise_multiplier=0.0, **common), engine)
    return (*engine.make_private_with_epsilon(target_epsilon=target_epsilon, target_delta=delta,
                                              epochs=epochs, **common), engine)  # fmt: skip


def train_dp(
    model: DPEncoderDecoder,
    feats: torch.Tensor,
    tokens: torch.Tensor,
    n_caps: torch.Tensor,
    cfg: Config,
    target_epsilon: float | None,
    epochs: int,
    seed: int = 0,
    desc: str = "dp",
    checkpoint: str | Path | None = None,
    privatize=make_private,
) -> dict[str, Any]:
    """DP-SGD (Opacus, Poisson sampling) on per-image samples; returns the loss curve and the accountant's
    epsilon at ``cfg.def_dp_delta``.

    Args:
        feats: N x D frozen trunk features; tokens: N x C x L; n_caps: N captions per image.
        target_epsilon: the budget ``make_private_with_epsilon`` calibrates the noise for; ``None`` trains
            the **non-private control**: the same Poisson sampling, per-sample clipping and optimizer, noise 0
            (its epsilon is reported as infinite).
        epochs: passes over the images (expected).
        checkpoint: per-epoch checkpoint folder of :func:`m4i_utils.models.training.fit` (model, optimizer,
            accountant, RNGs); a run started again with it resumes after its last completed epoch.
        privatize: the function that wraps the model, optimizer and loader for DP-SGD, with the signature
            and return value of :func:`make_private` (the default; course assignment 4 passes the
            student's own).
    """
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(feats, tokens, n_caps), batch_size=cfg.def_dp_batch_size)
    opt = _dp_optimizer(cfg, model)
    dp_model, dp_opt, dp_loader, engine = privatize(
        model, opt, loader, target_epsilon, cfg.def_dp_delta, epochs, cfg.def_dp_max_grad_norm
    )

    def batches(_epoch: int, gen: torch.Generator):
        for f, t, k in dp_loader:
            if len(f) == 0:  # Poisson sampling drew nobody (probability (1-q)^N): no update
                yield None
                continue
            pick = (torch.rand(len(f), generator=gen) * k).long()
            yield f, t[torch.arange(len(f)), pick]

    def step_loss(m: nn.Module, batch):
        return None if batch is None else (per_image_loss(m, *batch), len(batch[0]))

    # The Poisson sampler and the noise draw from torch's global RNG, which the checkpoint holds with the
    # (original) optimizer state and the accountant's history: a killed DP run resumes like the others.
    fitted = fit(dp_model, dp_opt, batches, step_loss, epochs, generator=gen, checkpoint=checkpoint,
                 extra_state={"accountant": engine.accountant}, desc=desc).history  # fmt: skip
    hist: dict[str, Any] = {
        "train_loss": fitted["train_loss"],
        "epoch_seconds": fitted["epoch_seconds"],
        "empty_batches": int(sum(fitted["skipped_batches"])),
    }
    private = target_epsilon is not None
    hist.update(
        epsilon=float(engine.get_epsilon(cfg.def_dp_delta)) if private else math.inf,
        target_epsilon=float(target_epsilon) if private else math.inf,
        delta=float(cfg.def_dp_delta),
        noise_multiplier=float(dp_opt.noise_multiplier),
        sample_rate=float(1.0 / len(dp_loader)),
        steps=int(epochs * len(dp_loader)),
        epochs=int(epochs),
        privacy_unit="image (all its captions)",
    )
    return hist
