""" "Show and Tell" captioners: the target and shadow models of M4I (section 4.1, authors' code).

Encoder: frozen CNN trunk (:mod:`m4i_utils.models.trunks`, features cached) + trainable Linear(-> embed) +
BatchNorm1d(embed, momentum 0.01). Decoder: Embedding(V, embed), 1-layer LSTM(hidden), Linear(hidden, V); the
image feature is the first time step (it predicts ``<start>``), teacher forcing, cross-entropy ignoring
``<pad>``. Every (image, caption) pair is a training sample (5 per image). Decoding: batched greedy (paper,
``max_caption_len`` steps) or beam search.

Entry points for the notebooks: :func:`get_captioner` (load or train, cached) and :func:`captions_for`
(generated captions of a split, cached), plus :func:`utility_table` and :func:`gap_table`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import cpu_threads, rng_for
from m4i_utils.data.bundles import load_bundle
from m4i_utils.data.records import Corpus
from m4i_utils.data.text import Vocabulary, tokenize
from m4i_utils.models.training import fit
from m4i_utils.models.trunks import (
    FeatureTable,
    augmented_features_for,
    features_for,
    trunk_key,
    weights_of,
)
from m4i_utils.signals.text_similarity import bleu1, paired_difference, rouge_l, utility_metrics

TRAIN_ROLE = {"target": "target_members", "shadow": "shadow_members"}
# Config fields that change a trained captioner (enter its cache key). Add new training knobs here.
CAPTIONER_FIELDS = (
    "seed",
    "vocab_threshold",
    "max_caption_len",
    "embed_size",
    "hidden_size",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "train_augment",
    "augment_views",
    "n_val",
)


class VocabularyMismatchError(ValueError):
    """A checkpoint was trained with a different vocabulary than the one it is loaded with."""


# ------------------------------------------------------------------------------------------- model


class EncoderDecoder(nn.Module):
    """Trainable part of Show and Tell on top of frozen trunk features (authors' EncoderCNN + DecoderRNN)."""

    def __init__(self, feat_dim: int, vocab_size: int, embed_size: int = 256, hidden_size: int = 512) -> None:
        super().__init__()
        self.enc_linear = nn.Linear(feat_dim, embed_size)
        self.enc_bn = nn.BatchNorm1d(embed_size, momentum=0.01)
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers=1, batch_first=True)
        self.linear = nn.Linear(hidden_size, vocab_size)

    def encode(self, feats: torch.Tensor) -> torch.Tensor:
        """Trunk features (B x D) -> image embedding (B x embed)."""
        return self.enc_bn(self.enc_linear(feats))

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B x L x V) for ``tokens`` (B x L, ``<start> ... <end> <pad>*``).

        Step 0's input is the image embedding and predicts ``tokens[:, 0]``; step t's input is
        ``tokens[:, t-1]``.
        """
        inputs = torch.cat([self.encode(feats).unsqueeze(1), self.embed(tokens[:, :-1])], dim=1)
        hidden, _ = self.lstm(inputs)
        return self.linear(hidden)

    @torch.no_grad()
    def greedy(self, feats: torch.Tensor, max_len: int = 20) -> torch.Tensor:
        """Batched greedy decoding (authors' ``sample``): B x max_len token ids (including ``<start>``)."""
        inputs, state, out = self.encode(feats).unsqueeze(1), None, []
        for _ in range(max_len):
            hidden, state = self.lstm(inputs, state)
            pred = self.linear(hidden[:, 0]).argmax(-1)
            out.append(pred)
            inputs = self.embed(pred).unsqueeze(1)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def beam(self, feat: torch.Tensor, width: int = 3, max_len: int = 20) -> list[int]:
        """Beam search for one image (feat: D): the sequence with the highest summed log-probability."""
        inputs = self.encode(feat.unsqueeze(0)).unsqueeze(1)
        hidden, state = self.lstm(inputs)
        logp = self.linear(hidden[:, 0]).log_softmax(-1)[0]
        top = logp.topk(width)
        beams = [([int(t)], float(s), state) for s, t in zip(top.values, top.indices, strict=True)]
        done: list[tuple[list[int], float]] = []
        for _ in range(max_len - 1):
            cand = []
            for seq, score, st in beams:
                if seq[-1] == 2:
                    done.append((seq, score))
                    continue
                hidden, new_state = self.lstm(self.embed(torch.tensor([[seq[-1]]])), st)
                lp = self.linear(hidden[:, 0]).log_softmax(-1)[0]
                t = lp.topk(width)
                cand += [
                    (seq + [int(i)], score + float(v), new_state)
                    for v, i in zip(t.values, t.indices, strict=True)
                ]
            if not cand:
                break
            beams = sorted(cand, key=lambda c: -c[1])[:width]
        done += [(seq, score) for seq, score, _ in beams]
        return max(done, key=lambda c: c[1])[0]


def greedy_one_by_one(model: EncoderDecoder, feats: torch.Tensor, max_len: int = 20) -> torch.Tensor:
    """The authors' way: greedy decoding one image at a time (reference for tests and the benchmark)."""
    return torch.cat([model.greedy(feats[i : i + 1], max_len) for i in range(len(feats))])


def decode(
    model: EncoderDecoder, feats: torch.Tensor, vocab: Vocabulary, max_len: int, beam_width: int = 1
) -> list[str]:
    """Captions for feature rows: batched greedy (``beam_width`` 1, paper) or beam search per image."""
    model.eval()
    if beam_width <= 1:
        ids = torch.cat([model.greedy(feats[s : s + 512], max_len) for s in range(0, len(feats), 512)])
        return [vocab.decode(row) for row in ids.tolist()]
    return [vocab.decode(model.beam(f, beam_width, max_len)) for f in tqdm(feats, desc="beam", leave=False)]


# ------------------------------------------------------------------------------------------- training


def encode_captions(corpus: Corpus, vocab: Vocabulary, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, caption) pairs of ``corpus``: (image row per pair, padded token ids P x L)."""
    rows, seqs = [], []
    for i, rec in enumerate(corpus.records):
        for cap in rec.captions:
            rows.append(i)
            seqs.append(vocab.encode(cap, max_len=max_len))
    tokens = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for k, s in enumerate(seqs):
        tokens[k, : len(s)] = torch.tensor(s)
    return torch.tensor(rows), tokens


def pair_loss(model: EncoderDecoder, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy ignoring ``<pad>`` (authors' code)."""
    length = int((tokens != 0).sum(1).max())
    tokens = tokens[:, :length]
    logits = model(feats, tokens)
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), ignore_index=0
    )


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    """``cfg.optimizer``: ``sgd`` (paper: lr 0.01, no momentum) or ``adam``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: sgd, adam")


def train_model(
    model: EncoderDecoder,
    feats: torch.Tensor,
    rows: torch.Tensor,
    tokens: torch.Tensor,
    cfg: Config,
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    desc: str = "train",
    checkpoint: str | Path | None = None,
) -> dict[str, list[float]]:
    """Train on (image row, caption) pairs for ``cfg.epochs`` epochs; returns per-epoch train/val loss.

    ``feats`` is N x D, or N x K x D (augmented views: one view sampled per pair and step). The loop is
    :func:`m4i_utils.models.training.fit`; ``checkpoint``: its per-epoch checkpoint folder (resumes from it).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(cfg, model.parameters())

    def batches(_epoch: int, gen: torch.Generator):
        perm = torch.randperm(len(rows), generator=gen)
        for s in range(0, len(perm), cfg.batch_size):
            b = perm[s : s + cfg.batch_size]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            f = feats[rows[b]]
            if f.dim() == 3:
                f = f[torch.arange(len(b)), torch.randint(f.shape[1], (len(b),), generator=gen)]
            yield f, tokens[b]

    def step_loss(model: EncoderDecoder, batch):
        f, t = batch
        return pair_loss(model, f, t), len(t)

    validate = None if val is None else (lambda m, _epoch: evaluate_loss(m, *val))
    hist = fit(model, opt, batches, step_loss, cfg.epochs, generator=gen, validate=validate,
               loss_divisor=len(rows), checkpoint=checkpoint, desc=desc).history  # fmt: skip
    return {
        "train_loss": hist["train_loss"],
        "val_loss": hist.get("val_loss", []),
        "epoch_seconds": hist["epoch_seconds"],
    }


