"""Membership inference against a text-to-speech model (M4I appendix E, notebook 08).

The paper attacks FastSpeech2 (text -> mel spectrogram) trained on LJSpeech, with LibriTTS utterances as
non-members: MB (Euclidean distance between the synthesised and the ground-truth mel) 86.43%, FB (two
3-layer MLPs over the input text and the output mel, attack MLP on the difference) 94.24%.

This module provides, for the embedded speech world (:mod:`m4i_utils.data.speech_world`) and for real
LJSpeech-format clips (:mod:`m4i_utils.data.speech`):

* :func:`load_tts_data`: featurised utterances (FastSpeech2 mels, per-character durations, pitch and energy)
  split into disjoint, seeded roles, cached. Real clips have no alignment, so durations come from
  :func:`align_durations` (Viterbi training of a left-to-right model with one mean mel per character: a
  monotonic alignment search on a learnt cost, no external aligner, no downloads).
* :class:`FastSpeech2`: FFT-block encoder, variance adaptor (duration, optional pitch and energy), length
  regulator, FFT-block decoder, linear mel head (Ren et al. 2021; sizes from the config).
* :func:`get_tts_model`: train or load (cached) a model on a role's utterances.
* :func:`synthesize`: batched inference, with predicted durations (black-box) or given ones (teacher-forced).
* Attack features: :func:`mb_scores` (DTW-aligned and duration-aligned mel distances),
  :func:`text_features` / :func:`mel_features` and :class:`FBEncoders` (the FB attack's two MLP encoders).

Two membership settings (the paper only has the first):
``shift``: non-members from another corpus / speaker (the paper's LJSpeech vs LibriTTS: partly a
distribution-shift test); ``iid``: non-members are held-out utterances of the members' corpus and speaker.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import get_device, rng_for, seed_everything
from m4i_utils.data import speech, speech_world
from m4i_utils.data.records import DataError

IID_ROLES = ("target_members", "target_nonmembers", "shadow_members", "shadow_nonmembers", "test", "public")
SHIFT_ROLES = ("target_shift_nonmembers", "shadow_shift_nonmembers")
N_SYMBOLS = len(speech.SYMBOLS) + 1  # + padding index 0


# --------------------------------------------------------------------------------------------- data


@dataclass
class SpeechSet:
    """Featurised utterances: per utterance a token sequence (L,), a log-mel (T, 80) with T = durations.sum(),
    per-token durations (frames), log pitch and log energy averaged over each token's frames."""

    ids: list[str]
    speakers: list[str]
    texts: list[str]
    tokens: list[np.ndarray]
    mels: list[np.ndarray]
    durations: list[np.ndarray]
    pitch: list[np.ndarray]
    energy: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: list[int] | np.ndarray) -> SpeechSet:
        """The utterances at ``idx``, in that order."""
        return SpeechSet(*([getattr(self, f)[int(i)] for i in idx] for f in _FIELDS))


_FIELDS = ("ids", "speakers", "texts", "tokens", "mels", "durations", "pitch", "energy")


