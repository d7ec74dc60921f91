"""An embedded speech world for the text-to-speech experiment (notebook 08; M4I appendix E).

The paper attacks FastSpeech2 trained on LJSpeech (one speaker) with LibriTTS (other speakers) as non-members.
Neither corpus can be downloaded here, so the default profile synthesises speech-like audio from text with
a small source-filter (formant) synthesiser written with NumPy/SciPy only:

* **Text.** Sentences of 2-8 words from an embedded word list. The ``lj`` corpus draws from one word list
  and sentence-length distribution; the ``libri`` corpus shares half its words and uses longer sentences
  with more commas and questions (a corpus shift in the text, as between LJSpeech and LibriTTS).
* **Phones.** Every character of the normalised text is one phone: vowels and sonorants are voiced (a
  harmonic source at f0 shaped by three formant resonances), fricatives are band-passed noise, plosives are
  a closure followed by a noise burst, spaces and punctuation are pauses. Formant tracks are interpolated
  between frame centres, which gives smooth coarticulation.
* **Speakers.** A speaker is a base f0, a vocal-tract length factor (scales all formants), a tempo and a
  breathiness. ``lj`` has one speaker, ``libri`` several.
* **Prosody that the text does not determine.** Each utterance draws a tempo and a pitch offset, each word a
  pitch accent and a loudness, each phone a duration jitter. A text-to-mel model can learn the average
  prosody of a phone class from any utterance, but it can reproduce the *drawn* prosody only for utterances
  it was trained on: this is the member / non-member gap the attacks measure, as the per-image hidden
  context is in the captioning worlds (``m4i_utils.data.synthetic``).

Durations are known exactly (in mel frames of hop 256 at 22,050 Hz), so the model needs no aligner on this
world. Everything is deterministic per ``(corpus, n, seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from m4i_utils.core.runtime import rng_for
from m4i_utils.data.speech import HOP_LENGTH, N_FFT, SAMPLE_RATE, normalize_text

WORDS_COMMON = (  # noqa: SIM905 (a word list)
    "the a of and to in was he that it his for as with on by at had not be from this which but were they "
    "all one have there an would their when been who more into out so up said what its about than upon "
    "time only other some could very over after two may before first any must such these great made well "
    "man men down many like old long little good same where people way should most under while our city "
    "house print book type letter page hand work small large early new found known last place years day"
).split()
WORDS_LJ = (  # noqa: SIM905 (a word list)
    "prison court officer report police committee president secret service evidence witness trial sheriff "
    "building window street rifle motorcade shot fired bullet records government federal justice murder "
    "sentence newgate jail prisoners debtors keeper chapel yard cells printing exhibition arts crafts modern"
).split()
WORDS_LIBRI = (  # noqa: SIM905 (a word list)
    "mother father garden river forest morning evening little girl boy heart love dear sister brother king "
    "queen castle horse village ship sea wind night moon star dream smile laugh voice door fire snow summer "
    "winter golden silver sweet quiet gentle wild lonely happy strange beautiful whispered replied cried"
).split()

VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
    "y": (400, 1900, 2600),
}
SONORANTS: dict[str, tuple[float, float, float]] = {
    "l": (360, 1300, 2700),
    "r": (420, 1300, 1600),
    "m": (280, 1000, 2200),
    "n": (280, 1700, 2600),
    "w": (300, 700, 2200),
}
VOICED_OBSTRUENTS = {"b": 0, "d": 1, "g": 1, "v": 2, "z": 3, "j": 3}  # -> noise band index
FRICATIVES = {"s": 3, "f": 2, "h": 0, "c": 3, "x": 3, "k": 1, "q": 1}
PLOSIVES = {"p": 2, "t": 3, "k": 1, "q": 1, "b": 0, "d": 1, "g": 1}
NOISE_BANDS = ((400.0, 2500.0), (1200.0, 4000.0), (1500.0, 7000.0), (3500.0, 8500.0))
NEUTRAL = (500.0, 1500.0, 2500.0)

# Base duration in frames (11.6 ms each) per phone class.
BASE_FRAMES = {"vowel": 7.0, "sonorant": 5.0, "obstruent": 5.0, "fricative": 6.0, "plosive": 5.0}
PAUSE_FRAMES = {" ": 1.5, ",": 12.0, ".": 16.0, "?": 16.0, "'": 1.0}


@dataclass(frozen=True)
class Speaker:
    """Voice of one synthetic speaker."""

    name: str
    f0: float  # Hz
    tract: float  # formant scale (shorter vocal tract -> > 1)
    tempo: float  # duration scale (> 1 = slower)
    breath: float  # noise mixed into voiced phones


@dataclass(frozen=True)
class SynthUtterance:
    """One generated utterance: the waveform at 22,050 Hz and its exact per-character durations (frames)."""

    id: str
    speaker: str
    text: str
    wav: np.ndarray
    durations: np.ndarray


def speakers(corpus: str) -> list[Speaker]:
    """The speakers of ``corpus`` (``lj``: one female-like voice; ``libri``: six varied voices)."""
    if corpus == "lj":
        return [Speaker("LJ", 205.0, 1.12, 1.0, 0.04)]
    if corpus == "libri":
        rng = rng_for(0, "speech_world", "libri_speakers")
        return [
            Speaker(f"S{k}", float(rng.uniform(95, 230)), float(rng.uniform(0.9, 1.15)),
                    float(rng.uniform(0.85, 1.2)), float(rng.uniform(0.02, 0.1)))
            for k in range(6)
        ]  # fmt: skip
    raise ValueError(f"unknown speech corpus {corpus!r}; choose 'lj' or 'libri'")


def _sentence(corpus: str, rng: np.random.Generator) -> str:
    special = WORDS_LJ if corpus == "lj" else WORDS_LIBRI
    n = int(rng.integers(2, 7)) if corpus == "lj" else int(rng.integers(3, 9))
    comma_p, question_p = (0.08, 0.05) if corpus == "lj" else (0.15, 0.3)
    words = []
    for k in range(n):
        pool = special if rng.random() < 0.35 else WORDS_COMMON
        words.append(pool[int(rng.integers(len(pool)))])
        if 0 < k < n - 1 and rng.random() < comma_p:
            words[-1] += ","
    return normalize_text(" ".join(words) + ("?" if rng.random() < question_p else "."))


def _phone(ch: str) -> tuple[str, tuple[float, float, float], int]:
    """(class, formants, noise band) of one character."""
    if ch in VOWELS:
        return "vowel", VOWELS[ch], -1
    if ch in SONORANTS:
        return "sonorant", SONORANTS[ch], -1
    if ch in VOICED_OBSTRUENTS and ch not in PLOSIVES:
        return "obstruent", NEUTRAL, VOICED_OBSTRUENTS[ch]
    if ch in PLOSIVES:
        return "plosive", NEUTRAL, PLOSIVES[ch]
    if ch in FRICATIVES:
        return "fricative", NEUTRAL, FRICATIVES[ch]
    return "pause", NEUTRAL, -1


def render(text: str, speaker: Speaker, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise ``text`` (already normalised) in ``speaker``'s voice with freshly drawn prosody.

    Returns:
        ``(wav, durations)``: float32 samples at 22,050 Hz whose mel spectrogram has exactly
        ``durations.sum()`` frames, and the frames of each character.
    """
    chars = list(text)
    words = np.cumsum([c == " " for c in chars])  # word index of every character
    tempo = speaker.tempo * float(np.exp(rng.normal(0, 0.12)))
    pitch_shift = float(rng.normal(0, 0.08))
    accents = rng.normal(0, 0.15, words[-1] + 1)
    gains = np.exp(rng.normal(0, 0.25, words[-1] + 1))
    durs = np.empty(len(chars), np.int64)
    kinds = []
    for i, ch in enumerate(chars):
        kind, formants, band = _phone(ch)
        kinds.append((kind, formants, band))
        base = PAUSE_FRAMES.get(ch, 1.5) if kind == "pause" else BASE_FRAMES[kind]
        durs[i] = max(1, round(base * tempo * float(np.exp(rng.normal(0, 0.3)))))
    n_frames = int(durs.sum())
    # Frame-level control tracks.
    f0 = np.empty(n_frames)
    voiced = np.zeros(n_frames)
    formant = np.empty((n_frames, 3))
    noise = np.zeros((n_frames, len(NOISE_BANDS)))
    start = 0
    for i, (kind, formants, band) in enumerate(kinds):
        sl = slice(start, start + durs[i])
        w = words[i]
        f0[sl] = accents[w]
        formant[sl] = np.asarray(formants) * speaker.tract
        g = gains[w]
        if kind == "vowel":
            voiced[sl] = g
        elif kind == "sonorant":
            voiced[sl] = 0.5 * g
        elif kind == "obstruent":
            voiced[sl] = 0.25 * g
            noise[sl, band] = 0.25 * g
        elif kind == "fricative":
            noise[sl, band] = 0.45 * g
        elif kind == "plosive":
            burst = max(1, int(durs[i]) // 2)
            noise[start + durs[i] - burst : start + durs[i], band] = 0.6 * g
        start += durs[i]
    position = np.linspace(0, 1, n_frames)
    f0 = speaker.f0 * np.exp(pitch_shift + f0 + 0.12 * (0.5 - position))
    if text.endswith("?"):
        f0[-max(1, n_frames // 5) :] *= 1.25
    # Samples: the mel of n samples has 1 + n // hop frames, so n_frames * hop - 1 samples give n_frames.
    n = n_frames * HOP_LENGTH - 1
    centres = (np.arange(n_frames) + 0.5) * HOP_LENGTH
    f0_s = np.interp(np.arange(n), centres, f0)
    cycles = np.floor(np.cumsum(f0_s) / SAMPLE_RATE)
    pulses = np.zeros(n, np.float32)
    pulses[1:][np.diff(cycles) > 0] = 1.0  # one glottal pulse per period
    white = rng.normal(0, 1, n).astype(np.float32)
    # Filter in the STFT domain (same framing as the mel): a formant envelope for the voiced source and
    # band envelopes for the noise source, frame by frame, then overlap-add (librosa.istft).
    stft = dict(n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, center=True)
    freq = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)[:, None]  # (bins, 1)
    bandwidths, weights = (90.0, 110.0, 170.0), (1.0, 0.6, 0.3)
    voiced_env = sum(w / (1 + ((freq - formant[None, :, j]) / bw) ** 2)
                     for j, (bw, w) in enumerate(zip(bandwidths, weights, strict=True)))  # fmt: skip
    voiced_env = voiced_env * voiced[None, :] / np.sqrt(1 + freq / 300.0)
    noise_env = speaker.breath * voiced[None, :] * np.ones_like(freq)
    for b, (lo, hi) in enumerate(NOISE_BANDS):
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        noise_env = noise_env + noise[None, :, b] / (1 + ((freq - centre) / half) ** 4)
    spec = librosa.stft(pulses, **stft) * voiced_env * 3.0 + librosa.stft(white, **stft) * noise_env * 0.15
    sig = librosa.istft(spec, hop_length=HOP_LENGTH, win_length=N_FFT, n_fft=N_FFT, length=n)
    sig = sig + rng.normal(0, 1e-3, n)
    wav = (0.9 * sig / max(np.abs(sig).max(), 1e-6)).astype(np.float32)
    return wav, durs


def generate(corpus: str, n: int, seed: int) -> list[SynthUtterance]:
    """``n`` utterances of ``corpus`` (``lj`` or ``libri``), speakers assigned round-robin at random.

    Deterministic for ``(corpus, n, seed)``; the texts are unique within a corpus.
    """
    voices = speakers(corpus)
    rng = rng_for(seed, "speech_world", corpus)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        text = _sentence(corpus, rng)
        if text in seen:
            continue
        seen.add(text)
        voice = voices[int(rng.integers(len(voices)))]
        wav, durs = render(text, voice, rng)
        out.append(SynthUtterance(f"{corpus}_{len(out):05d}", voice.name, text, wav, durs))
    return out
