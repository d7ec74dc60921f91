"""The speech data of the TTS experiment (M4I appendix E, notebook 08): featurised utterances in disjoint,
seeded roles.

For the embedded speech world (:mod:`m4i_utils.data.speech_world`) and for real LJSpeech-format clips
(:mod:`m4i_utils.data.speech`), :func:`load_tts_data` featurises every utterance (FastSpeech2 mel,
per-character durations, token-level pitch and energy; :class:`SpeechSet`) and assigns it to a role
(:class:`TTSData`), cached. Real clips have no alignment, so durations come from :func:`align_durations`
(Viterbi training of a left-to-right model with one mean mel per character: a monotonic alignment search
on a learnt cost, no external aligner, no downloads).

Two membership settings (the paper only has the first):
``shift``: non-members from another corpus / speaker (the paper's LJSpeech vs LibriTTS: partly a
distribution-shift test, roles :data:`SHIFT_ROLES`); ``iid``: non-members are held-out utterances of the
members' corpus and speaker (roles :data:`IID_ROLES`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
from tqdm.auto import tqdm

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import rng_for
from m4i_utils.data import speech, speech_world
from m4i_utils.data.records import DataError, file_sha256

IID_ROLES = ("target_members", "target_nonmembers", "shadow_members", "shadow_nonmembers", "test", "public")
SHIFT_ROLES = ("target_shift_nonmembers", "shadow_shift_nonmembers")
N_SYMBOLS = len(speech.SYMBOLS) + 1  # + padding index 0


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


def real_corpora_digest(cfg: Config) -> dict[str, list]:
    """Per real corpus of ``cfg.tts_real_corpora``: its folder, file count and a sha256 over every file's
    relative path and content (memoised file hashes, :func:`m4i_utils.data.records.file_sha256`), so that a
    changed, swapped or corrupted recording or transcript rebuilds the cached TTS data."""
    out = {}
    for name in _corpora(cfg):
        root = speech.resolve_speech_root(cfg.data_root, name)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(root)}:{file_sha256(f)}\n".encode())
        out[f"root_{name}"] = [str(root), len(files), h.hexdigest()[:16]]
    return out


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
        params.update(real_corpora_digest(cfg))

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
