"""Tests of the speech data layer (M4I appendix E) on tiny fixtures and, when present, the real subsets."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from m4i_utils.data.records import DataError
from m4i_utils.data.speech import (
    HOP_LENGTH,
    LOG_CLAMP,
    N_MELS,
    SAMPLE_RATE,
    SYMBOLS,
    Utterance,
    frame_energy,
    frame_pitch,
    load_libritts,
    load_ljspeech,
    load_speech_corpus,
    mel_spectrogram,
    normalize_text,
    read_wav,
    resolve_speech_root,
    symbol_ids,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LJ_IDS = ["LJ001-0001", "LJ001-0002", "LJ001-0003"]
LIBRITTS_IDS = [
    "174_50561_000003_000000",
    "174_50561_000004_000002",
    "84_121123_000007_000001",
    "84_121123_000008_000000",
]


@pytest.fixture
def lj(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "ljspeech_tiny", tmp_path / "ljspeech"))


@pytest.fixture
def libritts(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "libritts_tiny", tmp_path / "libritts"))


def _tone(freq: float, sr: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _set_line(path: Path, lineno: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ LJSpeech format


def test_load_ljspeech_fixture() -> None:
    utts = load_ljspeech(FIXTURES / "ljspeech_tiny")
    assert [u.id for u in utts] == LJ_IDS
    assert {u.speaker for u in utts} == {"LJ"}
    assert [u.text for u in utts] == [
        "printing, in fourteen forty, the art.",
        "in being comparatively modern.",
        "mister smith's press fourteen seventy six",
    ]
    assert utts[0].wav_path == FIXTURES / "ljspeech_tiny" / "wavs" / "LJ001-0001.wav"
    wav = utts[0].load_audio()
    assert wav.dtype == np.float32 and wav.shape == (round(0.3 * SAMPLE_RATE),)
    assert np.abs(wav).max() <= 1.0
    assert load_ljspeech(FIXTURES / "ljspeech_tiny", speaker="other")[0].speaker == "other"


def test_ljspeech_transcript_csv_fallback(lj: Path) -> None:
    (lj / "metadata.csv").rename(lj / "transcript.csv")
    assert [u.id for u in load_ljspeech(lj)] == LJ_IDS
    (lj / "transcript.csv").unlink()
    with pytest.raises(DataError, match=r"no LJSpeech metadata .*metadata\.csv or .*transcript\.csv"):
        load_ljspeech(lj)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("LJ001-0002|only two fields", r"line 2: malformed, expected 3 '\|'-separated fields"),
        ("LJ001-0002|a|b|c", r"line 2: malformed, expected 3 .* got 4"),
        ("|text|text", r"line 2: empty id"),
        ("LJ001-0002|text|  ", r"line 2: empty normalized transcription"),
    ],
)
def test_ljspeech_malformed_line(lj: Path, line: str, message: str) -> None:
    _set_line(lj / "metadata.csv", 2, line)
    with pytest.raises(DataError, match=message) as err:
        load_ljspeech(lj)
    assert str(lj / "metadata.csv") in str(err.value)


def test_ljspeech_duplicate_id(lj: Path) -> None:
    _set_line(lj / "metadata.csv", 3, "LJ001-0001|again|again")
    with pytest.raises(DataError, match=r"line 3: duplicate id 'LJ001-0001' \(first on line 1\)"):
        load_ljspeech(lj)


def test_ljspeech_missing_wav_skip_and_error(lj: Path) -> None:
    (lj / "wavs" / "LJ001-0002.wav").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utts = load_ljspeech(lj, missing="skip")
    assert [u.id for u in utts] == ["LJ001-0001", "LJ001-0003"]
    assert len(caught) == 1
    assert "skipped 1 of 3 utterances" in str(caught[0].message)
    assert "LJ001-0002.wav" in str(caught[0].message)
    with pytest.raises(DataError, match=r"metadata\.csv line 2: audio file .*LJ001-0002\.wav not found"):
        load_ljspeech(lj, missing="error")
    with pytest.raises(DataError, match="missing must be one of"):
        load_ljspeech(lj, missing="ignore")


def test_ljspeech_empty_result(lj: Path) -> None:
    shutil.rmtree(lj / "wavs")
    with pytest.warns(UserWarning, match="skipped 3 of 3"), pytest.raises(DataError, match="no utterances"):
        load_ljspeech(lj)


# ------------------------------------------------------------------------------------------ LibriTTS format


def test_load_libritts_fixture() -> None:
    for root in (FIXTURES / "libritts_tiny", FIXTURES / "libritts_tiny" / "train-clean-100"):
        utts = load_libritts(root)
        assert [u.id for u in utts] == LIBRITTS_IDS
    assert [u.speaker for u in utts] == ["174", "174", "84", "84"]
    texts = {u.id: u.text for u in utts}
    assert texts["84_121123_000007_000001"] == "he paid five dollars for it."
    assert texts["174_50561_000004_000002"] == "where's the second one?"
    wav = utts[0].load_audio()  # 24,000 Hz file -> 22,050 Hz
    assert wav.dtype == np.float32 and wav.shape == (round(0.3 * SAMPLE_RATE),)
    native, sr = read_wav(utts[0].wav_path, sr=None)
    assert sr == 24_000 and native.shape == (7200,)


def test_libritts_missing_wav_skip_and_error(libritts: Path) -> None:
    wav = next(libritts.rglob("84_121123_000008_000000.wav"))
    wav.unlink()
    with pytest.warns(UserWarning, match="skipped 1 of 4 utterances"):
        assert len(load_libritts(libritts)) == 3
    with pytest.raises(DataError, match=r"84_121123_000008_000000\.normalized\.txt: audio file .* not found"):
        load_libritts(libritts, missing="error")


def test_libritts_empty_text(libritts: Path) -> None:
    path = next(libritts.rglob("174_50561_000003_000000.normalized.txt"))
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty transcription") as err:
        load_libritts(libritts)
    assert str(path) in str(err.value)


def test_libritts_speaker_mismatch_and_no_texts(libritts: Path, tmp_path: Path) -> None:
    folder = libritts / "train-clean-100" / "84" / "121123"
    (folder / "99_121123_000001_000000.normalized.txt").write_text("text", encoding="utf-8")
    with pytest.raises(DataError, match=r"speaker '99' .* does not match its speaker folder '84'"):
        load_libritts(libritts)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no LibriTTS transcripts .*expected <root>/\[<subset>/\]<speaker>"):
        load_libritts(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ audio features


def test_read_wav_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(DataError, match=r"bad\.wav cannot be read"):
        read_wav(bad)
    with pytest.raises(DataError, match=r"absent\.wav cannot be read"):
        Utterance("x", "LJ", "x", tmp_path / "absent.wav").load_audio()
    with pytest.raises(DataError, match="in memory"):
        Utterance("x", "LJ", "x", None).load_audio()


def test_read_wav_stereo_is_averaged(tmp_path: Path) -> None:
    left, right = _tone(300, 8000, 0.1), np.zeros(800, np.float32)
    soundfile.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    wav, sr = read_wav(tmp_path / "st.wav", sr=None)
    assert sr == 8000 and np.allclose(wav, left / 2)


def test_mel_shape_dtype_and_floor() -> None:
    for n in (6615, 1000, 300):
        wav = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that n_fft is larger than a very short input
            mel = mel_spectrogram(wav)
        assert mel.shape == (1 + n // HOP_LENGTH, N_MELS) and mel.dtype == np.float32
        assert mel.min() >= np.float32(np.log(LOG_CLAMP))
    assert mel_spectrogram(np.zeros(2048, np.float32)).max() == pytest.approx(np.log(LOG_CLAMP))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        mel_spectrogram(np.zeros((2, 100), np.float32))


def test_mel_peak_of_1khz_tone() -> None:
    mel = mel_spectrogram(_tone(1000.0, SAMPLE_RATE))
    centres = librosa.mel_frequencies(N_MELS + 2, fmin=0.0, fmax=8000.0)[1:-1]
    expected = int(np.argmin(np.abs(centres - 1000.0)))
    assert abs(int(np.argmax(mel.mean(axis=0))) - expected) <= 1


def test_mel_resamples_other_rates() -> None:
    ref = mel_spectrogram(_tone(1000.0, SAMPLE_RATE))
    mel16 = mel_spectrogram(_tone(1000.0, 16_000), sr=16_000)
    assert abs(len(mel16) - (1 + round(0.5 * SAMPLE_RATE) // HOP_LENGTH)) <= 1
    n = min(len(ref), len(mel16))
    mid = slice(4, n - 4)  # resampler edge effects stay within the first and last frames
    power_ref, power16 = np.exp(ref[mid]), np.exp(mel16[mid])
    assert np.abs(power_ref - power16).max() <= 1e-3 * power_ref.max()


def test_energy_and_pitch() -> None:
    wav = _tone(200.0, SAMPLE_RATE)
    frames = 1 + len(wav) // HOP_LENGTH
    energy = frame_energy(wav)
    assert energy.shape == (frames,) and energy.dtype == np.float32 and energy[5:-5].min() > 0
    assert frame_energy(2 * wav)[10] == pytest.approx(2 * energy[10], rel=1e-5)
    pitch = frame_pitch(wav)
    assert pitch.shape == (frames,) and pitch.dtype == np.float32
    assert np.all(np.abs(pitch[5:-5] - 200.0) <= 0.05 * 200.0)
    assert frame_pitch(_tone(200.0, 16_000), sr=16_000).shape == (frames,)


# ------------------------------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Printing, in the only sense", "printing, in the only sense"),
        ('He said: "Stop!"', "he said, stop."),
        ("one; two -- three (four)", "one, two three four"),
        ("Don\u2019t   go\u2014now?!", "don't go now?"),
        ("Caf\u00e9 M\u00fcller", "cafe muller"),
        ("  a [b] {c} 1862  ", "a b c"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected
    assert set(normalize_text(raw)) <= set(SYMBOLS)


def test_symbol_ids() -> None:
    assert SYMBOLS == " abcdefghijklmnopqrstuvwxyz',.?"
    assert symbol_ids(" a?") == [1, 2, len(SYMBOLS)]
    assert 0 not in symbol_ids(SYMBOLS)
    with pytest.raises(ValueError, match="normalize_text"):
        symbol_ids("Capital")


# ------------------------------------------------------------------------------------------ dispatch


def test_resolve_speech_root_errors(tmp_path: Path) -> None:
    message = "no data root configured: set the environment variable M4I_DATA_ROOT"
    with pytest.raises(DataError, match=message):
        resolve_speech_root(None, "ljspeech")
    with pytest.raises(DataError, match="does not exist"):
        resolve_speech_root(tmp_path / "nowhere", "libritts")
    with pytest.raises(DataError, match="tried") as err:
        resolve_speech_root(tmp_path, "speaker2")
    assert str(tmp_path / "speaker2_dctts_fork_recordings") in str(err.value) and "dc_tts" in str(err.value)
    with pytest.raises(DataError, match="valid names: ljspeech, speaker2, libritts"):
        resolve_speech_root(tmp_path, "vctk")


def test_load_speech_corpus_on_fixtures(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "ljspeech_tiny", tmp_path / "LJSpeech-1.1")
    shutil.copytree(FIXTURES / "ljspeech_tiny", tmp_path / "speaker2_dctts_fork_recordings")
    shutil.copytree(FIXTURES / "libritts_tiny", tmp_path / "LibriTTS")
    assert [u.speaker for u in load_speech_corpus("ljspeech", tmp_path)] == ["LJ"] * 3
    assert [u.speaker for u in load_speech_corpus("speaker2", tmp_path)] == ["speaker2"] * 3
    assert load_speech_corpus("speaker2", tmp_path, speaker="S2")[0].speaker == "S2"
    assert [u.id for u in load_speech_corpus("libritts", tmp_path, missing="error")] == LIBRITTS_IDS


# ------------------------------------------------------------------------------------------ real data


def _real_folder(name: str) -> Path:
    env = os.environ.get("M4I_DATA_ROOT")
    if not env or not (Path(env) / name).is_dir():
        pytest.skip(f"real speech data {name} not available (set M4I_DATA_ROOT)")
    return Path(env) / name


def test_real_ljspeech_subset32() -> None:
    root = _real_folder("ljspeech_subset32")
    utts = load_ljspeech(root, missing="error")
    assert len(utts) == 32 and {u.speaker for u in utts} == {"LJ"}
    assert all(soundfile.info(u.wav_path).samplerate == SAMPLE_RATE for u in utts)
    assert utts[0].id == "LJ001-0001" and utts[0].text.startswith("printing, in the only sense")
    wav = utts[0].load_audio()
    mel = mel_spectrogram(wav)
    assert mel.shape == (1 + len(wav) // HOP_LENGTH, N_MELS)


def test_real_speaker2_matches_lj_texts() -> None:
    root = _real_folder("speaker2_dctts_fork_recordings")
    lj = {u.id: u.text for u in load_ljspeech(_real_folder("ljspeech_subset32"), missing="error")}
    utts = load_ljspeech(root, speaker="speaker2", missing="error")
    assert len(utts) == 141 and {u.speaker for u in utts} == {"speaker2"}
    assert all(soundfile.info(u.wav_path).samplerate == 16_000 for u in utts[:5])
    shared = [u for u in utts if u.id in lj]
    assert shared and all(u.text == lj[u.id] for u in shared)
    wav, sr = read_wav(utts[0].wav_path, sr=None)
    mel = mel_spectrogram(wav, sr)
    assert mel.shape[1] == N_MELS
    assert abs(mel.shape[0] - len(wav) / sr * SAMPLE_RATE / HOP_LENGTH) <= 2
