"""The speech world, the Viterbi aligner, the FastSpeech2-style model and the TTS attack features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m4i_utils.core import config
from m4i_utils.data import speech, speech_sets, speech_world
from m4i_utils.models import tts, tts_fb


@pytest.fixture(scope="module")
def utterances():
    return speech_world.generate("lj", 12, seed=0)


def _set(utts) -> speech_sets.SpeechSet:
    return speech_sets._build_set([(u.id, u.speaker, u.text, u.wav, u.durations) for u in utts], align=False)


def test_world_is_deterministic_and_frame_exact(utterances):
    again = speech_world.generate("lj", 12, seed=0)
    assert [u.text for u in again] == [u.text for u in utterances]
    assert all(np.array_equal(a.wav, b.wav) for a, b in zip(again, utterances, strict=True))
    for u in utterances:
        assert len(u.durations) == len(u.text) and u.durations.min() >= 1
        assert speech.mel_spectrogram(u.wav).shape == (u.durations.sum(), speech.N_MELS)
    assert len({u.text for u in utterances}) == len(utterances)
    assert {u.speaker for u in utterances} == {"LJ"}
    assert len({u.speaker for u in speech_world.generate("libri", 30, seed=0)}) > 1


def test_prosody_is_not_determined_by_text():
    voice = speech_world.speakers("lj")[0]
    a = speech_world.render("the court was quiet.", voice, np.random.default_rng(1))
    b = speech_world.render("the court was quiet.", voice, np.random.default_rng(2))
    assert len(a[1]) == len(b[1]) and not np.array_equal(a[1], b[1])  # same phones, other durations


def test_monotonic_alignment_toy():
    cost = np.array([[0, 0, 9, 9, 9], [9, 9, 0, 9, 9], [9, 9, 9, 0, 0]], float)
    assert speech_sets._monotonic_alignment(cost).tolist() == [2, 1, 2]


def test_viterbi_alignment_recovers_known_durations():
    utts = speech_world.generate("lj", 40, seed=3)
    s = _set(utts)
    est = speech_sets.align_durations(s.tokens, s.mels)
    err = []
    for d_true, d_est in zip(s.durations, est, strict=True):
        assert d_est.sum() == d_true.sum() and d_est.min() >= 1
        err.append(np.abs(np.cumsum(d_true) - np.cumsum(d_est)).mean())
    # boundaries within ~2 frames on average (a uniform split is far worse)
    uniform = [
        np.abs(np.cumsum(d) - np.linspace(d.sum() / len(d), d.sum(), len(d))).mean() for d in s.durations
    ]
    assert np.mean(err) < 0.5 * np.mean(uniform), (np.mean(err), np.mean(uniform))


def test_alignment_rejects_too_few_frames():
    with pytest.raises(Exception, match="cannot align"):
        speech_sets.align_durations([np.arange(1, 11)], [np.zeros((5, 80), np.float32)])


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    return config.resolve_profile(
        "smoke", {"cache_dir": str(tmp_path_factory.mktemp("cache")), "tts_d_model": 32, "tts_d_ff": 64}
    )


def test_model_shapes_and_teacher_forcing(utterances, tiny_cfg):
    s = _set(utterances[:4])
    model = tts.FastSpeech2(tiny_cfg)
    model.stats.copy_(tts._stats(s))
    b = tts._batch(s, [0, 1, 2, 3], model.stats, torch.device("cpu"))
    out = model(b["tokens"], b["durations"], b["pitch"], b["energy"])
    lengths = (~out["mel_pad"]).sum(1).tolist()
    assert lengths == [int(d.sum()) for d in s.durations]
    assert out["mel"].shape[-1] == speech.N_MELS
    model.eval()
    trained = tts.TrainedTTS("t", "target", model, {}, 0.0, "k")
    forced = tts.synthesize(trained, s, teacher_durations=True)
    assert [m.shape for m in forced] == [m.shape for m in s.mels]
    free = tts.synthesize(trained, s, teacher_durations=False)
    assert all(m.shape[1] == speech.N_MELS and len(m) >= len(t) for m, t in zip(free, s.tokens, strict=True))


def test_model_can_fit_a_few_utterances(utterances, tiny_cfg):
    s = _set(utterances[:4])
    torch.manual_seed(0)
    model = tts.FastSpeech2(tiny_cfg)
    model.stats.copy_(tts._stats(s))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    b = tts._batch(s, [0, 1, 2, 3], model.stats, torch.device("cpu"))
    first = None
    for _ in range(60):
        loss, parts = tts.tts_loss(model, b)
        first = first or parts["mel_l1"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["mel_l1"] < 0.5 * first


def test_distances_and_features(utterances):
    s = _set(utterances[:5])
    m = s.mels[0]
    assert tts.dtw_distance(m, m) == pytest.approx(0.0, abs=1e-6)
    assert tts.dtw_distance(m, m[::2]) > 0
    with pytest.raises(ValueError, match="not aligned"):
        tts.aligned_distance(m, m[1:])
    tf = tts_fb.text_features(s.texts)
    assert tf.shape == (5, speech_sets.N_SYMBOLS * (speech_sets.N_SYMBOLS + 1)) and np.allclose(
        np.linalg.norm(tf, axis=1), 1
    )
    assert tts_fb.mel_features(s.mels).shape == (5, 3 * speech.N_MELS + 1)


def test_tts_data_roles_are_disjoint(tiny_cfg):
    data = speech_sets.load_tts_data(tiny_cfg)
    iid = [set(data.role(r).ids) for r in speech_sets.IID_ROLES]
    for i in range(len(iid)):
        for j in range(i + 1, len(iid)):
            assert not iid[i] & iid[j]
    assert len(data.role("target_members")) == tiny_cfg.tts_n_members
    assert {sp for r in speech_sets.SHIFT_ROLES for sp in data.role(r).speakers} & {"LJ"} == set()
    again = speech_sets.load_tts_data(tiny_cfg)
    assert again.key == data.key and again.role("public").ids == data.role("public").ids


def test_impossible_real_sizes_are_a_clear_error(tiny_cfg):
    real = config.resolve_profile("smoke", {"tts_source": "real"})
    with pytest.raises(ValueError, match="impossible TTS split sizes"):
        speech_sets._role_sizes(real, 4, 1)
    with pytest.raises(ValueError, match="unknown tts_source"):
        config.resolve_profile("smoke", {"tts_source": "librispeech"})


def test_real_mode_reads_ljspeech_format_folders(tmp_path):
    """The real-data path end to end on LJSpeech-format folders (written from the speech world: real clips
    are not redistributable): load, trim, align, split."""
    import soundfile as sf

    for folder, meta, n, corpus in (
        ("speaker2_dctts_fork_recordings", "transcript.csv", 30, "lj"),
        ("ljspeech", "metadata.csv", 8, "libri"),
    ):
        (tmp_path / folder / "wavs").mkdir(parents=True)
        lines = []
        for k, u in enumerate(speech_world.generate(corpus, n, seed=5)):
            uid = f"LJ{k:03d}-{folder[:2]}"
            sf.write(tmp_path / folder / "wavs" / f"{uid}.wav", u.wav, speech.SAMPLE_RATE, subtype="PCM_16")
            lines.append(f"{uid}|{u.text}|{u.text}")
        (tmp_path / folder / meta).write_text("\n".join(lines) + "\n")
    cfg = config.resolve_profile(
        "smoke", {"tts_source": "real", "data_root": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    )
    data = speech_sets.load_tts_data(cfg)
    assert data.corpora == ("speaker2", "ljspeech")
    assert sum(len(data.role(r)) for r in speech_sets.IID_ROLES) == 30
    assert sum(len(data.role(r)) for r in speech_sets.SHIFT_ROLES) == 8
    for role in speech_sets.IID_ROLES + speech_sets.SHIFT_ROLES:
        s = data.role(role)
        for toks, mel, d in zip(s.tokens, s.mels, s.durations, strict=True):
            assert len(d) == len(toks) and d.sum() == len(mel) and d.min() >= 1
    missing = config.resolve_profile("smoke", {"tts_source": "real", "data_root": str(tmp_path / "nowhere")})
    with pytest.raises(Exception, match="does not exist"):
        speech_sets.load_tts_data(missing)
    # the cache key covers the recordings' bytes: swapping two clips of one corpus (same sizes) changes it
    before = speech_sets.real_corpora_digest(cfg)
    wavs = sorted((tmp_path / "ljspeech" / "wavs").glob("*.wav"))
    a, b = wavs[0].read_bytes(), wavs[1].read_bytes()
    wavs[0].write_bytes(b)
    wavs[1].write_bytes(a)
    after = speech_sets.real_corpora_digest(cfg)
    assert after["root_ljspeech"][:2] == before["root_ljspeech"][:2]
    assert after["root_ljspeech"][2] != before["root_ljspeech"][2]
    assert after["root_speaker2"] == before["root_speaker2"]


def test_tts_models_are_targets_and_train_on_the_executor(tiny_cfg):
    from m4i_utils.models.base import Target
    from m4i_utils.models.registry import load_target

    data = speech_sets.load_tts_data(tiny_cfg)
    models = tts.train_tts_models(tiny_cfg, data)
    target = load_target("tts", tiny_cfg, role="target")
    assert isinstance(target, Target) and target.kind == "tts"
    assert target.key == models["target"].key != models["shadow"].key
    assert (target.train_seed, models["shadow"].train_seed) == (tiny_cfg.seed, tiny_cfg.seed + 1)
    role = data.role("target_nonmembers")
    mels = target.query(tiny_cfg, data.corpora[0], "target_nonmembers")
    assert len(mels) == len(role) and all(m.shape[1] == speech.N_MELS for m in mels)
    for got, want in zip(mels, tts.synthesize(target, role), strict=True):  # the black-box query
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="corpora"):
        target.query(tiny_cfg, "not_a_corpus", "target_nonmembers")
