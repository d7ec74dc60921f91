"""Speech data for the text-to-speech membership-inference experiment (M4I appendix E).

Appendix E of the M4I paper attacks a FastSpeech2 text-to-speech model trained on LJSpeech (members) with
LibriTTS utterances as non-members. This module is the data layer for it: utterance records, corpus loaders
for the LJSpeech and LibriTTS release layouts, the text frontend's character inventory, and the acoustic
features FastSpeech2 is trained on.

Reference facts (ming024/FastSpeech2, ``config/LJSpeech/preprocess.yaml`` and ``audio/stft.py``): audio at
22,050 Hz; magnitude STFT with ``filter_length = win_length = 1024`` (Hann), ``hop_length = 256``, reflect
padding of ``n_fft // 2`` on both sides (librosa's ``center=True``); a Slaney-scale, Slaney-normalised mel
filterbank (librosa's defaults) of 80 bands from 0 to 8,000 Hz; log compression ``log(clamp(mel, 1e-5))``
with the natural log; frame energy = the L2 norm of the STFT magnitude over frequency. ming024 extracts
pitch with WORLD (pyworld ``dio`` + ``stonemask``); here :func:`frame_pitch` uses librosa's YIN instead
(no extra compiled dependency), which gives no voicing decision.

Which library does what:

- ``soundfile`` (libsndfile) reads WAV files (:func:`read_wav`);
- ``librosa`` resamples (``librosa.resample`` with ``res_type="soxr_hq"``, i.e. the ``soxr`` package),
  computes the STFT, the mel filterbank (``librosa.filters.mel``) and the YIN pitch track (``librosa.yin``);
- :func:`normalize_text` is plain Python (``unicodedata`` and ``re``), so it needs no downloaded data
  (no nltk corpora, no phonemizer, no cmudict).

Loaders follow :mod:`m4i_utils.data.loaders`: bad input raises :class:`~m4i_utils.data.records.DataError`
naming the
file (and the 1-based line where there is one); with ``missing="skip"`` transcripts whose wav is absent are
dropped with one warning that says how many; utterances are sorted by id. Every audio file that is kept has
its header read at load time (``soundfile.info``): a corrupt or empty file raises a DataError naming it and
the transcript line (or file) that references it, before any feature is computed.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import soundfile

from .loaders import find_data_folder
from .records import DataError

SAMPLE_RATE = 22_050
N_FFT = 1024
WIN_LENGTH = 1024
HOP_LENGTH = 256
N_MELS = 80
F_MIN = 0.0
F_MAX = 8000.0
LOG_CLAMP = 1e-5
PITCH_FMIN = 60.0
PITCH_FMAX = 500.0
RESAMPLE_TYPE = "soxr_hq"

SYMBOLS = " abcdefghijklmnopqrstuvwxyz',.?"
"""The text frontend's character inventory; the model reserves id 0 for padding (see :func:`symbol_ids`)."""

SPEECH_FOLDERS: dict[str, tuple[str, ...]] = {
    "ljspeech": ("ljspeech", "LJSpeech-1.1", "ljspeech_subset32"),
    "speaker2": ("speaker2_dctts_fork_recordings",),
    "libritts": ("libritts", "LibriTTS"),
}
SPEECH_URLS = {
    "ljspeech": "https://keithito.com/LJ-Speech-Dataset/",
    "speaker2": "https://github.com/PhilippMatthes/dc_tts (LJSpeech-1.1/wavs recorded by the fork owner)",
    "libritts": "https://www.openslr.org/60/",
}

LJ_METADATA_FILES = ("metadata.csv", "transcript.csv")
LIBRITTS_TEXT_SUFFIX = ".normalized.txt"
_MISSING_MODES = ("error", "skip")

