"""R2GenCMN-style report generator (M4I appendix G target) and the medical shadows' CNN+LSTM adapter.

Model (Chen et al. 2021, "Cross-modal memory networks for radiology report generation", ACL-IJCNLP; scaled by
the profile):

* visual extractor: a small CNN (3 stride-2 conv blocks, trained end to end) -> a grid of patch features
  (64 px -> 8 x 8 = 64 patches of ``d_model``) plus learned positions. R2GenCMN uses a frozen-then-finetuned
  ResNet-101 (7 x 7 patches); no ImageNet ResNet weights are available offline here.
* cross-modal memory (:class:`CrossModalMemory`): a learned ``memory_size x d_model`` matrix queried by
  multi-head attention keeping the top-k slots per query; the responses are ADDED to the visual features
  (encoder input) and to the token embeddings (decoder input), as in R2GenCMN.
* a Transformer encoder-decoder (``torch.nn.Transformer``), teacher forcing, cross-entropy ignoring ``<pad>``;
  Adam with weight decay 5e-5.
* decoding: batched beam search (:meth:`R2GenCMN.beam`, width 3 in R2GenCMN) or greedy.

Also here: the fixed image descriptor of the attacker's own encoder (:func:`pooled_pixels`) and the
data-only / constrained shadows' captioning architecture adapter (:func:`train_lstm_captioner`). The
experiment (splits, targets and shadows, utility, attacks, patient-level view) is
:mod:`m4i_utils.experiments.report_generation`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from m4i_utils.data.medical import ReportTokenizer


class CrossModalMemory(nn.Module):
    """Learned memory matrix queried by multi-head attention over its top-k slots (R2GenCMN's CMN)."""

    def __init__(self, d_model: int, size: int, heads: int, topk: int) -> None:
        super().__init__()
        self.memory = nn.Parameter(torch.randn(size, d_model) / math.sqrt(d_model))
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)
        self.heads, self.topk = heads, min(topk, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Responses (B x L x d) of the memory to queries ``x`` (B x L x d)."""
        b, n, d = x.shape
        h, dh = self.heads, d // self.heads
        q = self.q(x).view(b, n, h, dh).transpose(1, 2)  # B h L dh
        k = self.k(self.memory).view(-1, h, dh).transpose(0, 1)  # h M dh
        v = self.v(self.memory).view(-1, h, dh).transpose(0, 1)
        scores = torch.einsum("bhld,hmd->bhlm", q, k) / math.sqrt(dh)
        top, idx = scores.topk(self.topk, dim=-1)  # B h L k
        w = top.softmax(-1)
        vsel = v[torch.arange(h)[None, :, None, None], idx]  # B h L k dh
        out = (w.unsqueeze(-1) * vsel).sum(-2).transpose(1, 2).reshape(b, n, d)
        return self.out(out)


class R2GenCMN(nn.Module):
    """CNN patch extractor + cross-modal memory + Transformer encoder-decoder (see module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        image_size: int = 64,
        d_model: int = 128,
        layers: int = 2,
        heads: int = 4,
        d_ff: int = 256,
        memory_size: int = 256,
        topk: int = 8,
        dropout: float = 0.1,
        max_len: int = 60,
    ) -> None:
        super().__init__()
        self.visual = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, d_model, 4, stride=4),
            nn.BatchNorm2d(d_model),
            nn.ReLU(),
        )
        n_patches = math.ceil(image_size / 8) ** 2
        self.patch_pos = nn.Parameter(torch.zeros(1, n_patches, d_model))
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.tok_pos = nn.Parameter(torch.zeros(1, max_len + 2, d_model))
        self.cmn = CrossModalMemory(d_model, memory_size, heads, topk)
        self.transformer = nn.Transformer(
            d_model, heads, layers, layers, d_ff, dropout, batch_first=True, norm_first=False
        )
        self.logit = nn.Linear(d_model, vocab_size)
        self.d_model, self.max_len = d_model, max_len

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B x S x S, uint8 or float in [0, 1]) -> encoder memory (B x P x d)."""
        x = images.float().unsqueeze(1)
        x = (x / 255.0 if images.dtype == torch.uint8 else x) - 0.5
        feats = self.visual(x).flatten(2).transpose(1, 2) + self.patch_pos
        feats = feats + self.cmn(feats)
        return self.transformer.encoder(feats)

    def decode_step(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B x T x V) of the next token at each position of ``tokens`` (B x T)."""
        t = tokens.shape[1]
        emb = self.embed(tokens) * math.sqrt(self.d_model) + self.tok_pos[:, :t]
        emb = emb + self.cmn(emb)
        mask = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        out = self.transformer.decoder(emb, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.logit(out)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B x (T-1) x V) predicting ``tokens[:, 1:]``."""
        return self.decode_step(self.encode(images), tokens[:, :-1])

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Batched greedy decoding: B x T ids (without ``<bos>``; ``<eos>``/``<pad>`` after the end)."""
        return self.beam(images, 1, max_len)

    def _embed_at(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Decoder input (token embedding + position + memory response) of ``tokens`` (B) at ``pos``."""
        emb = self.embed(tokens[:, None]) * math.sqrt(self.d_model) + self.tok_pos[:, pos : pos + 1]
        return emb + self.cmn(emb)

    def _incremental(self, memory: torch.Tensor, x: torch.Tensor, caches: list[torch.Tensor]):
        """One decoding step with cached layer inputs (eval mode; exact same result as the causal full pass).

        ``x``: B x 1 x d input of the newest position; ``caches[l]``: B x t x d inputs of layer l at the
        earlier positions. Returns (next-token log-probabilities B x V, updated caches).
        """
        new_caches = []
        for layer, cache in zip(self.transformer.decoder.layers, caches, strict=True):
            keys = torch.cat([cache, x], dim=1)
            new_caches.append(keys)
            x = layer.norm1(x + layer.self_attn(x, keys, keys, need_weights=False)[0])
            x = layer.norm2(x + layer.multihead_attn(x, memory, memory, need_weights=False)[0])
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        if self.transformer.decoder.norm is not None:
            x = self.transformer.decoder.norm(x)
        return self.logit(x[:, 0]).log_softmax(-1), new_caches

    @torch.no_grad()
    def beam(self, images: torch.Tensor, width: int = 3, max_len: int | None = None) -> torch.Tensor:
        """Batched beam search (sum of log-probabilities, finished beams frozen, cached decoder states):
        B x T best ids (without ``<bos>``; ``<eos>`` then ``<pad>`` after the end)."""
        self.eval()
        max_len = max_len or self.max_len
        b = images.shape[0]
        memory = self.encode(images).repeat_interleave(width, dim=0)
        seqs = torch.ones(b * width, 1, dtype=torch.long)
        caches = [memory.new_zeros(b * width, 0, self.d_model) for _ in self.transformer.decoder.layers]
        scores = torch.zeros(b, width)
        scores[:, 1:] = float("-inf")  # start from one beam per image
        done = torch.zeros(b * width, dtype=torch.bool)
        for pos in range(max_len + 1):
            logp, caches = self._incremental(memory, self._embed_at(seqs[:, -1], pos), caches)
            scores, src, seqs, done = _beam_step(scores, logp, seqs, done, b, width)
            caches = [c[src] for c in caches]
            if bool(done.all()):
                break
        return seqs.view(b, width, -1)[:, 0, 1:]  # topk is sorted: beam 0 is the best

    @torch.no_grad()
    def beam_reference(
        self, images: torch.Tensor, width: int = 3, max_len: int | None = None
    ) -> torch.Tensor:
        """:meth:`beam` without the cache (recomputes the decoder over the prefix): reference for tests."""
        self.eval()
        max_len = max_len or self.max_len
        b = images.shape[0]
        memory = self.encode(images).repeat_interleave(width, dim=0)
        seqs = torch.ones(b * width, 1, dtype=torch.long)
        scores = torch.zeros(b, width)
        scores[:, 1:] = float("-inf")
        done = torch.zeros(b * width, dtype=torch.bool)
        for _ in range(max_len + 1):
            logp = self.decode_step(memory, seqs)[:, -1].log_softmax(-1)
            scores, _, seqs, done = _beam_step(scores, logp, seqs, done, b, width)
            if bool(done.all()):
                break
        return seqs.view(b, width, -1)[:, 0, 1:]


def _beam_step(
    scores: torch.Tensor, logp: torch.Tensor, seqs: torch.Tensor, done: torch.Tensor, b: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One beam-search step: extend every beam by every token, keep the ``width`` best per image.

    Finished beams only extend with ``<pad>`` at no cost. Returns the new scores (B x width), the source beam
    of each kept hypothesis (B*width), the extended sequences and the updated finished flags.
    """
    vsz = logp.shape[-1]
    frozen = torch.full_like(logp, float("-inf"))
    frozen[:, 0] = 0.0
    logp = torch.where(done[:, None], frozen, logp)
    total = (scores.view(-1, 1) + logp).view(b, width * vsz)
    scores, flat = total.topk(width, dim=-1)
    src = ((flat // vsz) + torch.arange(b)[:, None] * width).view(-1)
    tok = (flat % vsz).view(-1)
    seqs = torch.cat([seqs[src], tok[:, None]], dim=1)
    done = done[src] | (tok == 2) | (tok == 0)
    return scores, src, seqs, done


def build_model(cfg, vocab_size: int) -> R2GenCMN:
    """An :class:`R2GenCMN` sized by the ``med_*`` fields of ``cfg``."""
    return R2GenCMN(
        vocab_size,
        image_size=cfg.med_image_size,
        d_model=cfg.med_d_model,
        layers=cfg.med_layers,
        heads=cfg.med_heads,
        d_ff=cfg.med_d_ff,
        memory_size=cfg.med_memory_size,
        topk=cfg.med_topk,
        dropout=cfg.med_dropout,
        max_len=cfg.med_max_len,
    )


def train_r2gen(
    model: R2GenCMN,
    images: torch.Tensor,
    tokens: torch.Tensor,
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 5e-5,
    seed: int = 0,
    desc: str = "r2gen",
    checkpoint: str | Path | None = None,
) -> dict[str, list[float]]:
    """Teacher-forced training with Adam (weight decay 5e-5, R2GenCMN); returns per-epoch loss and seconds.

    The loop is :func:`m4i_utils.models.training.fit`; ``checkpoint``: its per-epoch checkpoint folder.
    """
    from m4i_utils.models.training import fit

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def batches(_epoch: int, gen: torch.Generator):
        perm = torch.randperm(len(images), generator=gen)
        for s in range(0, len(perm), batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) >= 2:
                yield idx

    def step_loss(model: R2GenCMN, idx: torch.Tensor):
        tok = tokens[idx]
        tok = tok[:, : int((tok != 0).sum(1).max())]
        logits = model(images[idx], tok)
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1), ignore_index=0
        )
        return loss, len(idx)

    hist = fit(model, opt, batches, step_loss, epochs, generator=gen, loss_divisor=len(images),
               checkpoint=checkpoint, desc=desc).history  # fmt: skip
    model.eval()
    return {"train_loss": hist["train_loss"], "epoch_seconds": hist["epoch_seconds"]}


def generate(
    model: R2GenCMN, images: torch.Tensor, tok: ReportTokenizer, beam: int, batch: int = 128
) -> list[str]:
    """Reports for ``images`` (beam search, or greedy for ``beam`` 1), as cleaned token text."""
    out = []
    for s in tqdm(range(0, len(images), batch), desc=f"decode beam={beam}", leave=False):
        ids = model.beam(images[s : s + batch], max(beam, 1))
        out += [tok.decode(row) for row in ids.tolist()]
    return out


# ------------------------------------------------------------------------------------------- shadows


def pooled_pixels(images: np.ndarray, grid: int = 16) -> np.ndarray:
    """Average-pooled ``grid x grid`` pixels in [0, 1] (N x grid^2): the attacker's fixed image descriptor.

    Used as the frozen "trunk" of the medical data-only shadow (captioning architecture) and as the MFE image
    input in the unrestricted / data-only FB attacks (no pretrained medical encoder is available offline).
    """
    n, s, _ = images.shape
    g = min(grid, s)
    x = torch.from_numpy(images).float().unsqueeze(1) / 255.0
    return nn.functional.adaptive_avg_pool2d(x, g).reshape(n, g * g).numpy().astype(np.float32)


def train_lstm_captioner(cfg, feats: np.ndarray, reports: list[str], seed: int, checkpoint=None):
    """The captioning architecture of notebook 02 (Linear+BN encoder on frozen features, LSTM decoder) on
    medical reports: the data-only shadow. Returns ``(model, vocabulary)``.

    Reports are encoded with the captioning vocabulary (:class:`m4i_utils.data.text.Vocabulary`, count >=
    ``cfg.med_vocab_threshold``) and cut at ``cfg.med_max_len`` tokens; training is
    :func:`m4i_utils.models.captioner.train_model` with ``cfg.med_lstm_epochs`` epochs (``checkpoint``: its
    checkpoint folder).
    """
    import dataclasses

    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models import captioner

    vocab = Vocabulary.build(reports, cfg.med_vocab_threshold)
    seqs = [vocab.encode(r, max_len=cfg.med_max_len) for r in reports]
    tokens = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for k, s in enumerate(seqs):
        tokens[k, : len(s)] = torch.tensor(s)
    torch.manual_seed(seed)
    model = captioner.EncoderDecoder(feats.shape[1], len(vocab), cfg.embed_size, cfg.hidden_size)
    lcfg = dataclasses.replace(cfg, epochs=cfg.med_lstm_epochs)
    captioner.train_model(
        model,
        torch.from_numpy(feats),
        torch.arange(len(reports)),
        tokens,
        lcfg,
        seed=seed,
        desc="lstm shadow",
        checkpoint=checkpoint,
    )
    return model.eval(), vocab


def lstm_generate(cfg, model, vocab, feats: np.ndarray) -> list[str]:
    """Greedy reports (``cfg.med_max_len`` tokens) of the LSTM captioner for feature rows."""
    from m4i_utils.models import captioner

    return captioner.decode(model, torch.from_numpy(feats), vocab, cfg.med_max_len + 2, 1)