def _phone_average(frame_values: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Mean of a per-frame track over each token's frames (FastSpeech2's phoneme-level pitch/energy)."""
    edges = np.concatenate([[0], np.cumsum(durations)])
    sums = np.add.reduceat(frame_values, edges[:-1]) if len(frame_values) else np.zeros(len(durations))
    return (sums / np.maximum(durations, 1)).astype(np.float32)


def featurise(wav: np.ndarray, text: str, durations: np.ndarray | None) -> dict[str, np.ndarray]:
    """Mel, tokens and (when ``durations`` is given) token-level log pitch / log energy of one utterance."""
    mel = speech.mel_spectrogram(wav, speech.SAMPLE_RATE)
    tokens = np.asarray(speech.symbol_ids(text), np.int64)
    out = {"mel": mel.astype(np.float32), "tokens": tokens}
    out["log_f0"] = np.log(np.maximum(speech.frame_pitch(wav, speech.SAMPLE_RATE), 1.0)).astype(np.float32)
    out["log_energy"] = np.log(speech.frame_energy(wav, speech.SAMPLE_RATE) + 1e-4).astype(np.float32)
    if durations is not None:
        _check_durations(durations, len(tokens), len(mel), text)
    return out


def _check_durations(durations: np.ndarray, n_tokens: int, n_frames: int, what: str) -> None:
    if len(durations) != n_tokens or int(durations.sum()) != n_frames or durations.min() < 1:
        raise DataError(
            f"durations of {what!r} do not fit: {len(durations)} durations for {n_tokens} tokens, sum "
            f"{int(durations.sum())} for {n_frames} frames (every token needs >= 1 frame)"
        )


def align_durations(tokens: list[np.ndarray], mels: list[np.ndarray], n_iter: int = 6) -> list[np.ndarray]:
    """Per-token durations of real utterances by Viterbi training, with no external aligner.

    A left-to-right model with one mean log-mel vector per symbol: start from durations proportional to a
    per-class prior (vowels longer than consonants and spaces), estimate the symbol means from the aligned
    frames, re-align every utterance with the monotonic alignment search (dynamic programming, each token
    at least one frame, squared Euclidean cost), and repeat ``n_iter`` times.
    """
    for toks, mel in zip(tokens, mels, strict=True):
        if len(mel) < len(toks):
            raise DataError(
                f"an utterance has {len(mel)} mel frames for {len(toks)} characters; cannot align"
            )
    prior = np.ones(N_SYMBOLS)
    for ch in "aeiouy":
        prior[speech.symbol_ids(ch)[0]] = 2.0
    for ch in ",.?":
        prior[speech.symbol_ids(ch)[0]] = 3.0
    durs = []
    for toks, mel in zip(tokens, mels, strict=True):
        w = prior[toks]
        d = np.maximum(1, np.floor(w / w.sum() * len(mel))).astype(np.int64)
        d[np.argmax(w)] += len(mel) - d.sum()
        if d.min() < 1:  # the remainder was negative: fall back to uniform
            d = np.full(len(toks), len(mel) // len(toks), np.int64)
            d[-1] += len(mel) - d.sum()
        durs.append(d)
    for _ in range(n_iter):
        sums = np.zeros((N_SYMBOLS, mels[0].shape[1]))
        counts = np.zeros(N_SYMBOLS)
        for toks, mel, d in zip(tokens, mels, durs, strict=True):
            owner = np.repeat(toks, d)
            np.add.at(sums, owner, mel)
            np.add.at(counts, owner, 1)
        means = sums / np.maximum(counts, 1)[:, None]
        sq_means = (means**2).sum(1)
        durs = []
        for toks, mel in zip(tokens, mels, strict=True):  # squared distances, tokens x frames
            cost = sq_means[toks][:, None] - 2 * means[toks] @ mel.T + (mel**2).sum(1)[None, :]
            durs.append(_monotonic_alignment(cost))
    return durs


def _monotonic_alignment(cost: np.ndarray) -> np.ndarray:
    """Durations of the cheapest monotonic path through ``cost`` (tokens x frames), each token >= 1 frame."""
    n_tok, n_fr = cost.shape
    acc = np.full((n_tok, n_fr), np.inf)
    acc[0, 0] = cost[0, 0]
    step = np.zeros((n_tok, n_fr), bool)  # True: arrived from the previous token
    for t in range(1, n_fr):
        stay = acc[:, t - 1]
        move = np.concatenate([[np.inf], acc[:-1, t - 1]])
        step[:, t] = move < stay
        acc[:, t] = np.minimum(stay, move) + cost[:, t]
    durs = np.zeros(n_tok, np.int64)
    i = n_tok - 1
    for t in range(n_fr - 1, -1, -1):
        durs[i] += 1
        if t > 0 and step[i, t]:
            i -= 1
    return durs


def _role_sizes(cfg: Config, n_iid: int, n_shift: int) -> tuple[dict[str, int], dict[str, int]]:
    if cfg.tts_source == "synthetic":
        iid = {
            "target_members": cfg.tts_n_members,
            "target_nonmembers": cfg.tts_n_nonmembers,
            "shadow_members": cfg.tts_n_members,
            "shadow_nonmembers": cfg.tts_n_nonmembers,
            "test": cfg.tts_n_test,
            "public": cfg.tts_n_public,
        }
        shift = {
            "target_shift_nonmembers": cfg.tts_n_nonmembers,
            "shadow_shift_nonmembers": cfg.tts_n_nonmembers,
        }
    else:  # a small real corpus: fixed fractions
        frac = {"target_members": 0.3, "target_nonmembers": 0.2, "shadow_members": 0.2,
                "shadow_nonmembers": 0.15, "test": 0.05}  # fmt: skip
        iid = {k: int(v * n_iid) for k, v in frac.items()}
        iid["public"] = n_iid - sum(iid.values())
        shift = {"target_shift_nonmembers": n_shift // 2, "shadow_shift_nonmembers": n_shift - n_shift // 2}
    if sum(iid.values()) > n_iid or sum(shift.values()) > n_shift or min(iid.values()) <= 0:
        raise ValueError(
            f"impossible TTS split sizes {iid} / {shift} for corpora of {n_iid} and {n_shift} utterances; "
            "lower tts_n_* or use a larger corpus"
        )
    return iid, shift


def _corpora(cfg: Config) -> tuple[str, str]:
    if cfg.tts_source == "synthetic":
        return ("synth_lj", "synth_libri")
    return (cfg.tts_real_corpora[0], cfg.tts_real_corpora[1])


def _load_raw(cfg: Config) -> tuple[list, list]:
    """(iid corpus, shift corpus) as lists of (id, speaker, text, wav, durations or None)."""
    if cfg.tts_source == "synthetic":
        iid_sizes, shift_sizes = _role_sizes(cfg, 10**9, 10**9)
        lj = speech_world.generate("lj", sum(iid_sizes.values()), cfg.seed)
        libri = speech_world.generate("libri", sum(shift_sizes.values()), cfg.seed)
        as_rows = lambda utts: [(u.id, u.speaker, u.text, u.wav, u.durations) for u in utts]  # noqa: E731
        return as_rows(lj), as_rows(libri)
    rows = []
    for name in _corpora(cfg):
        utts = speech.load_speech_corpus(name, cfg.data_root)
        part = []
        for u in tqdm(utts, desc=f"load {name}", leave=False):
            wav = u.load_audio(speech.SAMPLE_RATE)
            wav, _ = librosa.effects.trim(wav, top_db=40)  # leading / trailing silence
            part.append((u.id, u.speaker, u.text, wav, None))
        rows.append(part)
    return rows[0], rows[1]


def _build_set(rows: list, align: bool) -> SpeechSet:
    feats = [featurise(wav, text, d) for _, _, text, wav, d in tqdm(rows, desc="featurise", leave=False)]
    if align:
        durs = align_durations([f["tokens"] for f in feats], [f["mel"] for f in feats])
    else:
        durs = [np.asarray(r[4], np.int64) for r in rows]
    pitch = [_phone_average(f["log_f0"][: len(f["mel"])], d) for f, d in zip(feats, durs, strict=True)]
    energy = [_phone_average(f["log_energy"][: len(f["mel"])], d) for f, d in zip(feats, durs, strict=True)]
    return SpeechSet(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [f["tokens"] for f in feats], [f["mel"] for f in feats], durs, pitch, energy,
    )  # fmt: skip


def _save_set(s: SpeechSet, path: Path) -> None:
    arrays = {}
    for f in ("tokens", "mels", "durations", "pitch", "energy"):
        seq = getattr(s, f)
        arrays[f] = np.concatenate(seq)
        arrays[f + "_len"] = np.array([len(x) for x in seq])
    np.savez(path.with_suffix(".npz"), **arrays)
    path.with_suffix(".json").write_text(json.dumps({"ids": s.ids, "speakers": s.speakers, "texts": s.texts}))


def _load_set(path: Path) -> SpeechSet:
    meta = json.loads(path.with_suffix(".json").read_text())
    z = np.load(path.with_suffix(".npz"))
    split = {
        f: np.split(z[f], np.cumsum(z[f + "_len"])[:-1])
        for f in ("tokens", "mels", "durations", "pitch", "energy")
    }
    return SpeechSet(meta["ids"], meta["speakers"], meta["texts"], split["tokens"], split["mels"],
                     split["durations"], split["pitch"], split["energy"])  # fmt: skip


@dataclass
class TTSData:
    """The featurised corpora and the role assignment of one configuration."""

    sets: dict[str, SpeechSet]  # role -> utterances
    corpora: tuple[str, str]  # (iid corpus, shift corpus)
    key: str

    def role(self, name: str) -> SpeechSet:
        if name not in self.sets:
            raise KeyError(f"unknown TTS role {name!r}; roles: {sorted(self.sets)}")
        return self.sets[name]


def load_tts_data(cfg: Config) -> TTSData:
    """Featurised utterances split into the roles of :data:`IID_ROLES` and :data:`SHIFT_ROLES` (cached).

    The roles of the iid corpus are disjoint and drawn with a seeded permutation; the shift roles come from
    the other corpus (synthetic: the multi-speaker ``libri`` world; real: ``cfg.tts_real_corpora``, by default
    the second speaker's 141 recordings of LJSpeech sentences as the members' corpus and the LJSpeech clips as
    the other speaker; ``("ljspeech", "libritts")`` is the paper's pair when the full corpora are present).
    """
    params = {
        "source": cfg.tts_source,
        "seed": cfg.seed,
        **{f: getattr(cfg, f"tts_{f}") for f in ("n_members", "n_nonmembers", "n_test", "n_public")},
    }
    if cfg.tts_source == "real":
        for name in _corpora(cfg):
            root = speech.resolve_speech_root(cfg.data_root, name)
            files = sorted(p for p in root.rglob("*") if p.is_file())
            params[f"root_{name}"] = [str(root), len(files), sum(p.stat().st_size for p in files)]

    def build(out: Path) -> None:
        iid_rows, shift_rows = _load_raw(cfg)
        iid_sizes, shift_sizes = _role_sizes(cfg, len(iid_rows), len(shift_rows))
        align = cfg.tts_source == "real"
        for rows, sizes, label in ((iid_rows, iid_sizes, "iid"), (shift_rows, shift_sizes, "shift")):
            full = _build_set(rows, align)
            order = rng_for(cfg.seed, "tts_split", label).permutation(len(full))
            start = 0
            for role, n in sizes.items():
                _save_set(full.subset(order[start : start + n]), out / role)
                start += n

    art = cached(cfg.cache_dir, "tts_data", params, build,
                 code_modules=["m4i_utils.data.speech", "m4i_utils.data.speech_world"])  # fmt: skip
    sets = {r: _load_set(art.path / r) for r in IID_ROLES + SHIFT_ROLES}
    return TTSData(sets, _corpora(cfg), art.key)


# --------------------------------------------------------------------------------------------- model


def _sinusoid_table(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)
    return table


class FFTBlock(nn.Module):
    """FastSpeech's feed-forward Transformer block: self-attention + a 1-D convolutional feed-forward."""

    def __init__(self, d: int, heads: int, d_ff: int, kernel: int = 9, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.conv1 = nn.Conv1d(d, d_ff, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(d_ff, d, 1)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
        x = self.norm1(x + self.drop(a)).masked_fill(pad[..., None], 0.0)
        h = self.conv2(F.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)
        return self.norm2(x + self.drop(h)).masked_fill(pad[..., None], 0.0)


class VariancePredictor(nn.Module):
    """Two conv layers + linear: one scalar per token (duration in log frames, pitch or energy)."""

    def __init__(self, d: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(d, d, 3, padding=1), nn.Conv1d(d, d, 3, padding=1)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.norm1(F.relu(self.conv1(x.transpose(1, 2)).transpose(1, 2))))
        h = self.drop(self.norm2(F.relu(self.conv2(h.transpose(1, 2)).transpose(1, 2))))
        return self.out(h).squeeze(-1).masked_fill(pad, 0.0)


class FastSpeech2(nn.Module):
    """A FastSpeech2-style text-to-mel model (no postnet; pitch / energy predictors optional).

    Pitch and energy are token-level z-scores (statistics of the training utterances) quantised into
    ``n_bins`` embeddings, as in FastSpeech2's phoneme-level variant.
    """

    def __init__(
        self, cfg: Config, n_mels: int = speech.N_MELS, n_bins: int = 64, max_len: int = 4000
    ) -> None:
        super().__init__()
        d = cfg.tts_d_model
        self.embed = nn.Embedding(N_SYMBOLS, d, padding_idx=0)
        self.register_buffer("pos", _sinusoid_table(max_len, d), persistent=False)
        blocks = lambda n: nn.ModuleList(  # noqa: E731
            FFTBlock(d, cfg.tts_heads, cfg.tts_d_ff, cfg.tts_kernel, cfg.tts_dropout) for _ in range(n)
        )
        self.encoder, self.decoder = blocks(cfg.tts_enc_layers), blocks(cfg.tts_dec_layers)
        self.duration = VariancePredictor(d)
        self.variance = cfg.tts_variance
        if self.variance:
            self.pitch, self.energy = VariancePredictor(d), VariancePredictor(d)
            self.pitch_embed, self.energy_embed = nn.Embedding(n_bins, d), nn.Embedding(n_bins, d)
            self.register_buffer("bins", torch.linspace(-3, 3, n_bins - 1))
        self.register_buffer("stats", torch.tensor([0.0, 1.0, 0.0, 1.0]))  # pitch mean/std, energy mean/std
        self.mel_out = nn.Linear(d, n_mels)

    def _positions(self, n: int) -> torch.Tensor:
        """Sinusoidal positions 0..n-1 (the table is extended for sequences longer than it)."""
        if n <= len(self.pos):
            return self.pos[:n]
        return _sinusoid_table(n, self.pos.shape[1]).to(self.pos.device)

    def _add_variance(self, h, pad, pitch, energy):
        p_pred, e_pred = self.pitch(h, pad), self.energy(h, pad)
        p = pitch if pitch is not None else p_pred
        e = energy if energy is not None else e_pred
        h = (
            h
            + self.pitch_embed(torch.bucketize(p, self.bins))
            + self.energy_embed(torch.bucketize(e, self.bins))
        )
        return h, p_pred, e_pred

    def forward(self, tokens, durations=None, pitch=None, energy=None) -> dict[str, torch.Tensor]:
        """``tokens`` (B, L) padded with 0. With ``durations`` (B, L) the length regulator uses them
        (training, teacher forcing); without, the predicted durations. ``pitch`` / ``energy``: normalised
        targets (None: the predicted values)."""
        pad = tokens == 0
        h = self.embed(tokens) + self._positions(tokens.shape[1])
        for block in self.encoder:
            h = block(h, pad)
        log_d = self.duration(h, pad)
        out = {"log_duration": log_d, "src_pad": pad}
        if self.variance:
            h, out["pitch"], out["energy"] = self._add_variance(h, pad, pitch, energy)
        if durations is None:
            durations = torch.clamp(torch.round(torch.exp(log_d) - 1), min=1).long().masked_fill(pad, 0)
        frames, mel_pad = _length_regulate(h, durations)
        frames = frames + self._positions(frames.shape[1])
        for block in self.decoder:
            frames = block(frames, mel_pad)
        out.update(mel=self.mel_out(frames), mel_pad=mel_pad, durations=durations)
        return out


def _length_regulate(h: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat every token's hidden vector by its duration; returns padded frames and their padding mask."""
    seqs = [torch.repeat_interleave(h[b], durations[b], dim=0) for b in range(h.shape[0])]
    lengths = torch.tensor([len(s) for s in seqs], device=h.device)
    frames = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    pad = torch.arange(frames.shape[1], device=h.device)[None, :] >= lengths[:, None]
    return frames, pad


def _batch(
    s: SpeechSet, idx: list[int], stats: torch.Tensor, device: torch.device
) -> dict[str, torch.Tensor]:
    def pad(seqs, dtype):
        return nn.utils.rnn.pad_sequence(
            [torch.as_tensor(x, dtype=dtype) for x in seqs], batch_first=True
        ).to(device)

    pm, ps, em, es = stats.tolist()
    return {
        "tokens": pad([s.tokens[i] for i in idx], torch.long),
        "durations": pad([s.durations[i] for i in idx], torch.long),
        "pitch": pad([(s.pitch[i] - pm) / ps for i in idx], torch.float32),
        "energy": pad([(s.energy[i] - em) / es for i in idx], torch.float32),
        "mel": pad([s.mels[i] for i in idx], torch.float32),
    }


def tts_loss(model: FastSpeech2, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """FastSpeech2's loss: mel L1 + MSE of log durations (+ pitch and energy MSE), padding masked."""
    out = model(b["tokens"], b["durations"], b["pitch"], b["energy"])
    keep_mel = ~out["mel_pad"]
    keep_tok = ~out["src_pad"]
    mel_l1 = (out["mel"] - b["mel"]).abs().mean(-1)[keep_mel].mean()
    dur = F.mse_loss(out["log_duration"][keep_tok], torch.log(b["durations"].float() + 1)[keep_tok])
    parts = {"mel_l1": mel_l1, "duration": dur}
    if model.variance:
        parts["pitch"] = F.mse_loss(out["pitch"][keep_tok], b["pitch"][keep_tok])
        parts["energy"] = F.mse_loss(out["energy"][keep_tok], b["energy"][keep_tok])
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


@dataclass
class TrainedTTS:
    """A trained (or loaded) text-to-mel model and its training record."""

    name: str
    role: str
    model: FastSpeech2
    history: dict[str, list[float]]
    build_seconds: float
    key: str


def _length_batches(s: SpeechSet, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of utterances of similar length (less padding), in random order; membership of a batch is
    re-drawn every epoch by shuffling before a stable sort by length within chunks of 4 batches."""
    order = rng.permutation(len(s))
    chunk = 4 * batch_size
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk].tolist(), key=lambda i: len(s.mels[i]))
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _stats(s: SpeechSet) -> torch.Tensor:
    p, e = np.concatenate(s.pitch), np.concatenate(s.energy)
    return torch.tensor([p.mean(), max(p.std(), 1e-3), e.mean(), max(e.std(), 1e-3)], dtype=torch.float32)


def _evaluate_loss(model: FastSpeech2, s: SpeechSet, device: torch.device, batch_size: int) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(s), batch_size):
            idx = list(range(start, min(start + batch_size, len(s))))
            _, parts = tts_loss(model, _batch(s, idx, model.stats, device))
            total += parts["mel_l1"] * len(idx)
            n += len(idx)
    return total / max(n, 1)


def get_tts_model(cfg: Config, data: TTSData, role: str = "target") -> TrainedTTS:
    """Train (or load from the cache) the ``target`` or ``shadow`` model on ``<role>_members``.

    Adam with a linear warm-up over the first 10% of steps, batches of ``tts_batch_size`` utterances,
    ``tts_epochs`` epochs; the validation curve is the mel L1 on ``test`` (monitoring only).
    """
    if role not in ("target", "shadow"):
        raise ValueError(f"role must be 'target' or 'shadow', got {role!r}")
    fields = ("tts_d_model", "tts_enc_layers", "tts_dec_layers", "tts_heads", "tts_d_ff", "tts_kernel",
              "tts_dropout", "tts_variance", "tts_epochs", "tts_batch_size", "tts_lr")  # fmt: skip
    params = {"role": role, "seed": cfg.seed, **{f: getattr(cfg, f) for f in fields}}
    train, val = data.role(f"{role}_members"), data.role("test")
    device = get_device()

    def build(out: Path) -> None:
        seed_everything(cfg.seed + (0 if role == "target" else 1))
        model = FastSpeech2(cfg).to(device)
        model.stats.copy_(_stats(train))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.tts_lr, betas=(0.9, 0.98), eps=1e-9)
        steps_per_epoch = math.ceil(len(train) / cfg.tts_batch_size)
        warm = max(1, steps_per_epoch * cfg.tts_epochs // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
        rng = rng_for(cfg.seed, "tts_batches", role)
        hist: dict[str, list[float]] = {
            "train_mel_l1": [],
            "train_total": [],
            "val_epoch": [],
            "val_mel_l1": [],
        }
        val_every = max(1, cfg.tts_epochs // 10)
        for epoch in tqdm(range(1, cfg.tts_epochs + 1), desc=f"train TTS {role}", leave=False):
            model.train()
            tot, mel_l1, n = 0.0, 0.0, 0
            for idx in _length_batches(train, cfg.tts_batch_size, rng):
                loss, parts = tts_loss(model, _batch(train, idx, model.stats, device))
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                tot += float(loss) * len(idx)
                mel_l1 += parts["mel_l1"] * len(idx)
                n += len(idx)
            hist["train_total"].append(tot / n)
            hist["train_mel_l1"].append(mel_l1 / n)
            if epoch % val_every == 0 or epoch == cfg.tts_epochs:
                hist["val_epoch"].append(epoch)
                hist["val_mel_l1"].append(_evaluate_loss(model, val, device, cfg.tts_batch_size))
        torch.save(model.state_dict(), out / "model.pt")
        (out / "history.json").write_text(json.dumps(hist))

    art = cached(
        cfg.cache_dir, "tts_model", params, build, upstream=[data.key], code_modules=["m4i_utils.models.tts"]
    )
    model = FastSpeech2(cfg)
    try:
        model.load_state_dict(torch.load(art.file("model.pt"), map_location="cpu", weights_only=True))
    except RuntimeError as err:
        raise DataError(
            f"cached TTS checkpoint {art.path} does not match the configured model: {err}"
        ) from err
    model.to(device).eval()
    history = json.loads(art.file("history.json").read_text())
    return TrainedTTS(role, role, model, history, float(art.manifest["build_seconds"]), art.key)


def synthesize(
    tts: TrainedTTS, s: SpeechSet, teacher_durations: bool = False, batch_size: int = 32
) -> list[np.ndarray]:
    """Mels the model synthesises for the texts of ``s`` (the attacker's queries).

    ``teacher_durations=False`` is the black-box query: durations, pitch and energy are the model's own
    predictions, so the output length differs from the reference. ``True`` forces the reference durations
    (a grey-box query that needs the alignment), so the output is frame-aligned with the reference.
    """
    model = tts.model
    device = next(model.parameters()).device
    mels = []
    with torch.no_grad():
        for start in range(0, len(s), batch_size):
            idx = list(range(start, min(start + batch_size, len(s))))
            b = _batch(s, idx, model.stats, device)
            out = model(b["tokens"], b["durations"] if teacher_durations else None)
            lengths = (~out["mel_pad"]).sum(1).tolist()
            mels.extend(out["mel"][k, : lengths[k]].float().cpu().numpy() for k in range(len(idx)))
    return mels


# --------------------------------------------------------------------------------------------- attacks


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance along the DTW path between two mels (frames x bins; librosa DTW)."""
    cost, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    return float(cost[-1, -1] / len(path))


def aligned_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance of two frame-aligned mels (the paper's metric, reference durations)."""
    if a.shape != b.shape:
        raise ValueError(f"mels are not aligned: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean())


def mb_scores(tts: TrainedTTS, s: SpeechSet) -> dict[str, np.ndarray]:
    """MB membership scores (higher = more likely a member) of every utterance of ``s``.

    ``dtw``: minus the DTW-aligned distance of the black-box synthesis to the reference mel;
    ``teacher_forced``: minus the frame distance when the reference durations are forced.
    """
    free = synthesize(tts, s, teacher_durations=False)
    forced = synthesize(tts, s, teacher_durations=True)
    return {
        "dtw": -np.array([dtw_distance(m, r) for m, r in zip(free, s.mels, strict=True)]),
        "teacher_forced": -np.array([aligned_distance(m, r) for m, r in zip(forced, s.mels, strict=True)]),
        "synth": free,
    }


def text_features(texts: list[str]) -> np.ndarray:
    """Bag of characters and character bigrams of each text (L2-normalised counts): the FB text input."""
    n = N_SYMBOLS
    out = np.zeros((len(texts), n + n * n), np.float32)
    for i, t in enumerate(texts):
        ids = np.asarray(speech.symbol_ids(t))
        np.add.at(out[i], ids, 1.0)
        np.add.at(out[i], n + ids[:-1] * n + ids[1:], 1.0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)


def mel_features(mels: list[np.ndarray]) -> np.ndarray:
    """Per-bin mean, standard deviation and mean absolute frame-to-frame change, plus log length: the FB mel
    input (a fixed-size summary of a variable-length mel)."""
    rows = []
    for m in mels:
        delta = np.abs(np.diff(m, axis=0)).mean(0) if len(m) > 1 else np.zeros(m.shape[1])
        rows.append(np.concatenate([m.mean(0), m.std(0), delta, [np.log(len(m))]]))
    return np.asarray(rows, np.float32)


def _mlp3(d_in: int, d_out: int, hidden: int = 256) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))  # fmt: skip


class FBEncoders:
    """The FB attack's feature extractor: two 3-layer MLPs, text -> R^k and mel -> R^k (M4I appendix E).

    Trained on the attacker's public (text, reference mel) pairs to align the two views with a symmetric
    contrastive (InfoNCE) loss: a pair's embeddings close, other pairs' apart. Inputs are standardised with
    the public statistics.
    """

    def __init__(self, cfg: Config, public: SpeechSet) -> None:
        tf, mf = text_features(public.texts), mel_features(public.mels)
        self.t_mu, self.t_sd = tf.mean(0), tf.std(0) + 1e-4
        self.m_mu, self.m_sd = mf.mean(0), mf.std(0) + 1e-4
        torch.manual_seed(cfg.seed)
        self.text = _mlp3(tf.shape[1], cfg.tts_fb_dim)
        self.mel = _mlp3(mf.shape[1], cfg.tts_fb_dim)
        params = list(self.text.parameters()) + list(self.mel.parameters())
        opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
        xt = torch.as_tensor((tf - self.t_mu) / self.t_sd)
        xm = torch.as_tensor((mf - self.m_mu) / self.m_sd)
        rng = rng_for(cfg.seed, "tts_fb_encoders")
        self.history: list[float] = []
        batch = min(128, len(public))
        for _ in range(cfg.tts_fb_epochs):
            order = rng.permutation(len(public))
            total = 0.0
            for start in range(0, len(order) - batch + 1, batch):
                idx = torch.as_tensor(order[start : start + batch])
                zt = F.normalize(self.text(xt[idx]), dim=1)
                zm = F.normalize(self.mel(xm[idx]), dim=1)
                logits = zt @ zm.T / 0.1
                target = torch.arange(len(idx))
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss)
            self.history.append(total / max(1, len(order) // batch))
        self.text.eval()
        self.mel.eval()

    def embed_text(self, texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor((text_features(texts) - self.t_mu) / self.t_sd)
            return F.normalize(self.text(x), dim=1).numpy()

    def embed_mel(self, mels: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor((mel_features(mels) - self.m_mu) / self.m_sd)
            return F.normalize(self.mel(x), dim=1).numpy()

    def retrieval_recall(self, s: SpeechSet, k: int = 10) -> float:
        """Text -> mel recall@k on ``s`` (chance: k / len(s)): does the extractor align the views?"""
        sim = self.embed_text(s.texts) @ self.embed_mel(s.mels).T
        ranks = (sim > np.diag(sim)[:, None]).sum(1)
        return float((ranks < k).mean())


def fb_features(enc: FBEncoders, s: SpeechSet, synth: list[np.ndarray]) -> dict[str, np.ndarray]:
    """FB attack inputs. ``paper``: text embedding minus the synthesised mel's embedding (input vs output,
    as M4I's image vs generated caption); ``with_reference``: that plus the reference mel's embedding minus
    the synthesised mel's (uses the ground-truth audio the attacker holds; beyond the paper)."""
    zt, zs, zr = enc.embed_text(s.texts), enc.embed_mel(synth), enc.embed_mel(s.mels)
    return {"paper": zt - zs, "with_reference": np.concatenate([zt - zs, zr - zs], axis=1)}


def blind_features(s: SpeechSet) -> np.ndarray:
    """What an attacker knows without querying the model: the text and the reference mel's summary."""
    return np.concatenate([text_features(s.texts), mel_features(s.mels)], axis=1)


def utility(tts: TrainedTTS, s: SpeechSet, train: SpeechSet) -> dict[str, Any]:
    """Mel L1 / L2 (mean per frame, teacher-forced durations) and DTW distance (free-running) on ``s``,
    beside a baseline that outputs the training set's mean frame for every frame."""
    forced = synthesize(tts, s, teacher_durations=True)
    free = synthesize(tts, s, teacher_durations=False)
    mean_frame = np.concatenate(train.mels).mean(0)
    l1 = np.mean([np.abs(m - r).mean() for m, r in zip(forced, s.mels, strict=True)])
    l2 = np.mean([aligned_distance(m, r) for m, r in zip(forced, s.mels, strict=True)])
    base_l1 = np.mean([np.abs(mean_frame[None] - r).mean() for r in s.mels])
    base_l2 = np.mean([np.linalg.norm(mean_frame[None] - r, axis=1).mean() for r in s.mels])
    dtw = np.mean([dtw_distance(m, r) for m, r in zip(free, s.mels, strict=True)])
    base_dtw = np.mean(
        [dtw_distance(np.repeat(mean_frame[None], len(m), 0), r) for m, r in zip(free, s.mels, strict=True)]
    )
    return {"mel_l1": l1, "mel_l2": l2, "dtw": dtw, "baseline_mel_l1": base_l1, "baseline_mel_l2": base_l2,
            "baseline_dtw": base_dtw}  # fmt: skip