# Punctuation folding of the text frontend, applied after lower-casing and accent stripping.
_FOLD = str.maketrans(
    {
        ";": ",",
        ":": ",",
        "!": ".",
        "\u2019": "'",  # right single quotation mark, mostly an apostrophe ("don't")
        "\u2018": "'",
        "`": "'",
        "-": " ",
        "\u2010": " ",
        "\u2013": " ",
        "\u2014": " ",
        "/": " ",
        "\t": " ",
        "\n": " ",
        "\r": " ",
    }
)
_SYMBOL_ID = {c: i + 1 for i, c in enumerate(SYMBOLS)}


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Utterance:
    """One spoken utterance with its transcription.

    Attributes:
        id: unique id within its corpus, e.g. ``"LJ001-0001"`` or LibriTTS ``"84_121123_000007_000001"``.
        speaker: ``"LJ"`` for LJSpeech-format folders unless given; for LibriTTS the speaker folder name.
        text: the normalised transcription (the 3rd column of LJSpeech metadata, LibriTTS
            ``.normalized.txt``), passed through :func:`normalize_text`.
        wav_path: the audio file, or None for in-memory (synthetic) utterances.
    """

    id: str
    speaker: str
    text: str
    wav_path: Path | None

    def load_audio(self, sr: int = SAMPLE_RATE) -> np.ndarray:
        """Read the audio as float32 mono in [-1, 1], resampled to ``sr`` (see :func:`read_wav`).

        Raises:
            DataError: the utterance has no file, or the file cannot be read (the message names it).
        """
        if self.wav_path is None:
            raise DataError(f"utterance {self.id!r} is in memory (wav_path is None): it has no audio file")
        return read_wav(self.wav_path, sr)[0]


# --------------------------------------------------------------------------------------------- audio


def _resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``wav`` at ``target_sr`` (librosa's soxr_hq resampler); unchanged when the rates agree."""
    if orig_sr == target_sr:
        return wav
    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type=RESAMPLE_TYPE)


