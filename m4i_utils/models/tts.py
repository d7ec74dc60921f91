"""The FastSpeech2-style target of the TTS experiment (M4I appendix E, notebook 08): model, training,
synthesis and utility.

The paper attacks FastSpeech2 (text -> mel spectrogram) trained on LJSpeech, with LibriTTS utterances as
non-members. This module provides, on the speech roles of :mod:`m4i_utils.data.speech_sets`:

* :class:`FastSpeech2`: FFT-block encoder, variance adaptor (duration, optional pitch and energy), length
  regulator, FFT-block decoder, linear mel head (Ren et al. 2021; sizes from the config).
* :func:`get_tts_model`: train or load (cached) a model on a role's utterances.
* :func:`synthesize`: batched inference, with predicted durations (black-box) or given ones (teacher-forced).
* :func:`utility`: mel L1 / L2 and DTW distance to the reference (:func:`aligned_distance`,
  :func:`dtw_distance`, also the MB signal of :mod:`m4i_utils.signals.speech`) beside a mean-frame baseline.
"""

from __future__ import annotations

import hashlib
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

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import get_device, rng_for, seed_everything
from m4i_utils.data import speech
from m4i_utils.data.records import DataError
from m4i_utils.data.speech_sets import N_SYMBOLS, SpeechSet, TTSData, load_tts_data
from m4i_utils.models.training import fit

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
    """A trained (or loaded) text-to-mel model and its training record; a
    :class:`~m4i_utils.models.base.Target` (kind ``tts``) whose output for an utterance is the mel
    spectrogram it synthesises from the utterance's text (black-box query, M4I appendix E)."""

    name: str
    role: str
    model: FastSpeech2
    history: dict[str, list[float]]
    build_seconds: float
    key: str
    train_seed: int = 0
    kind: str = "tts"

    def query(self, cfg: Config, dataset: str, role: str) -> list[np.ndarray]:
        """Synthesised mels (predicted durations) of every utterance of role ``role``, in role order.

        ``dataset`` names the corpus of the run's TTS data (:func:`m4i_utils.data.speech_sets.load_tts_data`);
        another name is an error.
        """
        data = load_tts_data(cfg)
        corpora = set(data.corpora)
        if dataset not in corpora:
            raise ValueError(f"the TTS data of this run has corpora {sorted(corpora)}, not {dataset!r}")
        return synthesize(self, data.role(role), teacher_durations=False)


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
    """Train (or load from the cache) the ``target`` or ``shadow`` model on ``<role>_members``
    (:func:`get_tts_on`, training seed :func:`_train_seed`)."""
    if role not in ("target", "shadow"):
        raise ValueError(f"role must be 'target' or 'shadow', got {role!r}")
    return get_tts_on(cfg, data, data.role(f"{role}_members"), role, _train_seed(cfg, role))


