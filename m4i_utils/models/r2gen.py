"""R2GenCMN-style report generator (M4I appendix G target) and the medical attack pipeline pieces.

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

Also here: the fixed image descriptor of the attacker's own encoder (:func:`pooled_pixels`), the data-only /
constrained shadows' captioning architecture adapter (:func:`train_lstm_captioner`), utility metrics and the
patient-level aggregation of attack scores.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from m4i_utils.core.metrics import AttackResult
from m4i_utils.core.runtime import rng_for
from m4i_utils.data.medical import MedCorpus, ReportTokenizer, load_med_corpus, patient_splits, report_tokens
from m4i_utils.signals.text_similarity import paired_difference, utility_metrics


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
) -> dict[str, list[float]]:
    """Teacher-forced training with Adam (weight decay 5e-5, R2GenCMN); returns per-epoch loss and seconds."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    hist: dict[str, list[float]] = {"train_loss": [], "epoch_seconds": []}
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        start, total = time.time(), 0.0
        model.train()
        perm = torch.randperm(len(images), generator=gen)
        for s in range(0, len(perm), batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) < 2:
                continue
            tok = tokens[idx]
            tok = tok[:, : int((tok != 0).sum(1).max())]
            logits = model(images[idx], tok)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1), ignore_index=0
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        hist["train_loss"].append(total / len(images))
        hist["epoch_seconds"].append(time.time() - start)
    model.eval()
    return hist


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


def train_lstm_captioner(cfg, feats: np.ndarray, reports: list[str], seed: int):
    """The captioning architecture of notebook 02 (Linear+BN encoder on frozen features, LSTM decoder) on
    medical reports: the data-only shadow. Returns ``(model, vocabulary)``.

    Reports are encoded with the captioning vocabulary (:class:`m4i_utils.data.text.Vocabulary`, count >=
    ``cfg.med_vocab_threshold``) and cut at ``cfg.med_max_len`` tokens; training is
    :func:`m4i_utils.models.captioner.train_model` with ``cfg.med_lstm_epochs`` epochs.
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
    )
    return model.eval(), vocab


def lstm_generate(cfg, model, vocab, feats: np.ndarray) -> list[str]:
    """Greedy reports (``cfg.med_max_len`` tokens) of the LSTM captioner for feature rows."""
    from m4i_utils.models import captioner

    return captioner.decode(model, torch.from_numpy(feats), vocab, cfg.med_max_len + 2, 1)


# ------------------------------------------------------------------------------------------- metrics


def clean_tokens(text: str) -> str:
    """R2Gen-cleaned tokens of a report without sentence ends, space-joined: what utility is computed on."""
    return " ".join(t for t in report_tokens(text) if t != ".")


def constant_report(train_reports: list[str]) -> str:
    """The most frequent (cleaned) training report; ties -> the lexicographically first."""
    counts = Counter(" ".join(report_tokens(r)) for r in train_reports)
    best = max(counts.values())
    return min(c for c, k in counts.items() if k == best)


def patient_level(scores: np.ndarray, labels: np.ndarray, patients: list[str], min_studies: int = 1):
    """Mean attack score per patient (patients are wholly member or non-member), for patients with at least
    ``min_studies`` studies. Returns ``(scores, labels, n_studies)`` per patient."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    keep = [ix for ix in groups.values() if len(ix) >= min_studies]
    s = np.array([scores[ix].mean() for ix in keep])
    y = np.array([labels[ix[0]] for ix in keep])
    if any(len(set(labels[ix].tolist())) > 1 for ix in keep):
        raise ValueError("a patient has both member and non-member studies; split by patient")
    return s, y, np.array([len(ix) for ix in keep])


# ------------------------------------------------------------------------------------------- pipeline

MED_FIELDS = (
    "seed",
    "med_source",
    "med_n_studies",
    "med_image_size",
    "med_n_target_members",
    "med_n_target_nonmembers",
    "med_n_target_test",
    "med_n_shadow_members",
    "med_n_shadow_nonmembers",
    "med_min_public",
    "med_vocab_threshold",
    "med_max_len",
    "med_d_model",
    "med_layers",
    "med_heads",
    "med_d_ff",
    "med_memory_size",
    "med_topk",
    "med_dropout",
    "med_epochs",
    "med_batch_size",
    "med_lr",
    "med_weight_decay",
    "med_beam_width",
    "med_lstm_epochs",
    "embed_size",
    "hidden_size",
    "batch_size",
    "lr",
    "optimizer",
)
TARGET_ROLES = ("target_members", "target_nonmembers", "target_test")
SHADOW_ROLES = ("shadow_members", "shadow_nonmembers")