@torch.no_grad()
def evaluate_loss(
    model: EncoderDecoder, feats: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor
) -> float:
    """Mean per-token cross-entropy of all pairs (eval mode)."""
    model.eval()
    total, n = 0.0, 0
    for s in range(0, len(rows), 512):
        t = tokens[s : s + 512]
        k = int((t[:, : int((t != 0).sum(1).max())] != 0).sum())
        total += float(pair_loss(model, feats[rows[s : s + 512]], t)) * k
        n += k
    return total / max(n, 1)


@torch.no_grad()
def caption_logprob(
    model: EncoderDecoder, feats: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor
) -> np.ndarray:
    """Mean token log-probability of each (image row, caption) pair under teacher forcing (eval mode): how
    likely the model finds a reference caption, the grey-box signal of LiRA for sequence models."""
    model.eval()
    out = []
    for s in range(0, len(rows), 512):
        t = tokens[s : s + 512]
        t = t[:, : int((t != 0).sum(1).max())]
        logp = model(feats[rows[s : s + 512]], t).log_softmax(-1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
        mask = (t != 0).to(logp.dtype)
        out.append(((logp * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out).astype(np.float64)


# ------------------------------------------------------------------------------------------- checkpoints


def vocab_sha(vocab: Vocabulary) -> str:
    return hashlib.sha256(json.dumps(list(vocab.itos)).encode()).hexdigest()[:16]


def save_checkpoint(model: EncoderDecoder, vocab: Vocabulary, path: Path) -> None:
    meta = {
        "feat_dim": model.enc_linear.in_features,
        "vocab_size": len(vocab),
        "vocab_sha": vocab_sha(vocab),
        "embed_size": model.embed.embedding_dim,
        "hidden_size": model.lstm.hidden_size,
    }
    torch.save({"meta": meta, "state": model.state_dict()}, path)


def load_checkpoint(path: Path, vocab: Vocabulary) -> EncoderDecoder:
    """Rebuild a model from ``path``; :class:`VocabularyMismatchError` if ``vocab`` is not its vocabulary."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = ckpt["meta"]
    rows = ckpt["state"]["embed.weight"].shape[0]
    if meta["vocab_sha"] != vocab_sha(vocab) or rows != len(vocab):
        raise VocabularyMismatchError(
            f"checkpoint {path} was trained with a {rows}-token vocabulary (sha {meta['vocab_sha']}) but is "
            f"loaded with a {len(vocab)}-token one (sha {vocab_sha(vocab)}); load it with the vocab.json "
            "stored beside it, or retrain"
        )
    model = EncoderDecoder(meta["feat_dim"], rows, meta["embed_size"], meta["hidden_size"])
    model.load_state_dict(ckpt["state"])
    return model.eval()


@dataclass
class TrainedCaptioner:
    """A trained target or shadow captioner and where it came from."""

    model: EncoderDecoder
    vocab: Vocabulary
    history: dict
    key: str
    dataset: str
    family: str
    role: str  # "target" | "shadow" | "reference"
    feature_key: str
    build_seconds: float
    train_seed: int = 0
    tag: str = ""  # a model trained on a given member set (get_captioner_on): its name, e.g. "pop3"

    @property
    def name(self) -> str:
        """Paper notation: dataset letter + architecture letter, e.g. ``FR``."""
        from m4i_utils.data.datasets import DATASET_LETTERS

        return DATASET_LETTERS.get(self.dataset, self.dataset[:1].upper()) + self.family[0].upper()

    kind = "captioner"

    def query(self, cfg: Config, dataset: str, role: str) -> list[str]:
        """The captions it generates for ``dataset``'s split ``role`` (:func:`captions_for`; the Target
        protocol, :class:`m4i_utils.models.base.Target`)."""
        return captions_for(cfg, self, dataset, role)

    @property
    def label(self) -> str:
        """:attr:`name`, with ``/s<t>`` for training seed t > 0 (``CM``, ``CM/s1``, ``CM/s2``) or ``/<tag>``
        for a model trained on a given member set (``CM/pop3``)."""
        if self.tag:
            return f"{self.name}/{self.tag}"
        return self.name if self.train_seed == 0 else f"{self.name}/s{self.train_seed}"


def get_captioner(
    cfg: Config, dataset: str, family: str, role: str = "target", train_seed: int = 0
) -> TrainedCaptioner:
    """Load or train the ``role`` captioner of ``dataset`` x ``family`` (cached, kind ``captioner``).

    A target trains on ``target_members``, a shadow on ``shadow_members`` (paper appendix C.1). The loss curve
    uses the ``val`` slice (first ``n_val`` public pairs; monitoring only, no model selection).
    ``train_seed`` seeds the weights and the batch order only (splits and the frozen trunk stay those of
    ``cfg.seed``); training seed 0 is the seed the project has always used.
    """
    if role not in TRAIN_ROLE:
        raise ValueError(f"unknown captioner role {role!r}; valid: {', '.join(TRAIN_ROLE)}")
    bundle = load_bundle(cfg, dataset)
    table = features_for(cfg, dataset, family)
    train = bundle.role(TRAIN_ROLE[role])
    feat_key = table.key
    if cfg.train_augment:
        feat_key = augmented_features_for(cfg, dataset, family, TRAIN_ROLE[role]).key
    params = {k: getattr(cfg, k) for k in CAPTIONER_FIELDS}
    params.update(dataset=dataset, family=family, role=role, split_sizes=bundle.splits.sizes())
    params.update(train_seed=train_seed)

    def build(out: Path, checkpoints: Path) -> None:
        if cfg.train_augment:
            aug = augmented_features_for(cfg, dataset, family, TRAIN_ROLE[role])
            feats = torch.from_numpy(aug.array.astype(np.float32))
        else:
            feats = table.take(train)
        stream = ("captioner", dataset, family, role) + (("train_seed", train_seed) if train_seed else ())
        seed = int(rng_for(cfg.seed, *stream).integers(2**31))
        _fit_and_save(cfg, table, train, feats, bundle.role("val"), seed, f"{role} {dataset} {family}", out,
                      checkpoints)  # fmt: skip

    art = cached(
        cfg.cache_dir,
        "captioner",
        params,
        build,
        upstream=[feat_key, table.key, bundle.splits.key],
        code_modules=["m4i_utils.models.captioner", "m4i_utils.models.trunks"],
    )
    return _load(art, dataset, family, role, feat_key, train_seed)


def _fit_and_save(
    cfg: Config,
    table: FeatureTable,
    train: Corpus,
    feats: torch.Tensor,
    val_corpus: Corpus,
    seed: int,
    desc: str,
    out: Path,
    checkpoints: Path,
) -> None:
    """Build the vocabulary of ``train``, train a captioner on its pairs (:func:`train_model`, seeded by
    ``seed``) and write ``model.pt``, ``vocab.json`` and ``history.json`` into ``out``."""
    torch.set_num_threads(cpu_threads())
    vocab = Vocabulary.build((c for r in train.records for c in r.captions), cfg.vocab_threshold)
    rows, tokens = encode_captions(train, vocab, cfg.max_caption_len)
    val = (table.take(val_corpus), *encode_captions(val_corpus, vocab, cfg.max_caption_len))
    torch.manual_seed(seed)
    model = EncoderDecoder(feats.shape[-1], len(vocab), cfg.embed_size, cfg.hidden_size)
    history = train_model(model, feats, rows, tokens, cfg, val, seed, desc, checkpoint=checkpoints)
    save_checkpoint(model, vocab, out / "model.pt")
    vocab.save(out / "vocab.json")
    (out / "history.json").write_text(json.dumps(history))


def _load(art, dataset: str, family: str, role: str, feat_key: str, train_seed: int, tag: str = ""):
    vocab = Vocabulary.load(art.file("vocab.json"))
    return TrainedCaptioner(
        model=load_checkpoint(art.file("model.pt"), vocab),
        vocab=vocab,
        history=json.loads(art.file("history.json").read_text()),
        key=art.key,
        dataset=dataset,
        family=family,
        role=role,
        feature_key=feat_key,
        build_seconds=float(art.manifest.get("build_seconds", 0.0)),
        train_seed=train_seed,
        tag=tag,
    )


def get_captioner_on(
    cfg: Config, dataset: str, family: str, members: Corpus, tag: str, role: str = "reference"
) -> TrainedCaptioner:
    """Load or train (cached, kind ``captioner_on``) a captioner of ``dataset`` x ``family`` on the records
    ``members`` (e.g. a random half of a population for LiRA's target and reference models).

    The recipe is :func:`get_captioner`'s (same fields, same loop); the weights and batch order are seeded
    by ``cfg.seed`` and ``tag``, and the cache key includes every member's id.

    Raises:
        ValueError: ``train_augment`` is set (augmented views exist per split role, not per member set).
    """
    if cfg.train_augment:
        raise ValueError(
            "train_augment=True is not available for captioners on a member set; set it to false"
        )
    bundle = load_bundle(cfg, dataset)
    table = features_for(cfg, dataset, family)
    ids_sha = hashlib.sha256("\n".join(members.ids).encode()).hexdigest()[:16]
    params = {k: getattr(cfg, k) for k in CAPTIONER_FIELDS}
    params.update(dataset=dataset, family=family, role=role, tag=tag)
    params.update(members=len(members), member_ids=ids_sha)

    def build(out: Path, checkpoints: Path) -> None:
        seed = int(rng_for(cfg.seed, "captioner_on", dataset, family, tag).integers(2**31))
        _fit_and_save(cfg, table, members, table.take(members), bundle.role("val"), seed,
                      f"{tag} {dataset} {family}", out, checkpoints)  # fmt: skip

    art = cached(
        cfg.cache_dir,
        "captioner_on",
        params,
        build,
        upstream=[table.key, bundle.splits.key],
        code_modules=["m4i_utils.models.captioner", "m4i_utils.models.trunks"],
    )
    return _load(art, dataset, family, role, table.key, 0, tag)


def _train_job(cfg: Config, dataset: str, family: str, role: str, train_seed: int) -> str:
    """Executor job: train (or find) one captioner in the cache; returns its key."""
    return get_captioner(cfg, dataset, family, role, train_seed).key


def _trunk_job(cfg: Config, family: str) -> str:
    """Executor job: the pretrained trunk of ``family`` (its identity key; pretrains it when absent)."""
    return trunk_key(cfg, family)


def _features_job(cfg: Config, dataset: str, family: str) -> str:
    """Executor job: the frozen trunk's features of ``dataset`` (cached); returns their key."""
    return features_for(cfg, dataset, family).key


def train_captioners(cfg: Config, role: str) -> list[TrainedCaptioner]:
    """Every ``role`` captioner of the grid: ``cfg.datasets`` x ``cfg.families`` x ``cfg.train_seeds``
    (:func:`train_recipes` with one recipe)."""
    return train_recipes([cfg], (role,))[0]


def train_recipes(configs: list[Config], roles: tuple[str, ...]) -> list[list[TrainedCaptioner]]:
    """Every ``roles`` captioner of the grid under each recipe of ``configs`` (e.g. each defense of
    notebook 09): per config, ``datasets`` x ``families`` x ``train_seeds`` x ``roles``.

    The jobs of all recipes form one graph on the executor (:func:`m4i_utils.core.executor.run_graph`) and
    are then loaded from the cache: first each trunk that is pretrained on public data, then the frozen
    trunks' features per dataset, then the captioners, each after the features it reads. On two workers the
    trunk pretraining runs beside the captioners of the families that do not need it. Trunks and features
    come from the first config (a recipe changes the captioner's training only).

    Returns:
        Per config, its captioners in the order seed, role, dataset, family.
    """
    from m4i_utils.core.executor import Task, run_graph

    base = configs[0]
    graph: dict = {}
    for f in base.families:
        if weights_of(base, f) == "public_pretrain":
            graph["trunk", f] = Task(_trunk_job, (base, f))
    for f in base.families:
        for d in base.datasets:
            after = (("trunk", f),) if ("trunk", f) in graph else ()
            graph["features", d, f] = Task(_features_job, (base, d, f), after)
    per_config = []
    for i, cfg in enumerate(configs):
        jobs = [(cfg, d, f, role, t) for t in cfg.train_seeds for role in roles for d in cfg.datasets
                for f in cfg.families]  # fmt: skip
        for job in jobs:
            graph[(i, *job[1:])] = Task(_train_job, job, (("features", job[1], job[2]),))
        per_config.append(jobs)
    run_graph(base, graph, desc=f"{'/'.join(roles)} captioners")
    return [[get_captioner(*job) for job in jobs] for jobs in per_config]


def captions_for(cfg: Config, captioner: TrainedCaptioner, dataset: str, split_role: str) -> list[str]:
    """Generated captions (cached) of every record of ``dataset``'s ``split_role``, in split order.

    Decoding is greedy (paper) unless ``cfg.beam_width`` > 1. Used by the attack notebooks (04, 06).
    """
    table: FeatureTable = features_for(cfg, dataset, captioner.family)
    corpus = load_bundle(cfg, dataset).role(split_role)
    params = {
        "dataset": dataset,
        "split_role": split_role,
        "beam_width": cfg.beam_width,
        "max_len": cfg.max_caption_len,
    }

    def build(out: Path) -> None:
        torch.set_num_threads(cpu_threads())
        caps = decode(
            captioner.model, table.take(corpus), captioner.vocab, cfg.max_caption_len, cfg.beam_width
        )
        (out / "captions.json").write_text(json.dumps({"ids": corpus.ids, "captions": caps}))

    art = cached(
        cfg.cache_dir,
        "captions",
        params,
        build,
        upstream=[captioner.key, table.key],
        code_modules=["m4i_utils.models.captioner"],
    )
    data = json.loads(art.file("captions.json").read_text())
    if data["ids"] != corpus.ids:
        raise RuntimeError(f"cached captions {art.path} do not match the records of {dataset}:{split_role}")
    return data["captions"]


def constant_baseline(train: Corpus) -> str:
    """The constant caption baseline: the most frequent training caption.

    Ties (in the synthetic worlds every caption is unique) are broken by the highest mean training frequency
    of the caption's tokens, i.e. the most "generic" caption.
    """
    caps = [c for r in train.records for c in r.captions]
    counts = Counter(caps)
    tok_counts = Counter(t for c in caps for t in tokenize(c))
    best = max(counts.values())
    tied = sorted(c for c, k in counts.items() if k == best)

    def generic(c: str) -> float:
        toks = tokenize(c)
        return sum(tok_counts[t] for t in toks) / max(len(toks), 1)

    return max(tied, key=generic)


def utility_table(
    cfg: Config,
    captioners: list[TrainedCaptioner],
    eval_role: str = "target_test",
    train_sets: list[Corpus] | None = None,
) -> pd.DataFrame:
    """Utility of each captioner on ``eval_role`` of its dataset, beside the constant-caption baseline (the
    most frequent caption of its training records: its role's members, or ``train_sets[i]`` when given)."""
    if train_sets is not None and len(train_sets) != len(captioners):
        raise ValueError(f"{len(captioners)} captioners but {len(train_sets)} training sets")
    rows = []
    for i, cap in enumerate(captioners):
        bundle = load_bundle(cfg, cap.dataset)
        test = bundle.role(eval_role)
        refs = [r.captions for r in test.records]
        hyps = captions_for(cfg, cap, cap.dataset, eval_role)
        train = train_sets[i] if train_sets is not None else bundle.role(TRAIN_ROLE[cap.role])
        base = constant_baseline(train)
        m = utility_metrics(hyps, refs)
        b = utility_metrics([base] * len(refs), refs)
        row = {"model": cap.label, "dataset": cap.dataset, "family": cap.family, "role": cap.role}
        row["train_seed"] = cap.train_seed
        row.update(m)
        row.update({f"baseline_{k}": v for k, v in b.items()})
        row.update(paired_difference(hyps, [base] * len(refs), refs, seed=cfg.seed))
        row["train_seconds"] = cap.build_seconds
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def gap_table(cfg: Config, captioners: list[TrainedCaptioner]) -> pd.DataFrame:
    """Member vs non-member ROUGE-L and BLEU-1 of each captioner (its own members / non-members split).

    Target: ``target_members`` vs ``target_nonmembers``; shadow: ``shadow_members`` vs ``shadow_nonmembers``.
    The gap (member mean - non-member mean) is the memorisation that the MB attack exploits (section 3).
    """
    rows = []
    for cap in captioners:
        bundle = load_bundle(cfg, cap.dataset)
        row = {"model": cap.label, "dataset": cap.dataset, "family": cap.family, "role": cap.role}
        row["train_seed"] = cap.train_seed
        for label, role in (("member", f"{cap.role}_members"), ("nonmember", f"{cap.role}_nonmembers")):
            corpus = bundle.role(role)
            refs = [r.captions for r in corpus.records]
            hyps = captions_for(cfg, cap, cap.dataset, role)
            r, b = rouge_l(hyps, refs), bleu1(hyps, refs)
            row[f"rougeL_{label}"], row[f"bleu1_{label}"] = r.mean(), b.mean()
            row[f"rougeL_{label}_var"] = r.var(ddof=1) / len(r)
        row["rougeL_gap"] = row["rougeL_member"] - row["rougeL_nonmember"]
        row["rougeL_gap_se"] = (row.pop("rougeL_member_var") + row.pop("rougeL_nonmember_var")) ** 0.5
        row["bleu1_gap"] = row["bleu1_member"] - row["bleu1_nonmember"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