def read_wav(path: str | Path, sr: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono in [-1, 1].

    Multi-channel files are averaged to mono. When ``sr`` is given and differs from the file's rate the
    signal is resampled with ``librosa.resample(res_type="soxr_hq")`` and clipped back to [-1, 1] (the
    resampler can overshoot slightly; ming024's ``get_mel_from_wav`` clips the same way).

    Args:
        path: the audio file (anything libsndfile reads: WAV, FLAC, ...).
        sr: the target sample rate in Hz, or None to keep the file's own rate.

    Returns:
        ``(wav, rate)``: the 1-D float32 signal and its sample rate (``sr`` when given).

    Raises:
        DataError: the file is missing or unreadable (the message names it).
    """
    path = Path(path)
    try:
        data, file_sr = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"audio file {path} cannot be read: {exc}") from exc
    wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr is None or sr == file_sr:
        return np.ascontiguousarray(wav, dtype=np.float32), int(file_sr)
    wav = np.clip(_resample(wav, int(file_sr), sr), -1.0, 1.0)
    return wav.astype(np.float32, copy=False), int(sr)


def _check_wav(wav: np.ndarray, sr: int) -> np.ndarray:
    """``wav`` as a 1-D float32 array at :data:`SAMPLE_RATE`; ValueError for an empty or non-1-D input."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"expected a non-empty 1-D (mono) signal, got shape {wav.shape}")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    return _resample(wav, int(sr), SAMPLE_RATE).astype(np.float32, copy=False)


def _magnitude(wav: np.ndarray) -> np.ndarray:
    """FastSpeech2's magnitude STFT ``(1 + N_FFT // 2, frames)`` of a 22,050 Hz signal."""
    spec = librosa.stft(
        wav,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window="hann",
        center=True,
        pad_mode="reflect",
    )
    return np.abs(spec).astype(np.float32, copy=False)


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """The ``(80, 513)`` float32 mel filterbank (built once: ``librosa.filters.mel`` takes ~30 ms)."""
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX)
    basis = basis.astype(np.float32)
    basis.flags.writeable = False
    return basis


def mel_spectrogram(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """FastSpeech2's log-mel spectrogram (ming024 ``TacotronSTFT.mel_spectrogram``; M4I appendix E).

    The signal is resampled to 22,050 Hz if ``sr`` differs; then magnitude STFT (n_fft 1024, Hann window of
    1024, hop 256, centred frames with reflect padding), an 80-band Slaney mel filterbank from 0 to
    8,000 Hz (``librosa.filters.mel`` defaults, as ming024), and ``log(max(mel, 1e-5))``.

    Args:
        wav: 1-D mono signal (float, nominally in [-1, 1]).
        sr: its sample rate in Hz.

    Returns:
        float32 array ``(frames, 80)`` with ``frames == 1 + n // 256`` where ``n`` is the length at 22,050 Hz;
        every value is at least ``log(1e-5)``.
    """
    mag = _magnitude(_check_wav(wav, sr))
    mel = _mel_basis() @ mag
    return np.log(np.maximum(mel, np.float32(LOG_CLAMP))).T.astype(np.float32, copy=False)


def frame_energy(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """FastSpeech2's frame energy: L2 norm over frequency of the STFT magnitude (ming024 ``TacotronSTFT``).

    Args:
        wav: 1-D mono signal.
        sr: its sample rate in Hz (resampled to 22,050 Hz if different).

    Returns:
        float32 array ``(frames,)``, framed exactly as :func:`mel_spectrogram`.
    """
    return np.linalg.norm(_magnitude(_check_wav(wav, sr)), axis=0).astype(np.float32, copy=False)


def frame_pitch(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Fundamental frequency per frame with YIN (``librosa.yin``, 60-500 Hz, frame 1024, hop 256, centred).

    ming024's FastSpeech2 uses WORLD (``pyworld.dio`` + ``stonemask``) instead. YIN gives **no voicing
    decision**: every frame, silent or unvoiced ones included, gets an f0 estimate within [60, 500] Hz, so
    mask by energy (:func:`frame_energy`) or use ``librosa.pyin`` if unvoiced frames matter.

    Args:
        wav: 1-D mono signal.
        sr: its sample rate in Hz (resampled to 22,050 Hz if different).

    Returns:
        float32 array ``(frames,)`` of f0 in Hz with the same number of frames as :func:`mel_spectrogram`
        (trimmed, or padded with the last value, if librosa's framing differs).
    """
    wav = _check_wav(wav, sr)
    f0 = librosa.yin(
        wav,
        fmin=PITCH_FMIN,
        fmax=PITCH_FMAX,
        sr=SAMPLE_RATE,
        frame_length=N_FFT,
        hop_length=HOP_LENGTH,
        center=True,
    )
    frames = 1 + len(wav) // HOP_LENGTH
    if len(f0) < frames:
        f0 = np.pad(f0, (0, frames - len(f0)), mode="edge")
    return f0[:frames].astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------- text


def normalize_text(text: str) -> str:
    """Reduce a transcription to the frontend's inventory :data:`SYMBOLS` (no downloaded data needed).

    Steps: lower-case; strip accents (Unicode NFKD, combining marks dropped, so ``"é"`` -> ``"e"``); fold
    punctuation (``;`` and ``:`` -> ``,``; ``!`` -> ``.``; curly single quotes -> ``'``; hyphens, dashes
    and ``/`` -> space); drop every other character outside :data:`SYMBOLS` (double quotes, parentheses,
    brackets, digits, ...); collapse runs of spaces, remove spaces before ``, . ?``, keep only the first of a
    run of punctuation marks (``"?!"`` -> ``"?"``, ``"..."`` -> ``"."``), and strip. Numbers are
    *not* spelled out: use the already-normalised transcription (LJSpeech's 3rd column, LibriTTS
    ``.normalized.txt``), where they are.

    Args:
        text: a transcription.

    Returns:
        The normalised text; every character is in :data:`SYMBOLS`.
    """
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c)).translate(_FOLD)
    text = "".join(c for c in text if c in _SYMBOL_ID)
    text = re.sub(r" +", " ", text)
    text = re.sub(r" ([,.?])", r"\1", text)
    return re.sub(r"([,.?])[,.?]+", r"\1", text).strip()


def symbol_ids(text: str) -> list[int]:
    """Token ids of ``text`` for the model: ``1 + SYMBOLS.index(c)`` per character (0 is padding).

    Args:
        text: normalised text (see :func:`normalize_text`).

    Raises:
        ValueError: a character is not in :data:`SYMBOLS`.
    """
    try:
        return [_SYMBOL_ID[c] for c in text]
    except KeyError as exc:
        raise ValueError(
            f"character {exc.args[0]!r} is not in SYMBOLS {SYMBOLS!r}; pass the text through normalize_text"
        ) from None


# --------------------------------------------------------------------------------------------- loaders


def _check_mode(missing: str) -> None:
    if missing not in _MISSING_MODES:
        raise DataError(f"missing must be one of {_MISSING_MODES}, got {missing!r}")


def _drop_missing(found: list[Utterance], where: dict[str, str], missing: str) -> list[Utterance]:
    """Keep the utterances whose wav exists, sorted by id; raise (``"error"``) or warn once (``"skip"``).

    Args:
        found: utterances parsed from the transcripts (all have a ``wav_path``).
        where: id -> human-readable location of its transcript (``"file line 3"``).
        missing: ``"error"`` or ``"skip"``.
    """
    present = {u.id: u.wav_path is not None and u.wav_path.is_file() for u in found}
    kept = sorted((u for u in found if present[u.id]), key=lambda u: u.id)
    absent = sorted((u for u in found if not present[u.id]), key=lambda u: u.id)
    if absent and missing == "error":
        first = absent[0]
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise DataError(
            f"{where[first.id]}: audio file {first.wav_path} not found{more}; "
            'pass missing="skip" to drop transcripts whose audio is absent'
        )
    if absent:
        warnings.warn(
            f"skipped {len(absent)} of {len(found)} utterances whose audio file is absent, "
            f"e.g. {absent[0].wav_path} ({where[absent[0].id]}); {len(kept)} utterances remain",
            stacklevel=3,
        )
    return kept


def _check_audio(utterances: list[Utterance], where: dict[str, str]) -> None:
    """Read every utterance's audio header (``soundfile.info``); DataError naming the file and ``where``.

    Args:
        utterances: utterances whose ``wav_path`` exists.
        where: id -> human-readable location of its transcript (``"file line 3"``).
    """
    for u in utterances:
        try:
            info = soundfile.info(str(u.wav_path))
        except (soundfile.SoundFileError, OSError, RuntimeError, ValueError) as exc:
            raise DataError(
                f"{where[u.id]}: audio file {u.wav_path} is corrupt or not audio ({exc}); replace it with "
                "the dataset's original file or remove its transcript"
            ) from exc
        if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
            raise DataError(
                f"{where[u.id]}: audio file {u.wav_path} has no audio samples (frames={info.frames}, "
                f"rate={info.samplerate}, channels={info.channels}); replace it with the dataset's original "
                "file or remove its transcript"
            )


def load_ljspeech(root: str | Path, speaker: str = "LJ", missing: str = "skip") -> list[Utterance]:
    """Load a folder in LJSpeech format (M4I appendix E: the member set of the FastSpeech2 target).

    Layout: ``<root>/metadata.csv`` (or ``<root>/transcript.csv`` when there is no ``metadata.csv``, as in the
    dc_tts fork's second-speaker folder) with UTF-8 lines ``ID|transcription|normalized transcription`` (no
    header, no quoting), and the audio in ``<root>/wavs/<ID>.wav``. The text is the 3rd column through
    :func:`normalize_text`. Blank lines are ignored.

    Args:
        root: the dataset folder.
        speaker: the speaker label given to every utterance.
        missing: ``"skip"`` drops lines whose wav is absent with one warning; ``"error"`` raises.

    Returns:
        The utterances, sorted by id.

    Raises:
        DataError: no metadata file; a malformed line (not 3 fields, empty id or text; the message names the
            file and line); a duplicate id; a missing wav with ``missing="error"``; a corrupt or empty wav
            (its header is read with ``soundfile.info``; the message names the wav and the metadata line);
            nothing left.
    """
    _check_mode(missing)
    root = Path(root)
    meta = next((root / n for n in LJ_METADATA_FILES if (root / n).is_file()), None)
    if meta is None:
        expected = " or ".join(str(root / n) for n in LJ_METADATA_FILES)
        raise DataError(
            f"no LJSpeech metadata in {root}: expected {expected} "
            "with lines 'ID|transcription|normalized transcription' and the audio in wavs/<ID>.wav"
        )
    try:
        lines = meta.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{meta}: not UTF-8 text ({exc})") from exc
    found: list[Utterance] = []
    where: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 3:
            raise DataError(
                f"{meta} line {lineno}: malformed, expected 3 '|'-separated fields "
                f"'ID|transcription|normalized transcription', got {len(fields)}: {line!r}"
            )
        uid, text = fields[0].strip(), normalize_text(fields[2])
        if not uid or not text:
            what = "id" if not uid else "normalized transcription (3rd field)"
            raise DataError(
                f"{meta} line {lineno}: empty {what}, expected 'ID|transcription|normalized': {line!r}"
            )
        if uid in first_line:
            raise DataError(f"{meta} line {lineno}: duplicate id {uid!r} (first on line {first_line[uid]})")
        first_line[uid] = lineno
        where[uid] = f"{meta} line {lineno}"
        found.append(Utterance(uid, speaker, text, root / "wavs" / f"{uid}.wav"))
    utterances = _drop_missing(found, where, missing)
    if not utterances:
        raise DataError(f"{meta}: no utterances (no transcript line has an audio file in {root / 'wavs'})")
    _check_audio(utterances, where)
    return utterances


def load_libritts(root: str | Path, missing: str = "skip") -> list[Utterance]:
    """Load a folder in LibriTTS format (M4I appendix E: the non-member set).

    Layout: ``<root>/<speaker>/<chapter>/<speaker>_<chapter>_<...>.wav`` beside ``<same stem>.normalized.txt``
    (one line of text); ``root`` may also be a parent of subset folders such as ``train-clean-100`` (the
    transcripts are found recursively). ``.original.txt`` files are ignored. The text goes through
    :func:`normalize_text`.

    Args:
        root: the dataset (or subset) folder.
        missing: ``"skip"`` drops transcripts whose wav is absent with one warning; ``"error"`` raises.

    Returns:
        The utterances, sorted by id; ``speaker`` is the first ``_`` field of the file stem.

    Raises:
        DataError: no transcripts found; a file stem whose speaker does not match its speaker folder; an
            empty text file; a duplicate id; a missing wav with ``missing="error"``; a corrupt or empty wav
            (header read with ``soundfile.info``; the message names the wav and its transcript); nothing left.
    """
    _check_mode(missing)
    root = Path(root)
    layout = (
        f"expected <root>/[<subset>/]<speaker>/<chapter>/<speaker>_<chapter>_<utterance>.wav beside "
        f"<same stem>{LIBRITTS_TEXT_SUFFIX}"
    )
    if not root.is_dir():
        raise DataError(f"LibriTTS folder {root} does not exist (or is not a folder); {layout}")
    texts = sorted(root.rglob(f"*{LIBRITTS_TEXT_SUFFIX}"))
    if not texts:
        raise DataError(f"no LibriTTS transcripts (*{LIBRITTS_TEXT_SUFFIX}) under {root}; {layout}")
    found: list[Utterance] = []
    where: dict[str, str] = {}
    for path in texts:
        stem = path.name[: -len(LIBRITTS_TEXT_SUFFIX)]
        speaker = stem.split("_")[0]
        if "_" not in stem or speaker != path.parent.parent.name:
            raise DataError(
                f"{path}: speaker {speaker!r} from the file name does not match its speaker folder "
                f"{path.parent.parent.name!r}; {layout}"
            )
        try:
            raw = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
        text = normalize_text(raw)
        if not text:
            raise DataError(f"{path}: empty transcription, expected one line of text")
        if stem in where:
            raise DataError(f"{path}: duplicate utterance id {stem!r} (also {where[stem]})")
        where[stem] = str(path)
        found.append(Utterance(stem, speaker, text, path.with_name(f"{stem}.wav")))
    utterances = _drop_missing(found, where, missing)
    if not utterances:
        raise DataError(f"{root}: no utterances (no transcript has its .wav beside it)")
    _check_audio(utterances, where)
    return utterances


# --------------------------------------------------------------------------------------------- dispatch


def resolve_speech_root(data_root: str | Path | None, name: str) -> Path:
    """Find speech corpus ``name``'s folder under the data root by trying its conventional folder names.

    Shares :func:`m4i_utils.data.loaders.find_data_folder` with the image datasets.

    Args:
        data_root: the folder holding the datasets (``Config.data_root`` / ``M4I_DATA_ROOT``), or None.
        name: ``"ljspeech"`` (tries ``ljspeech``, ``LJSpeech-1.1``, ``ljspeech_subset32``), ``"speaker2"``
            (``speaker2_dctts_fork_recordings``) or ``"libritts"`` (``libritts``, ``LibriTTS``).

    Returns:
        The first of those folders that exists.
    """
    if name not in SPEECH_FOLDERS:
        raise DataError(f"unknown speech corpus {name!r}; valid names: {', '.join(SPEECH_FOLDERS)}")
    return find_data_folder(data_root, name, SPEECH_FOLDERS[name], SPEECH_URLS[name])


def load_speech_corpus(name: str, data_root: str | Path | None, **kwargs: object) -> list[Utterance]:
    """Load speech corpus ``name`` (M4I appendix E) from the data root.

    ``"ljspeech"`` and ``"speaker2"`` go through :func:`load_ljspeech` (``speaker2`` with
    ``speaker="speaker2"``), ``"libritts"`` through :func:`load_libritts`; the folder is found with
    :func:`resolve_speech_root`.

    Args:
        name: the corpus name.
        data_root: the folder holding the datasets.
        **kwargs: passed on to the loader, overriding the defaults above (e.g. ``missing="error"``).

    Returns:
        The utterances, sorted by id.
    """
    root = resolve_speech_root(data_root, name)
    if name == "libritts":
        return load_libritts(root, **kwargs)  # type: ignore[arg-type]
    options: dict[str, object] = {"speaker": "speaker2"} if name == "speaker2" else {}
    options.update(kwargs)
    return load_ljspeech(root, **options)  # type: ignore[arg-type]