@dataclass
class MedRun:
    """The medical experiment's data, splits (study indices per role) and generated reports.

    ``generated[model][role]``: reports of ``model`` (``target``, ``shadow_r2gen``, ``shadow_lstm``) for the
    studies of ``role``; ``history[model]``: training curves; ``seconds``: build time per step.
    """

    corpus: MedCorpus
    splits: dict[str, np.ndarray]
    generated: dict[str, dict[str, list[str]]]
    history: dict[str, dict]
    seconds: dict[str, float]
    key: str

    def reports(self, role: str) -> list[str]:
        return [self.corpus.reports[i] for i in self.splits[role]]

    def patients(self, role: str) -> list[str]:
        return [self.corpus.patients[i] for i in self.splits[role]]

    def images(self, role: str) -> np.ndarray:
        return self.corpus.images[self.splits[role]]


def med_splits(cfg, corpus: MedCorpus) -> dict[str, np.ndarray]:
    """Disjoint target / shadow / test / public roles by patient (``med_n_*`` sizes are patients)."""
    sizes = {
        "target_members": cfg.med_n_target_members,
        "target_nonmembers": cfg.med_n_target_nonmembers,
        "target_test": cfg.med_n_target_test,
        "shadow_members": cfg.med_n_shadow_members,
        "shadow_nonmembers": cfg.med_n_shadow_nonmembers,
    }
    return patient_splits(corpus, sizes, cfg.med_min_public, cfg.seed)


def _train_and_generate(cfg, corpus: MedCorpus, splits, members: str, roles, seed: int, desc: str):
    reports = [corpus.reports[i] for i in splits[members]]
    tok = ReportTokenizer.build(reports, cfg.med_vocab_threshold)
    torch.manual_seed(seed)
    model = build_model(cfg, len(tok))
    hist = train_r2gen(
        model,
        torch.from_numpy(corpus.images[splits[members]]),
        tok.batch(reports, cfg.med_max_len),
        cfg.med_epochs,
        cfg.med_batch_size,
        cfg.med_lr,
        cfg.med_weight_decay,
        seed,
        desc,
    )
    gens = {
        r: generate(model, torch.from_numpy(corpus.images[splits[r]]), tok, cfg.med_beam_width) for r in roles
    }
    return gens, hist, len(tok)


def run_medical(cfg, threads: int = 1) -> MedRun:
    """Train the target R2GenCMN, the unrestricted shadow (same architecture) and the data-only shadow
    (captioning CNN+LSTM architecture) and generate their reports (cached, kind ``med_run``).

    Args:
        cfg: the profile (``med_*`` fields; ``embed_size`` / ``hidden_size`` / ``batch_size`` / ``lr`` /
            ``optimizer`` for the LSTM shadow).
        threads: torch CPU threads. 1 by default: on a CPU shared with other jobs, 2+ threads were measured
            ~10x SLOWER per batch (spin-waiting threads) than one.
    """
    from m4i_utils.core.cache import cached

    corpus = load_med_corpus(cfg)
    splits = med_splits(cfg, corpus)
    fingerprint = hashlib.sha256("\n".join(corpus.ids + corpus.reports).encode()).hexdigest()[:16]
    params = {f: getattr(cfg, f) for f in MED_FIELDS} | {"corpus": corpus.name}

    def build(out: Path) -> None:
        torch.set_num_threads(threads)
        gens, hist, secs = {}, {}, {}
        for name, members, roles in (
            ("target", "target_members", TARGET_ROLES),
            ("shadow_r2gen", "shadow_members", SHADOW_ROLES),
        ):
            start = time.time()
            seed = int(rng_for(cfg.seed, "med", name).integers(2**31))
            gens[name], hist[name], vsz = _train_and_generate(cfg, corpus, splits, members, roles, seed, name)
            hist[name]["vocab_size"] = vsz
            secs[name] = time.time() - start
        start = time.time()
        feats = {r: pooled_pixels(corpus.images[splits[r]]) for r in SHADOW_ROLES}
        model, vocab = train_lstm_captioner(
            cfg, feats["shadow_members"], [corpus.reports[i] for i in splits["shadow_members"]], cfg.seed
        )
        gens["shadow_lstm"] = {r: lstm_generate(cfg, model, vocab, feats[r]) for r in SHADOW_ROLES}
        secs["shadow_lstm"] = time.time() - start
        (out / "run.json").write_text(json.dumps({"generated": gens, "history": hist, "seconds": secs}))

    art = cached(
        cfg.cache_dir,
        "med_run",
        params,
        build,
        upstream=[fingerprint],
        code_modules=["m4i_utils.models.r2gen", "m4i_utils.data.medical", "m4i_utils.models.captioner"],
    )
    data = json.loads(art.file("run.json").read_text())
    return MedRun(corpus, splits, data["generated"], data["history"], data["seconds"], art.key)