def get_tts_on(cfg: Config, data: TTSData, train: SpeechSet, tag: str, seed: int) -> TrainedTTS:
    """Train (or load from the cache) a TTS model on the utterances ``train`` (e.g. a reference model of
    notebook 10 on a random half of a population), named ``tag``, weights and batch order seeded by ``seed``.

    Adam with a linear warm-up over the first 10% of steps, batches of ``tts_batch_size`` utterances,
    ``tts_epochs`` epochs; the validation curve is the mel L1 on ``test`` (monitoring only). The cache key
    includes the members' ids.
    """
    fields = ("tts_d_model", "tts_enc_layers", "tts_dec_layers", "tts_heads", "tts_d_ff", "tts_kernel",
              "tts_dropout", "tts_variance", "tts_epochs", "tts_batch_size", "tts_lr")  # fmt: skip
    members = hashlib.sha256("\n".join(train.ids).encode()).hexdigest()[:16]
    params = {"role": tag, "seed": cfg.seed, "train_seed": seed, "members": members}
    params |= {f: getattr(cfg, f) for f in fields}
    role = tag
    val = data.role("test")
    device = get_device()

    def build(out: Path, checkpoints: Path) -> None:
        seed_everything(seed)
        model = FastSpeech2(cfg).to(device)
        model.stats.copy_(_stats(train))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.tts_lr, betas=(0.9, 0.98), eps=1e-9)
        steps_per_epoch = math.ceil(len(train) / cfg.tts_batch_size)
        warm = max(1, steps_per_epoch * cfg.tts_epochs // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
        rng = rng_for(cfg.seed, "tts_batches", role)
        val_every = max(1, cfg.tts_epochs // 10)

        def step_loss(model: FastSpeech2, idx: list[int]):
            loss, parts = tts_loss(model, _batch(train, idx, model.stats, device))
            return loss, len(idx), {"mel_l1": parts["mel_l1"]}

        def validate(model: FastSpeech2, epoch: int) -> float | None:
            if epoch % val_every == 0 or epoch == cfg.tts_epochs:
                return _evaluate_loss(model, val, device, cfg.tts_batch_size)
            return None

        fitted = fit(
            model,
            opt,
            lambda _epoch, _gen: _length_batches(train, cfg.tts_batch_size, rng),
            step_loss,
            cfg.tts_epochs,
            numpy_rng=rng,
            scheduler=sched,
            clip_grad_norm=1.0,
            validate=validate,
            checkpoint=checkpoints,
            desc=f"train TTS {role}",
        ).history
        hist: dict[str, list[float]] = {
            "train_mel_l1": fitted.get("mel_l1", []),
            "train_total": fitted["train_loss"],
            "val_epoch": fitted["val_epoch"],
            "val_mel_l1": fitted["val_loss"],
        }
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
    return TrainedTTS(role, role, model, history, float(art.manifest["build_seconds"]), art.key, seed)


def utterance_loss(tts: TrainedTTS, s: SpeechSet) -> np.ndarray:
    """Per utterance of ``s``: the model's mel L1 under teacher forcing (reference durations, pitch and
    energy), in eval mode. The grey-box signal of the TTS calibrated attacks (it needs the model's output
    given the reference's durations, which a black-box text-to-speech service does not take)."""
    device = next(tts.model.parameters()).device
    tts.model.eval()
    out = []
    with torch.no_grad():
        for i in range(len(s)):
            out.append(tts_loss(tts.model, _batch(s, [i], tts.model.stats, device))[1]["mel_l1"])
    return np.asarray(out, dtype=np.float64)


def _train_seed(cfg: Config, role: str) -> int:
    """The seed a ``role`` model trains with (the split seed plus 0 for the target, 1 for the shadow)."""
    return cfg.seed + (0 if role == "target" else 1)


def _train_job(cfg: Config, role: str) -> str:
    """Executor job: train (or find) the ``role`` model in the cache; returns its key."""
    return get_tts_model(cfg, load_tts_data(cfg), role).key


def train_tts_models(cfg: Config, data: TTSData, roles: tuple[str, ...] = ("target", "shadow")) -> dict:
    """``{role: TrainedTTS}`` for ``roles``; the models train as independent jobs on the executor
    (:func:`m4i_utils.core.executor.run_jobs`) and are then loaded from the cache."""
    from m4i_utils.core.executor import run_jobs

    run_jobs(cfg, _train_job, [(cfg, role) for role in roles], desc="TTS models")
    return {role: get_tts_model(cfg, data, role) for role in roles}


def load_tts(cfg: Config, role: str = "target") -> TrainedTTS:
    """Registry loader (kind ``tts``): the ``role`` model of the run's TTS data (trained when absent)."""
    return get_tts_model(cfg, load_tts_data(cfg), role)


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


# ------------------------------------------------------------------------------------------- utility


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance along the DTW path between two mels (frames x bins; librosa DTW)."""
    cost, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    return float(cost[-1, -1] / len(path))


def aligned_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance of two frame-aligned mels (the paper's metric, reference durations)."""
    if a.shape != b.shape:
        raise ValueError(f"mels are not aligned: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean())


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