def utility_table(run: MedRun, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Test-split corpus BLEU-1..4 / mean ROUGE-L of the target beside the constant-report baseline (the most
    frequent training report), on R2Gen-cleaned tokens (:func:`clean_tokens`).

    The target's row also carries target minus baseline in BLEU-1 and ROUGE-L with 95% paired bootstrap
    intervals over the test studies (:func:`~m4i_utils.signals.text_similarity.paired_difference`).
    """
    refs = [(clean_tokens(r),) for r in run.reports("target_test")]
    hyps = [clean_tokens(h) for h in run.generated["target"]["target_test"]]
    base = [clean_tokens(constant_report(run.reports("target_members")))] * len(refs)
    target = utility_metrics(hyps, refs, str.split)
    target.update(paired_difference(hyps, base, refs, n_bootstrap, seed, str.split))
    rows = {"R2GenCMN target": target, "constant report": utility_metrics(base, refs, str.split)}
    return pd.DataFrame(rows).T


# ------------------------------------------------------------------------------------------- attacks


def _labels(n_mem: int, n_non: int) -> np.ndarray:
    return np.r_[np.ones(n_mem, dtype=np.int64), np.zeros(n_non, dtype=np.int64)]


def mb_features(cfg, hyps: list[str], refs: list) -> np.ndarray:
    """Per-sample ``cfg.mb_features`` (BLEU-1/2/3, ROUGE-L) of generated reports vs their reference(s)."""
    from m4i_utils.signals.text_similarity import caption_scores

    refs = [r if isinstance(r, list | tuple) else (r,) for r in refs]
    return caption_scores(hyps, refs, features=cfg.mb_features, smoothing=cfg.mb_smoothing, n_jobs=1)


def _gray(corpus) -> np.ndarray:
    """Grey-scale uint8 images (N x S x S) of a caption corpus (RGB arrays or files)."""
    return np.stack([np.asarray(r.load_image().convert("L")) for r in corpus.records])


def constrained_shadow(cfg, n_images: int, threads: int = 1) -> dict:
    """General-domain attacker (constrained scenario): CNN+LSTM captioner and MFE on ``synth_coco``.

    The shadow captioner (:func:`train_lstm_captioner`, notebook 02's architecture on the pooled-pixel
    descriptor) trains on the first ``n_images`` of ``synth_coco``'s ``shadow_members`` (all 5 captions each)
    and captions as many ``shadow_members`` / ``shadow_nonmembers`` images; the MFE trains on ``synth_coco``'s
    public pairs (at most 2,000 images). Cached (kind ``med_constrained``).

    Returns:
        ``{"mb": (features, labels), "fb_shadow": features, "mfe": (model, vocab)}`` for the shadow side.
    """
    from m4i_utils.core.cache import cached
    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models import mfe, trunks

    bundle = trunks.load_bundle(cfg, "synth_coco")
    roles = {r: bundle.role(r) for r in SHADOW_ROLES}
    roles = {r: c.subset(range(min(n_images, len(c)))) for r, c in roles.items()}
    public = bundle.role("public")
    public = public.subset(range(min(2000, len(public))))
    params = {f: getattr(cfg, f) for f in MED_FIELDS} | {
        "n_images": n_images,
        "vocab_threshold": cfg.vocab_threshold,
        "mfe": [cfg.mfe_feature_size, cfg.mfe_hidden, cfg.mfe_epochs, cfg.mfe_lr, cfg.mfe_cov_weight],
    }

    def build(out: Path) -> None:
        torch.set_num_threads(threads)
        feats = {r: pooled_pixels(_gray(c)) for r, c in roles.items()}
        sm = roles["shadow_members"]
        caps = [c for rec in sm.records for c in rec.captions]
        rows = np.repeat(np.arange(len(sm)), [len(rec.captions) for rec in sm.records])
        model, vocab = train_lstm_captioner(cfg, feats["shadow_members"][rows], caps, cfg.seed)
        hyps = {r: lstm_generate(cfg, model, vocab, feats[r]) for r in SHADOW_ROLES}
        pub_caps = [c for rec in public.records for c in rec.captions]
        owner = np.repeat(np.arange(len(public)), [len(rec.captions) for rec in public.records])
        mvocab = Vocabulary.build(pub_caps, cfg.vocab_threshold)
        mmodel, _ = mfe.train_mfe(
            torch.from_numpy(pooled_pixels(_gray(public))[owner]),
            mfe.bow_vectors(mvocab, pub_caps),
            feature_size=cfg.mfe_feature_size,
            hidden=cfg.mfe_hidden,
            epochs=cfg.mfe_epochs,
            batch_size=cfg.mfe_batch_size,
            lr=cfg.mfe_lr,
            cov_weight=cfg.mfe_cov_weight,
            seed=int(rng_for(cfg.seed, "med_mfe_coco").integers(2**31)),
            desc="synth_coco mfe",
        )
        torch.save(mmodel.state_dict(), out / "mfe.pt")
        mvocab.save(out / "mfe_vocab.json")
        refs = {r: [list(rec.captions) for rec in c.records] for r, c in roles.items()}
        (out / "shadow.json").write_text(json.dumps({"hyps": hyps, "refs": refs}))
        np.save(out / "feats.npy", np.concatenate([feats[r] for r in SHADOW_ROLES]))

    art = cached(cfg.cache_dir, "med_constrained", params, build, upstream=[bundle.splits.key])
    data = json.loads(art.file("shadow.json").read_text())
    feats = np.load(art.file("feats.npy"))
    mvocab = Vocabulary.load(art.file("mfe_vocab.json"))
    mmodel = mfe.MFE(feats.shape[1], len(mvocab), cfg.mfe_feature_size, cfg.mfe_hidden)
    mmodel.load_state_dict(torch.load(art.file("mfe.pt"), map_location="cpu", weights_only=True))
    mmodel.eval()
    hyps = data["hyps"]["shadow_members"] + data["hyps"]["shadow_nonmembers"]
    refs = data["refs"]["shadow_members"] + data["refs"]["shadow_nonmembers"]
    labels = _labels(len(data["refs"]["shadow_members"]), len(data["refs"]["shadow_nonmembers"]))
    fb = _fb(mmodel, mvocab, feats, hyps, cfg.fb_signed)
    return {"mb": (mb_features(cfg, hyps, refs), labels), "fb_shadow": fb, "mfe": (mmodel, mvocab)}


def medical_mfe(cfg, run: MedRun, threads: int = 1):
    """The attacker's MFE on the medical PUBLIC split (eq. 2): pooled-pixel image input, BoW report input.

    Returns ``(model, vocabulary)``; :func:`m4i_utils.models.mfe.train_mfe` with the ``mfe_*`` settings.
    """
    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models import mfe

    torch.set_num_threads(threads)
    public = run.reports("public")
    vocab = Vocabulary.build(public, cfg.med_vocab_threshold)
    model, _ = mfe.train_mfe(
        torch.from_numpy(pooled_pixels(run.images("public"))),
        mfe.bow_vectors(vocab, public),
        feature_size=cfg.mfe_feature_size,
        hidden=cfg.mfe_hidden,
        epochs=cfg.mfe_epochs,
        batch_size=min(cfg.mfe_batch_size, max(8, len(public) // 4)),
        lr=cfg.mfe_lr,
        cov_weight=cfg.mfe_cov_weight,
        seed=int(rng_for(cfg.seed, "med_mfe").integers(2**31)),
        desc="medical mfe",
    )
    return model, vocab


def _fb(model, vocab, img: np.ndarray | torch.Tensor, texts: list[str], signed: bool) -> np.ndarray:
    from m4i_utils.models import mfe

    fi, ft = mfe.embed(model, torch.as_tensor(img), mfe.bow_vectors(vocab, texts))
    z = fi - ft
    return (z if signed else z.abs()).numpy()


def run_attacks(cfg, run: MedRun, experiment: str, threads: int = 1) -> list[AttackResult]:
    """MB (scores -> SVM) and FB (MFE features -> MLP 256-20) attacks on the target in three scenarios.

    unrestricted: shadow = R2GenCMN on medical shadow members; data-only: shadow = CNN+LSTM captioner on the
    same medical shadow members; constrained: :func:`constrained_shadow` (CNN+LSTM captioner and MFE trained
    on the general-domain ``synth_coco`` world; its MFE embeds the medical images and reports at attack time).
    Target queries: ``target_members`` (label 1) vs ``target_nonmembers`` (label 0).
    """
    from m4i_utils.attacks import feature_attack, metric_attack

    torch.set_num_threads(threads)
    tm, tn = TARGET_ROLES[:2]
    t_hyps = run.generated["target"][tm] + run.generated["target"][tn]
    t_refs = run.reports(tm) + run.reports(tn)
    t_y = _labels(len(run.splits[tm]), len(run.splits[tn]))
    t_img = np.concatenate([run.images(tm), run.images(tn)])
    sm, sn = SHADOW_ROLES
    s_y = _labels(len(run.splits[sm]), len(run.splits[sn]))
    s_img = np.concatenate([run.images(sm), run.images(sn)])
    s_refs = run.reports(sm) + run.reports(sn)
    t_mb = mb_features(cfg, t_hyps, t_refs)
    model, vocab = medical_mfe(cfg, run, threads)
    t_fb = _fb(model, vocab, pooled_pixels(t_img), t_hyps, cfg.fb_signed)
    s_pix = pooled_pixels(s_img)
    shadows = {}
    for scen, name in (("unrestricted", "shadow_r2gen"), ("data_only", "shadow_lstm")):
        hyps = run.generated[name][sm] + run.generated[name][sn]
        shadows[scen] = (
            mb_features(cfg, hyps, s_refs),
            s_y,
            _fb(model, vocab, s_pix, hyps, cfg.fb_signed),
            t_fb,
        )
    con = constrained_shadow(cfg, len(run.splits[sm]), threads)
    t_fb_coco = _fb(*con["mfe"], pooled_pixels(t_img), t_hyps, cfg.fb_signed)
    shadows["constrained"] = (*con["mb"], con["fb_shadow"], t_fb_coco)
    results = []
    arch = {"unrestricted": "R2GenCMN", "data_only": "CNN+LSTM", "constrained": "CNN+LSTM (synth_coco)"}
    for scen, (sx_mb, sy, sx_fb, tx_fb) in shadows.items():
        meta = {
            "experiment": experiment,
            "scenario": scen,
            "setting": "iid",
            "shadow": arch[scen],
            "target": "R2GenCMN",
            "dataset": run.corpus.name,
            "architecture": "R2GenCMN",
            "profile": cfg.profile,
            "seed": cfg.seed,
        }
        results.append(
            metric_attack.svm_attack(
                sx_mb,
                sy,
                t_mb,
                t_y,
                {**meta, "attack": "MB"},
                C=cfg.mb_svm_c,
                scale=cfg.mb_svm_scale,
                solver=cfg.mb_svm_solver,
                seed=cfg.seed,
            )
        )
        results.append(
            feature_attack.fb_attack(
                sx_fb,
                sy,
                tx_fb,
                t_y,
                {**meta, "attack": "FB"},
                seed=cfg.seed,
                **feature_attack.fb_train_kwargs(cfg),
            )
        )
    return results


def patient_table(
    run: MedRun, results: list[AttackResult], n_bootstrap: int = 0, seed: int = 0
) -> pd.DataFrame:
    """Study-level vs patient-level AUC (mean score per patient) of each attack; ``multi`` = patients with
    two or more studies only."""
    from sklearn.metrics import roc_auc_score

    patients = run.patients("target_members") + run.patients("target_nonmembers")
    rows = []
    for res in results:
        row = {
            "attack": res.meta["attack"],
            "scenario": res.meta["scenario"],
            "study_auc": roc_auc_score(res.labels, res.scores),
        }
        for tag, k in (("patient", 1), ("multi_study_patient", 2)):
            s, y, _ = patient_level(res.scores, res.labels, patients, k)
            ok = len(set(y.tolist())) == 2
            row[f"{tag}_auc"] = roc_auc_score(y, s) if ok else float("nan")
            row[f"n_{tag}s"] = len(y)
        rows.append(row)
    return pd.DataFrame(rows)
